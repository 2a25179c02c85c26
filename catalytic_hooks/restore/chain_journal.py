"""The chain journal of a SPECTRUM-06 chain restore (`.spectrum06_chain_<uuid hex>.json`): which
run subfolders a chain created, so an interrupted chain is rolled back as a whole."""

from __future__ import annotations

import os
import uuid
from typing import Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import open_regular_at, remove_tree_at
from catalytic_hooks.fs.files import read_fd
from catalytic_hooks.restore.transaction import journal_tag

CHAIN_PREFIX = ".spectrum06_chain_"


def new_chain_journal_name() -> str:
    return f"{CHAIN_PREFIX}{uuid.uuid4().hex}.json"


def rollback_chain(rfd: int, journal: dict[str, Any]) -> None:
    # Each run directory did not exist before this chain created it, so all of it is ours.
    for rid in reversed(journal["created"]):
        remove_tree_at(rfd, rid)


def chain_journal_problem(name: str, journal: Any) -> str | None:
    """Why a chain journal found in a restore root is not one of this tool's, or None. Run
    subfolders must be single safe components: a planted `../victim` or `/home` never reaches
    the rollback."""
    if journal_tag(name, CHAIN_PREFIX) is None:
        return "not a name this tool generates"
    if not isinstance(journal, dict):
        return "not a chain journal"
    created, runs = journal.get("created"), journal.get("runs")
    if not isinstance(created, list) or not isinstance(runs, list):
        return "not a chain journal"
    for rid in created:
        if (
            not isinstance(rid, str)
            or relpath_problem(rid) is not None
            or "/" in rid
            or rid.startswith(".")
            or has_git_component(rid)
            or rid not in runs
        ):
            return f"it names {rid!r}, which is not one of its run subfolders"
    return None


def recover_chain(rfd: int, name: str, report: dict[str, Any]) -> None:
    try:
        fd = open_regular_at(rfd, name)
        try:
            journal: Any = loads_strict(read_fd(fd, 1 << 24), what=name)
        finally:
            os.close(fd)
    except (OSError, CatalyticError):
        journal = None
    problem = chain_journal_problem(name, journal)
    if problem is not None:
        report["refused"].append({"name": name, "reason": problem})
        return
    if not journal.get("committed"):
        rollback_chain(rfd, journal)
        report["rolled_back"].append(journal.get("chain_root"))
    else:
        report["completed"].append(journal.get("chain_root"))
    os.unlink(name, dir_fd=rfd)
    os.fsync(rfd)
