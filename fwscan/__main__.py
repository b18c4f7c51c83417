"""Entry point for ``python -m fwscan``."""

from fwscan.cli import main

main()
