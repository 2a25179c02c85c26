"""SPECTRUM-06 restore (docs/FORMATS.md §5), transactional and crash-safe.

Order: PREFLIGHT (eligibility, path safety, target) → PLAN (sources, reject-if-exists) →
EXECUTE (lock, recover leftovers, stage with copy+hash in one pass, journal, place) → VERIFY
(re-hash every target) → result artifacts → commit point → cleanup → chronicle. `restore_bundle`
is the one entry point for a single bundle, into a directory or a new worktree: the CLI, the
library and the crash tests all go through it. The transaction mechanics are in transaction.py.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.model import DirSource, project_root_for
from catalytic_hooks.bundle.trust import TrustPolicy, caller_anchor, trust_policy
from catalytic_hooks.bundle.verify import Verified, verify_bundle
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import DIR_FLAGS, lstat_at, remove_tree, remove_tree_at
from catalytic_hooks.fs.durable import durable
from catalytic_hooks.fs.files import write_all
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.worktree import add_worktree, move_worktree, remove_worktree
from catalytic_hooks.provenance.chronicle import record_for
from catalytic_hooks.restore.aside import built_aside, new_target, placed
from catalytic_hooks.restore.chain_journal import CHAIN_PREFIX
from catalytic_hooks.restore.recovery import recover
from catalytic_hooks.restore.transaction import (
    JOURNAL_PREFIX,
    MANIFEST,
    REPORT,
    STAGING_PREFIX,
    Callbacks,
    Plan,
    PlanEntry,
    check_target,
    fail,
    new_attempt_names,
    place,
    rollback,
    root_lock,
    stage,
    utf8_key,
    verify_targets,
    write_journal,
)

__all__ = [
    "build_plan",
    "check_keys",
    "dry_run_report",
    "eligible",
    "execute",
    "restore_bundle",
]


# -- PREFLIGHT --------------------------------------------------------------------------------


# Deeper output keys are refused: staging and placing hold a key's directories one fd each
# (fs.dirfd.DirFds), which past this depth would run into the process's limit on open files.
MAX_KEY_DEPTH = 128


def shown_key(key: str) -> str:
    return repr(key if len(key) <= 200 else key[:200] + "…")


def check_keys(keys: list[str]) -> None:
    """Path safety (§4.2, docs/FORMATS.md §0): rejected, never rewritten."""
    for key in sorted(keys, key=utf8_key):
        problem = relpath_problem(key)
        if problem is not None:
            reason = "NULL_BYTE" if "\x00" in key else "UNSAFE_PATH"
            raise fail(
                ErrorCode.PATH_ESCAPE_DETECTED,
                "PREFLIGHT",
                f"output key {key!r}: {problem}",
                reason,
                path=key,
            )
        if has_git_component(key):
            raise fail(
                ErrorCode.PATH_ESCAPE_DETECTED,
                "PREFLIGHT",
                f"output key {key!r} names git's own directory",
                "GIT_DIRECTORY",
                path=key,
            )
        if key.count("/") >= MAX_KEY_DEPTH:
            raise fail(
                ErrorCode.PATH_ESCAPE_DETECTED,
                "PREFLIGHT",
                f"output key {shown_key(key)} lies more than {MAX_KEY_DEPTH} directories deep",
                "TOO_DEEP",
                path=key,
            )
        if key in (MANIFEST, REPORT) or key.split("/")[0].startswith(
            (STAGING_PREFIX, JOURNAL_PREFIX, CHAIN_PREFIX)
        ):
            raise fail(
                ErrorCode.PATH_ESCAPE_DETECTED,
                "PREFLIGHT",
                f"output key {key!r} is reserved for the restore itself",
                "RESERVED_NAME",
                path=key,
            )
    as_set = set(keys)
    for key in keys:
        parts = key.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in as_set:
                raise fail(
                    ErrorCode.PATH_ESCAPE_DETECTED,
                    "PREFLIGHT",
                    f"output {key!r} lies under output {'/'.join(parts[:i])!r}",
                    "PATH_CONFLICT",
                    path=key,
                )


def eligible(
    run_dir: Path, project_root: Path | None, trust: TrustPolicy
) -> tuple[Verified, DirSource]:
    """Step 1.1: full SPECTRUM-05 verification, a verified proof, at least one output, and (as
    catalytic's policy) a signer the trust policy accepts."""
    run_dir = run_dir.resolve()
    src = DirSource(run_dir, project_root_for(run_dir, project_root))
    try:
        v = verify_bundle(src)
    except CatalyticError as exc:
        reason = (
            "PROOF_NOT_VERIFIED" if exc.code is ErrorCode.RESTORATION_FAILED else exc.code.value
        )
        raise fail(
            ErrorCode.RESTORE_INELIGIBLE,
            "PREFLIGHT",
            f"bundle {run_dir.name} is not eligible: {exc.message}",
            reason,
            verification=exc.to_dict(),
        ) from exc
    if not v.hashes:
        raise fail(
            ErrorCode.RESTORE_INELIGIBLE,
            "PREFLIGHT",
            "OUTPUT_HASHES.hashes is empty",
            "HASHES_EMPTY",
        )
    decision = trust.decide(v.validator_id)
    if not decision.accepted:
        raise fail(
            ErrorCode.RESTORE_INELIGIBLE,
            "PREFLIGHT",
            f"untrusted bundle: {decision.reason} (use --allow-untrusted to restore it anyway)",
            "UNTRUSTED",
            validator_id=v.validator_id,
        )
    return v, src


# -- PLAN -------------------------------------------------------------------------------------


def _probe_key(rfd: int, key: str, seen_new: set[str], new_dirs: list[str]) -> None:
    """Walk one key's components, each looked up in its own parent directory; once a parent
    is missing, everything below it is new too (never looked up elsewhere)."""
    parts = key.split("/")
    dfd = os.dup(rfd)
    try:
        for i, part in enumerate(parts):
            sub, last = "/".join(parts[: i + 1]), i == len(parts) - 1
            st = None if sub in seen_new else lstat_at(dfd, part)
            if st is None:
                for j in range(i, len(parts) - 1):  # this parent and those below are created
                    d = "/".join(parts[: j + 1])
                    if d not in seen_new:
                        seen_new.add(d)
                        new_dirs.append(d)
                return
            if stat.S_ISLNK(st.st_mode):
                raise fail(
                    ErrorCode.PATH_ESCAPE_DETECTED,
                    "PLAN",
                    f"{sub} under the restore root is a symlink",
                    "SYMLINK_ESCAPE",
                    path=key,
                )
            if last:
                raise fail(
                    ErrorCode.TARGET_EXISTS,
                    "PLAN",
                    f"{key} already exists in the restore root",
                    path=key,
                )
            if not stat.S_ISDIR(st.st_mode):
                raise fail(
                    ErrorCode.TARGET_EXISTS,
                    "PLAN",
                    f"{sub} exists and is not a directory",
                    "PARENT_NOT_DIRECTORY",
                    path=key,
                )
            nfd = os.open(part, DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
    finally:
        os.close(dfd)


def probe_targets(root: Path, keys: list[str]) -> list[str]:
    """Reject-if-exists and no symlink on any target's path; returns the directories that
    would have to be created (parents first)."""
    new_dirs: list[str] = []
    seen_new: set[str] = set()
    rfd = os.open(root, DIR_FLAGS)
    try:
        for key in sorted(keys, key=utf8_key):
            _probe_key(rfd, key, seen_new, new_dirs)
        for name in (MANIFEST, REPORT):
            if lstat_at(rfd, name) is not None:
                raise fail(
                    ErrorCode.TARGET_EXISTS,
                    "PLAN",
                    f"{name} already exists in the restore root",
                    path=name,
                )
    finally:
        os.close(rfd)
    return new_dirs


def build_plan(src: DirSource, v: Verified, result_root: Path, *, probe: bool = True) -> Plan:
    entries = []
    for key in sorted(v.hashes, key=utf8_key):
        try:
            found = src.find(key)
            if found is None:
                raise FileNotFoundError(key)
            base, rel, fd = found
        except OSError as exc:
            raise fail(
                ErrorCode.SOURCE_MISSING,
                "PLAN",
                f"source of {key} is missing or not a regular file",
                "MISSING" if isinstance(exc, FileNotFoundError) else "NOT_REGULAR",
                path=key,
            ) from exc
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        entries.append(PlanEntry(key, v.hashes[key], base, rel, st.st_size))
    plan = Plan(result_root, entries, v.bundle_root, opener=src.open_at)
    if probe:
        plan.new_dirs = probe_targets(result_root, [e.key for e in entries])
    return plan


def dry_run_report(plan: Plan, prefix: str = "") -> dict[str, Any]:
    return {
        "ok": True,
        "dry_run": True,
        "would_restore_files_count": len(plan.entries),
        "would_restore_bytes": plan.total_bytes,
        "would_restore_paths": [prefix + e.key for e in plan.entries],
    }


def artifacts(plan: Plan) -> tuple[bytes, bytes]:
    entries = [
        {"bytes": e.size, "relative_path": e.key, "sha256": e.expected}
        for e in sorted(plan.entries, key=lambda e: utf8_key(e.key))
    ]
    manifest = canonical_bytes({"entries": entries})
    report = canonical_bytes(
        {
            "bundle_roots": [plan.bundle_root],
            "chain_root": plan.chain_root,
            "ok": True,
            "restored_bytes": plan.total_bytes,
            "restored_files_count": len(entries),
        }
    )
    return manifest, report


# -- EXECUTE ----------------------------------------------------------------------------------


def execute(plan: Plan, callbacks: Callbacks, *, locked_fd: int | None = None) -> dict[str, Any]:
    if locked_fd is None:
        with root_lock(plan.root) as rfd:
            recover(plan.root, locked_fd=rfd)  # a crashed earlier attempt is undone first
            plan.new_dirs = probe_targets(plan.root, [e.key for e in plan.entries])
            return _execute_locked(rfd, plan, callbacks)
    return _execute_locked(locked_fd, plan, callbacks)


def _write_artifacts(rfd: int, staging: str, plan: Plan) -> None:
    sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
    try:
        for name, data in zip((MANIFEST, REPORT), artifacts(plan), strict=True):
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=sfd
            )
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.fsync(sfd)
    finally:
        os.close(sfd)


def _transact(
    rfd: int, plan: Plan, callbacks: Callbacks, jname: str, journal: dict[str, Any]
) -> None:
    """Stage, journal, place, verify, commit. The journal is durable before the first
    placement, and `committed` is the commit point."""
    staging, keys = journal["staging"], [e.key for e in plan.entries]
    stage(rfd, staging, plan, callbacks)
    _write_artifacts(rfd, staging, plan)
    durable(rfd)
    if callbacks.after_stage is not None:
        callbacks.after_stage(plan)
    write_journal(rfd, jname, journal)  # before the first placement
    created: list[str] = []
    place(rfd, staging, keys, created)
    if callbacks.after_place is not None:
        callbacks.after_place(plan)
    verify_targets(rfd, plan)
    place(rfd, staging, [MANIFEST, REPORT], created)
    durable(rfd)
    journal["committed"] = True
    write_journal(rfd, jname, journal)  # the commit point


def _execute_locked(rfd: int, plan: Plan, callbacks: Callbacks) -> dict[str, Any]:
    if callbacks.after_plan is not None:
        callbacks.after_plan(plan)
    if callbacks.planned is not None:
        callbacks.planned(plan)
    staging, jname = new_attempt_names()
    journal: dict[str, Any] = {
        "bundle_root": plan.bundle_root,
        "committed": False,
        "dirs": plan.new_dirs,
        "placed": [*(e.key for e in plan.entries), MANIFEST, REPORT],
        "staging": staging,
    }
    os.mkdir(staging, 0o700, dir_fd=rfd)
    try:
        _transact(rfd, plan, callbacks, jname, journal)
    except BaseException as exc:
        rollback(rfd, journal)
        with contextlib.suppress(FileNotFoundError):  # absent if it failed before the journal
            os.unlink(jname, dir_fd=rfd)
        os.fsync(rfd)
        if isinstance(exc, OSError):  # e.g. ENOSPC: report it, after rolling back
            raise fail(
                ErrorCode.IO_ERROR,
                "EXECUTE",
                f"restore failed and was rolled back: {exc}",
                "IO_ERROR",
            ) from exc
        raise
    remove_tree_at(rfd, staging)
    os.unlink(jname, dir_fd=rfd)
    os.fsync(rfd)
    return {
        "ok": True,
        "result_root": str(plan.root),
        "bundle_root": plan.bundle_root,
        "chain_root": plan.chain_root,
        "restored_files_count": len(plan.entries),
        "restored_bytes": plan.total_bytes,
    }


# -- the whole single-bundle restore ----------------------------------------------------------


@dataclass(frozen=True)
class WorktreeTarget:
    """Restore into a new linked worktree at `rev` (default: the bundle's recorded commit, else
    HEAD) of the repository holding the bundle."""

    path: Path
    rev: str | None = None


def _worktree_commit(repo: Repo, v: Verified, rev: str | None) -> str:
    if rev is None:
        recorded = v.task_spec.get("git_commit") if isinstance(v.task_spec, dict) else None
        rev = recorded if isinstance(recorded, str) and repo.rev_parse(recorded) else "HEAD"
    commit = repo.rev_parse(rev)
    if commit is None:
        raise CatalyticError(ErrorCode.WORKTREE_FAILED, f"unknown revision {rev!r}")
    return commit


def _into_worktree(
    run_dir: Path,
    v: Verified,
    src: DirSource,
    wt: WorktreeTarget,
    dry_run: bool,
    callbacks: Callbacks,
) -> dict[str, Any]:
    target = new_target(wt.path)
    if dry_run:  # the worktree does not exist yet, so every target is new
        return {
            **dry_run_report(build_plan(src, v, target, probe=False)),
            "bundle_root": v.bundle_root,
        }
    repo = Repo.discover(run_dir.resolve().parent)
    commit = _worktree_commit(repo, v, wt.rev)

    def remove(path: Path) -> None:
        remove_worktree(repo, path)
        if os.path.lexists(path):  # never registered (a kill before `git worktree add` ended)
            remove_tree(path)
            remove_worktree(repo, path)  # its bookkeeping, if git had begun it

    # Built beside DIR and moved into place whole (restore.aside), as from an archive.
    with built_aside(target, remove) as (partial, held):
        add_worktree(repo, partial, commit, into_empty=True)
        check_target(partial)
        doc = execute(build_plan(src, v, partial), callbacks, locked_fd=held)
        with placed(target):
            move_worktree(repo, partial, target)
    return {**doc, "result_root": str(target), "worktree": str(target), "rev": commit}


def restore_bundle(
    run_dir: Path,
    restore_root: Path | WorktreeTarget,
    *,
    project_root: Path | None = None,
    allow_untrusted: bool = False,
    trust: TrustPolicy | None = None,
    dry_run: bool = False,
    callbacks: Callbacks | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Restore one bundle's outputs into an existing directory or a new worktree.
    `record=False`: the caller records the restore itself (an archive's, restore/archived.py)."""
    callbacks = callbacks or Callbacks()
    if trust is None:
        trust = trust_policy(caller_anchor(), allow_untrusted=allow_untrusted)
    v, src = eligible(run_dir, project_root, trust)
    check_keys(list(v.hashes))
    if isinstance(restore_root, WorktreeTarget):
        doc = _into_worktree(run_dir, v, src, restore_root, dry_run, callbacks)
    else:
        check_target(restore_root)
        plan = build_plan(src, v, restore_root)
        doc = (
            {**dry_run_report(plan), "bundle_root": v.bundle_root}
            if dry_run
            else execute(plan, callbacks)
        )
    if not dry_run and record:
        record_for(
            run_dir.resolve().parent,
            "restore",
            {
                "run_id": v.run_id,
                "bundle_root": v.bundle_root,
                "target": doc.get("worktree") or str(doc["result_root"]),
            },
        )
    return doc
