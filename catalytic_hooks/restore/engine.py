"""SPECTRUM-06 restore (FORMATS.md §5), transactional and crash-safe (DESIGN.md §6).

Order: PREFLIGHT (eligibility, target, path safety) → PLAN (sources, reject-if-exists) →
EXECUTE (lock, recover leftovers, stage with copy+hash in one pass, journal, place) → VERIFY
(re-hash every target) → result artifacts → commit point → cleanup. The transaction mechanics
live in restore_tx.py.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import relpath_problem
from catalytic_hooks.fs.files import DIR_FLAGS, write_all
from catalytic_hooks.restore.transaction import (
    CHAIN_PREFIX,
    JOURNAL_PREFIX,
    MANIFEST,
    REPORT,
    STAGING_PREFIX,
    Hooks,
    Plan,
    PlanEntry,
    _lstat_at,
    _write_journal,
    check_target,
    durable,
    fail,
    new_attempt_names,
    place,
    recover,
    remove_tree_at,
    rollback,
    root_lock,
    stage,
    utf8_key,
    verify_targets,
)

__all__ = ["Hooks", "Plan", "PlanEntry", "build_plan", "check_keys", "check_target",
           "dry_run_report", "eligible", "execute", "fail", "recover", "restore_bundle",
           "root_lock"]


def check_keys(keys: list[str]) -> None:
    """Path safety (§4.2, FORMATS.md §0): rejected, never rewritten."""
    for key in sorted(keys, key=utf8_key):
        problem = relpath_problem(key)
        if problem is not None:
            reason = "NULL_BYTE" if "\x00" in key else "UNSAFE_PATH"
            raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                       f"output key {key!r}: {problem}", reason, path=key)
        if key in (MANIFEST, REPORT) or key.split("/")[0].startswith(
                (STAGING_PREFIX, JOURNAL_PREFIX, CHAIN_PREFIX)):
            raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                       f"output key {key!r} is reserved for the restore itself",
                       "RESERVED_NAME", path=key)
    as_set = set(keys)
    for key in keys:
        parts = key.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in as_set:
                raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                           f"output {key!r} lies under output {'/'.join(parts[:i])!r}",
                           "PATH_CONFLICT", path=key)

def probe_targets(root: Path, keys: list[str]) -> list[str]:
    """Reject-if-exists and no symlink on any target's path; returns the directories that
    would have to be created (parents first)."""
    new_dirs: list[str] = []
    seen_new: set[str] = set()
    rfd = os.open(root, DIR_FLAGS)
    try:
        for key in sorted(keys, key=utf8_key):
            parts = key.split("/")
            dfd = os.dup(rfd)
            try:
                for i, part in enumerate(parts):
                    sub = "/".join(parts[:i + 1])
                    if sub in seen_new:
                        continue
                    st = _lstat_at(dfd, part)
                    last = i == len(parts) - 1
                    if st is None:
                        if last:
                            break
                        seen_new.add(sub)
                        new_dirs.append(sub)
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PLAN",
                                   f"{sub} under the restore root is a symlink",
                                   "SYMLINK_ESCAPE", path=key)
                    if last:
                        raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                                   f"{key} already exists in the restore root", path=key)
                    if not stat.S_ISDIR(st.st_mode):
                        raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                                   f"{sub} exists and is not a directory", "PARENT_NOT_DIRECTORY",
                                   path=key)
                    nfd = os.open(part, DIR_FLAGS, dir_fd=dfd)
                    os.close(dfd)
                    dfd = nfd
            finally:
                os.close(dfd)
        for name in (MANIFEST, REPORT):
            if _lstat_at(rfd, name) is not None:
                raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                           f"{name} already exists in the restore root", path=name)
    finally:
        os.close(rfd)
    return new_dirs


# -- EXECUTE: lock, journal, staging, placement -----------------------------------------------

def eligible(run_dir: Path, project_root: Path | None, allow_untrusted: bool) -> tuple[Any, Any]:
    """Step 1.1: full SPECTRUM-05 verification, a verified proof, at least one output, and (as
    catalytic's policy) a trusted validator unless allowed otherwise."""
    from catalytic_hooks.bundle.model import DirSource
    from catalytic_hooks.bundle.trust import TrustSet, load_trust
    from catalytic_hooks.bundle.verify import _project_root_for, verify_bundle
    from catalytic_hooks.core.policy import load_policy

    run_dir = run_dir.resolve()
    proot = _project_root_for(run_dir, project_root)
    src = DirSource(run_dir, proot)
    try:
        v = verify_bundle(src)
    except CatalyticError as exc:
        reason = "PROOF_NOT_VERIFIED" if exc.code is ErrorCode.RESTORATION_FAILED \
            else exc.code.value
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", f"bundle {run_dir.name} is not "
                   f"eligible: {exc.message}", reason, verification=exc.to_dict()) from exc
    if not v.hashes:
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", "OUTPUT_HASHES.hashes is empty",
                   "HASHES_EMPTY")
    if not allow_untrusted:
        try:
            trust = load_trust(load_policy(proot), proot)
        except CatalyticError:
            trust = TrustSet([], "no readable policy")
        ok, why = trust.lookup(v.validator_id)
        if not ok:
            raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", f"untrusted bundle: {why} "
                       "(use --allow-untrusted to restore it anyway)", "UNTRUSTED",
                       validator_id=v.validator_id)
    return v, src


def build_plan(src: Any, v: Any, result_root: Path, *, probe: bool = True) -> Plan:
    from catalytic_hooks.bundle.model import open_beneath

    entries = []
    for key in sorted(v.hashes, key=utf8_key):
        try:
            where = src.locate(key)
            if where is None:
                raise FileNotFoundError(key)
            fd = open_beneath(*where)
        except OSError as exc:
            raise fail(ErrorCode.SOURCE_MISSING, "PLAN", f"source of {key} is missing or not a "
                       "regular file", "MISSING" if isinstance(exc, FileNotFoundError)
                       else "NOT_REGULAR", path=key) from exc
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        entries.append(PlanEntry(key, v.hashes[key], where[0], where[1], st.st_size,
                                 bool(st.st_mode & 0o111)))
    plan = Plan(result_root, entries, v.bundle_root)
    if probe:
        plan.new_dirs = probe_targets(result_root, [e.key for e in entries])
    return plan


def dry_run_report(plan: Plan, prefix: str = "") -> dict[str, Any]:
    return {
        "ok": True, "dry_run": True,
        "would_restore_files_count": len(plan.entries),
        "would_restore_bytes": plan.total_bytes,
        "would_restore_paths": [prefix + e.key for e in plan.entries],
    }


def artifacts(plan: Plan) -> tuple[bytes, bytes]:
    entries = [{"bytes": e.size, "relative_path": e.key, "sha256": e.expected}
               for e in sorted(plan.entries, key=lambda e: utf8_key(e.key))]
    manifest = canonical_bytes({"entries": entries})
    report = canonical_bytes({
        "bundle_roots": [plan.bundle_root], "chain_root": plan.chain_root, "ok": True,
        "restored_bytes": plan.total_bytes, "restored_files_count": len(entries),
    })
    return manifest, report


def execute(plan: Plan, hooks: Hooks, *, locked_fd: int | None = None) -> dict[str, Any]:
    if locked_fd is None:
        with root_lock(plan.root) as rfd:
            recover(plan.root, locked_fd=rfd)  # a crashed earlier attempt is undone first
            plan.new_dirs = probe_targets(plan.root, [e.key for e in plan.entries])
            return _execute_locked(rfd, plan, hooks)
    return _execute_locked(locked_fd, plan, hooks)


def _execute_locked(rfd: int, plan: Plan, hooks: Hooks) -> dict[str, Any]:
    if hooks.after_plan is not None:
        hooks.after_plan(plan)
    staging, jname = new_attempt_names()
    keys = [e.key for e in plan.entries]
    journal: dict[str, Any] = {"bundle_root": plan.bundle_root, "committed": False,
                               "dirs": plan.new_dirs, "placed": [*keys, MANIFEST, REPORT],
                               "staging": staging}
    os.mkdir(staging, 0o700, dir_fd=rfd)
    journal_written = False
    try:
        stage(rfd, staging, plan, hooks)
        manifest, report = artifacts(plan)
        sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
        try:
            for name, data in ((MANIFEST, manifest), (REPORT, report)):
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                             dir_fd=sfd)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.fsync(sfd)
        finally:
            os.close(sfd)
        durable(rfd)
        if hooks.after_stage is not None:
            hooks.after_stage(plan)
        _write_journal(rfd, jname, journal)  # before the first placement
        journal_written = True
        created: list[str] = []
        place(rfd, staging, keys, created)
        if hooks.after_place is not None:
            hooks.after_place(plan)
        verify_targets(rfd, plan)
        place(rfd, staging, [MANIFEST, REPORT], created)
        durable(rfd)
        journal["committed"] = True
        _write_journal(rfd, jname, journal)  # the commit point
    except BaseException as exc:
        rollback(rfd, journal)
        if journal_written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(jname, dir_fd=rfd)
        os.fsync(rfd)
        if isinstance(exc, OSError):  # e.g. ENOSPC: report it, after rolling back
            raise fail(ErrorCode.IO_ERROR, "EXECUTE", f"restore failed and was rolled back: "
                       f"{exc}", "IO_ERROR") from exc
        raise
    remove_tree_at(rfd, staging)
    os.unlink(jname, dir_fd=rfd)
    os.fsync(rfd)
    return {"ok": True, "result_root": str(plan.root), "bundle_root": plan.bundle_root,
            "chain_root": plan.chain_root, "restored_files_count": len(plan.entries),
            "restored_bytes": plan.total_bytes}

def restore_bundle(run_dir: Path, restore_root: Path, *, project_root: Path | None = None,
                   allow_untrusted: bool = False, dry_run: bool = False,
                   hooks: Hooks | None = None) -> dict[str, Any]:
    v, src = eligible(run_dir, project_root, allow_untrusted)
    check_target(restore_root)
    check_keys(list(v.hashes))
    plan = build_plan(src, v, restore_root)
    if dry_run:
        return {**dry_run_report(plan), "bundle_root": v.bundle_root}
    return execute(plan, hooks or Hooks())
