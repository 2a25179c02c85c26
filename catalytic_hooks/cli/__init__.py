"""Console entry point. `catalytic hook ...` is dispatched before Typer and rich are imported,
because git runs it on every commit and push and start-up time is the hook's whole cost."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hook"]:
        from ..hookmain import main as hook_main

        return hook_main(args[1:])
    from .app import run_app

    return run_app(args)
