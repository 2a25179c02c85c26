"""Whether a `catalytic run --restore` still has an undo pending (bundle.journal): a cheap
directory listing, so that the commit hook can ask on every commit."""

from __future__ import annotations

import os
import re
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

JOURNAL_RE = re.compile(r"^run-([0-9a-f]{32})\.json$")


def journal_dir(git_dir: Path) -> Path:
    return git_dir / "catalytic" / "runs"


def pending(git_dir: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(journal_dir(git_dir)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [journal_dir(git_dir) / n for n in names if JOURNAL_RE.match(n)]


def refuse_if_pending(git_dir: Path, what: str) -> None:
    """A pending undo is never taken as a baseline: refuse until `catalytic recover` ran."""
    found = pending(git_dir)
    if found:
        raise CatalyticError(
            ErrorCode.RUN_UNDO_PENDING,
            f"{what} refused: an interrupted `catalytic run --restore` still has to be undone "
            f"({found[0].name}); run `catalytic recover` first",
            journal=str(found[0]))
