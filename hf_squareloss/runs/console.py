"""The progress lines a recipe run prints: they start with :data:`PROGRESS_PREFIX`, which the sweep echoes."""

from __future__ import annotations

import sys

__all__ = ["PROGRESS_PREFIX", "say"]

PROGRESS_PREFIX = "[hf-squareloss]"
"""Lines of the recipe's standard output that report progress start with this (the sweep echoes them)."""


def say(message: str, *, error: bool = False) -> None:
    """Print one progress line (to standard error with ``error``), flushed at once."""
    print(f"{PROGRESS_PREFIX} {message}", file=sys.stderr if error else sys.stdout, flush=True)
