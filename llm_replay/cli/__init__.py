"""FACE: the ``llm-replay`` command (one module per group of subcommands)."""

from .app import main

__all__ = ["main"]
