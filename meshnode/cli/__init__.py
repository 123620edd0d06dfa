"""The command line: one module per command group; ``main`` is the entry point."""

from __future__ import annotations

from meshnode.cli.main import main

__all__ = ["main"]
