"""Static analysis of app code: a fast DEX reader and an identifier-flow analysis on top of it."""
