"""Recovery of interrupted restores in one root: chain journals first (they own whole run
subfolders), then single-attempt journals, then stale staging. Lives above both journal kinds so
the transaction layer knows nothing of chains."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catalytic_hooks.fs.dirfd import remove_tree_at
from catalytic_hooks.restore.chain_journal import CHAIN_PREFIX, recover_chain
from catalytic_hooks.restore.transaction import (
    JOURNAL_PREFIX,
    STAGING_PREFIX,
    check_target,
    journal_tag,
    recover_journal,
    root_lock,
)


def _stale(name: str) -> bool:
    """Leftovers of this tool's own attempts: a staging directory or an unrenamed journal."""
    if name.startswith(STAGING_PREFIX):
        return journal_tag(name[len(STAGING_PREFIX) :] + ".json", "") is not None
    for prefix in (JOURNAL_PREFIX, CHAIN_PREFIX):
        if name.startswith(prefix) and name.endswith(".json.tmp"):
            return journal_tag(name[: -len(".tmp")], prefix) is not None
    return False


def recover_locked(rfd: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "rolled_back": [],
        "completed": [],
        "stale_staging_removed": [],
        "refused": [],
    }
    for name in sorted(os.listdir(rfd)):
        if name.startswith(CHAIN_PREFIX) and name.endswith(".json"):
            recover_chain(rfd, name, report)
    for name in sorted(os.listdir(rfd)):
        if name.startswith(JOURNAL_PREFIX) and name.endswith(".json"):
            recover_journal(rfd, name, report)
    for name in sorted(os.listdir(rfd)):
        if _stale(name):
            try:
                remove_tree_at(rfd, name)
            except OSError as exc:  # moved, or not ours to remove (a planted one)
                report["refused"].append({"name": name, "reason": exc.strerror or str(exc)})
                continue
            report["stale_staging_removed"].append(name)
    return report


def recover(root: Path, *, locked_fd: int | None = None) -> dict[str, Any]:
    """Finish or undo whatever an interrupted restore left in `root`."""
    if locked_fd is not None:
        return recover_locked(locked_fd)
    check_target(root)
    with root_lock(root) as fd:
        return recover_locked(fd)
