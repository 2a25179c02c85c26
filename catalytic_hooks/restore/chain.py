"""SPECTRUM-06 chain restore: per-run subfolders, every bundle eligible before anything is
written, a chain journal, and chain-level rollback of every run restored so far."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.restore.engine import (
    build_plan,
    check_keys,
    check_target,
    dry_run_report,
    eligible,
    execute,
)
from catalytic_hooks.restore.transaction import (
    CHAIN_PREFIX,
    Hooks,
    Plan,
    _lstat_at,
    _write_journal,
    fail,
    recover,
    remove_tree_at,
    root_lock,
)


def restore_chain(run_dirs: list[Path], restore_root: Path, *, project_root: Path | None = None,
                  allow_untrusted: bool = False, dry_run: bool = False,
                  hooks: Hooks | None = None) -> dict[str, Any]:
    from catalytic_hooks.bundle.model import chain_root

    hooks = hooks or Hooks()
    if not run_dirs:
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", "the chain is empty", "CHAIN_EMPTY")
    ids = [Path(d).resolve().name for d in run_dirs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", f"run id {dup[0]!r} appears twice",
                   "CHAIN_DUPLICATE_RUN", run_id=dup[0])
    checked = []
    for d in run_dirs:  # C.1: the whole chain is eligible before anything is written
        try:
            v, src = eligible(Path(d), project_root, allow_untrusted)
        except CatalyticError as exc:
            exc.details["run_id"] = Path(d).resolve().name
            raise
        checked.append((v, src))
    croot = chain_root([v.bundle_root for v, _ in checked], [v.run_id for v, _ in checked])
    check_target(restore_root)
    plans: list[tuple[str, Plan]] = []
    for v, src in checked:
        check_keys(list(v.hashes))
        result_root = restore_root / v.run_id
        if os.path.lexists(result_root):
            raise fail(ErrorCode.TARGET_EXISTS, "PLAN", f"{result_root} already exists",
                       path=v.run_id, run_id=v.run_id)
        plan = build_plan(src, v, result_root, probe=False)
        plan.chain_root = croot
        plans.append((v.run_id, plan))
    if dry_run:
        files = sum(len(p.entries) for _, p in plans)
        return {"ok": True, "dry_run": True, "chain_root": croot,
                "would_restore_files_count": files,
                "would_restore_bytes": sum(p.total_bytes for _, p in plans),
                "would_restore_paths": [path for rid, p in plans
                                        for path in dry_run_report(p, rid + "/")[
                                            "would_restore_paths"]]}
    with root_lock(restore_root) as rfd:
        recover(restore_root, locked_fd=rfd)
        for rid, _ in plans:
            if _lstat_at(rfd, rid) is not None:
                raise fail(ErrorCode.TARGET_EXISTS, "EXECUTE", f"{rid} appeared in the restore "
                           "root", path=rid, run_id=rid)
        jname = f"{CHAIN_PREFIX}{uuid.uuid4().hex}.json"
        journal: dict[str, Any] = {"chain_root": croot, "committed": False, "created": [],
                                   "runs": [rid for rid, _ in plans]}
        _write_journal(rfd, jname, journal)
        results = []
        try:
            for rid, plan in plans:
                journal["created"].append(rid)
                _write_journal(rfd, jname, journal)  # recorded before it exists
                os.mkdir(rid, 0o755, dir_fd=rfd)
                plan.new_dirs = []
                try:
                    results.append({"run_id": rid, **execute(plan, hooks)})
                except CatalyticError as exc:
                    raise fail(ErrorCode.CHAIN_RESTORE_FAILED, str(exc.details.get("phase",
                               "EXECUTE")), f"restoring {rid} failed: {exc.message}; every run "
                               "restored so far was rolled back", exc.code.value, run_id=rid,
                               cause=exc.to_dict()) from exc
            journal["committed"] = True
            _write_journal(rfd, jname, journal)
        except BaseException:
            _rollback_chain(rfd, journal)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(jname, dir_fd=rfd)
            os.fsync(rfd)
            raise
        os.unlink(jname, dir_fd=rfd)
        os.fsync(rfd)
    return {"ok": True, "chain_root": croot, "runs": results,
            "restored_files_count": sum(r["restored_files_count"] for r in results),
            "restored_bytes": sum(r["restored_bytes"] for r in results)}


def _rollback_chain(rfd: int, journal: dict[str, Any]) -> None:
    # Each run directory did not exist before this chain created it, so all of it is ours.
    for rid in reversed(journal["created"]):
        remove_tree_at(rfd, rid)


def recover_chain(rfd: int, name: str, report: dict[str, Any]) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=rfd)
        try:
            data = os.read(fd, 1 << 24)
        finally:
            os.close(fd)
        journal = loads_strict(data, what=name)
    except (OSError, CatalyticError):
        journal = None
    if isinstance(journal, dict) and not journal.get("committed"):
        _rollback_chain(rfd, journal)
        report["rolled_back"].append(journal.get("chain_root"))
    elif isinstance(journal, dict):
        report["completed"].append(journal.get("chain_root"))
    os.unlink(name, dir_fd=rfd)
    os.fsync(rfd)
