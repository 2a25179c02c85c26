"""Finishing the undo of runs that were killed (`catalytic recover`).

For each journal this tool wrote (run.journal): stop what is left of the command (its process
group, if the recorded process is still the one that started it), digest the working tree as the
run's own roots see it, and undo back to the PRE manifest from the pinned snapshot. A journal is
removed only when nothing was refused, so running `recover` again after fixing the cause (a full
disk) completes the job; a second run on a clean state changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from typing import Any

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import POLICY_SOURCES, policy_from_sources
from catalytic_hooks.core.roots import under_any
from catalytic_hooks.git.digests import worktree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.history import blobs, entries_at
from catalytic_hooks.git.refs import delete_ref, refs_under
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.runstate import flagged_entries, pinned
from catalytic_hooks.git.statefiles import PIN_PREFIX, orphan_pin
from catalytic_hooks.run.journal import (
    TOKEN_ENV,
    RunJournal,
    finish,
    journal_dir,
    load,
    pending,
    policy_of,
    process_start,
    snapshot_of,
)
from catalytic_hooks.run.proctree import group_alive
from catalytic_hooks.run.undo import UndoReport, empty_tmp_roots, undo

STOP_WAIT = 10.0  # seconds to wait for a killed command group to stop running


def stop_leftover(j: RunJournal) -> bool | None:
    """Kill the run's command group if its leader is still the process started for this journal:
    the same start time, and the journal's token in the environment it was started with
    (TOKEN_ENV). A journal's pid and start time alone could name any process of the user's.
    True once the group has stopped running, False when there was nothing of this run to kill,
    None when it still runs STOP_WAIT seconds after SIGKILL."""
    pgid, start = j.data.get("command_pgid"), j.data.get("command_start")
    if not isinstance(pgid, int) or pgid <= 1 or start is None or process_start(pgid) != start:
        return False
    try:
        with open(f"/proc/{pgid}/environ", "rb") as fh:
            environ = fh.read().split(b"\0")
    except OSError:
        return False
    if f"{TOKEN_ENV}={j.token}".encode() not in environ:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    # SIGKILL is delivered, not finished, when killpg returns: a process in the middle of a
    # write (uninterruptible sleep) completes it first. The undo must not start while one of
    # them can still change a file it is about to restore.
    deadline = time.monotonic() + STOP_WAIT
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return None  # killed, and still running: nothing may be undone under it
        time.sleep(0.01)
    return True


def undo_to_pre(repo: Repo, j: RunJournal) -> UndoReport:
    """Bring every protected path back to the journal's PRE manifest. A journal is only words
    anyone who can write the git directory could have written (SECURITY.md "Deletion"), so
    nothing here destroys bytes on its say alone: every file the undo overwrites or removes is
    stored as a blob first (and not touched when it cannot be), and of its tmp roots only those
    under a tmp root of the policy committed at HEAD are emptied."""
    policy = policy_of(j)
    view = pinned(repo)
    cache = HashCache.for_repo(view)
    now = worktree_digest(view, policy, cache, rehash=flagged_entries(view))
    report = UndoReport()
    undo(view, snapshot_of(j), j.data["pre_manifest"], now.manifest, report, unsaved_ok=False)
    committed, where = committed_tmp_roots(view)
    allowed = tuple(r for r in policy.tmp_roots if under_any(r, committed))
    report.tmp_kept.extend(
        {
            "path": r,
            "reason": f"not a tmp root of the policy committed at "
            f"{where}: the journal alone never decides what is deleted",
        }
        for r in policy.tmp_roots
        if r not in allowed
    )
    empty_tmp_roots(view.top, allowed, set(j.data.get("tmp_existed", [])), report)
    return report


def committed_tmp_roots(repo: Repo) -> tuple[tuple[str, ...], str]:
    """The tmp roots of the policy committed at HEAD (the one the hooks judge by), and where
    that is. None where there is no commit, or its policy is unusable."""
    head = repo.head()
    if head is None:
        return (), "HEAD (no commit yet)"
    where = f"HEAD ({head[:10]})"
    found = entries_at(repo, head, POLICY_SOURCES)
    if any(not e.regular for e in found.values()):
        return (), where
    data = blobs(repo, (e.oid for e in found.values()))
    try:
        policy = policy_from_sources({p: data[e.oid] for p, e in found.items()}, f" at {where}")
    except CatalyticError:
        return (), where
    return policy.tmp_roots, where


_STALE_TMP = re.compile(r"^\.run-[0-9a-f]{32}\.json\.[0-9a-f]{32}\.tmp$")


def _sweep(repo: Repo) -> None:
    """What a run killed before its journal existed leaves: a half-written journal (our
    atomic_write's temp name) and its snapshot ref. The command never started then, so there is
    nothing to undo. Another worktree's pins are its own (its run may be pending, or starting
    now): swept only once that worktree is gone (git.statefiles.orphan_pin)."""
    d = journal_dir(repo)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(d):
            if _STALE_TMP.match(name):
                (d / name).unlink(missing_ok=True)
    for ref in refs_under(repo, PIN_PREFIX):
        if orphan_pin(ref, str(repo.git_dir), str(repo.common_dir)):
            delete_ref(repo, ref)


def recover_runs(repo: Repo) -> list[dict[str, Any]]:
    _sweep(repo)
    results: list[dict[str, Any]] = []
    for path in pending(repo):
        try:
            j = load(path)
        except CatalyticError as exc:
            results.append({"journal": path.name, "status": "refused", "reason": exc.message})
            continue
        killed = stop_leftover(j)
        if killed is None:
            results.append(
                {
                    "journal": path.name,
                    "run_id": j.data.get("run_id"),
                    "status": "incomplete",
                    "killed_command": True,
                    "reason": f"the run's command, killed, was still running after "
                    f"{STOP_WAIT:.0f} s (a process in uninterruptible sleep); nothing was "
                    "undone under it: run `catalytic recover` again",
                }
            )
            continue
        report = undo_to_pre(repo, j)
        done = not report.refused
        if done:
            finish(repo, j)
        results.append(
            {
                "journal": path.name,
                "run_id": j.data.get("run_id"),
                "status": "recovered" if done else "incomplete",
                "killed_command": killed,
                **report.to_dict(),
            }
        )
    return results
