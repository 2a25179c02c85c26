"""Placeholder replaced by the hooks issue."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    return 0
