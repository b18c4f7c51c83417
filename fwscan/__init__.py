"""fwscan: a static analyzer for Android firmware images."""

__version__ = "0.1.0"
