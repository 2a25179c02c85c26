"""Stdout whose reader went away (`catalytic digest | head -0`); imports `os` and `sys` only, for
the entry point's quick paths as well as the full path's error handling."""

from __future__ import annotations

import os
import sys


def stdout_gone() -> None:
    """Point stdout at /dev/null, so that neither this process nor the interpreter's exit tries
    to write to the closed pipe again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        return
