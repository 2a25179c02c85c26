"""The chain journal of a SPECTRUM-06 chain restore (`.spectrum06_chain_<uuid hex>.json`): which
run subfolders a chain created, so an interrupted chain is rolled back as a whole."""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from typing import Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import lstat_at, open_regular_at, remove_tree_at
from catalytic_hooks.fs.files import read_fd
from catalytic_hooks.restore.transaction import journal_tag

CHAIN_PREFIX = ".spectrum06_chain_"


def new_chain_journal_name() -> str:
    return f"{CHAIN_PREFIX}{uuid.uuid4().hex}.json"


def run_subfolder_problem(rid: object) -> str | None:
    """Why `rid` cannot name a run's subfolder of a restore root, or None: one safe component,
    not hidden (a run directory named `.git` would make the root a repository whose config
    runs commands), no git directory in any spelling."""
    if (
        not isinstance(rid, str)
        or relpath_problem(rid) is not None
        or "/" in rid
        or rid.startswith(".")
        or has_git_component(rid)
    ):
        return f"{rid!r} is not a name a run's subfolder of a restore root may have"
    return None


def rollback_chain(rfd: int, journal: dict[str, Any]) -> None:
    """Remove the run subfolders this chain made: each one whose identity (device, inode) was
    recorded right after its `mkdir`, if it is still that directory; one recorded only as
    about to be made (a crash between the two writes), if it is an empty directory, which is
    all this chain can have made of it. A directory someone else put there is left."""
    ids = journal.get("created_ids") or {}
    for rid in reversed(journal["created"]):
        st = lstat_at(rfd, rid)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        made = ids.get(rid)
        if made is None:
            with contextlib.suppress(OSError):
                os.rmdir(rid, dir_fd=rfd)
        elif [st.st_dev, st.st_ino] == made:
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
        if run_subfolder_problem(rid) is not None or rid not in runs:
            return f"it names {rid!r}, which is not one of its run subfolders"
    ids = journal.get("created_ids", {})
    if not isinstance(ids, dict) or any(
        rid not in created
        or not isinstance(made, list)
        or len(made) != 2
        or not all(type(n) is int for n in made)
        for rid, made in ids.items()
    ):
        return "not a chain journal"
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
