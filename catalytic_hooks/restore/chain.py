"""SPECTRUM-06 chain restore: per-run subfolders, every bundle eligible before anything is
written, a chain journal, and chain-level rollback of every run restored so far."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.model import DirSource, chain_root
from catalytic_hooks.bundle.trust import TrustPolicy, caller_anchor, trust_policy
from catalytic_hooks.bundle.verify import Verified
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.dirfd import lstat_at
from catalytic_hooks.provenance.chronicle import record_for
from catalytic_hooks.restore.chain_journal import (
    new_chain_journal_name,
    rollback_chain,
    run_subfolder_problem,
)
from catalytic_hooks.restore.engine import build_plan, check_keys, dry_run_report, eligible, execute
from catalytic_hooks.restore.recovery import recover
from catalytic_hooks.restore.transaction import (
    Callbacks,
    Plan,
    check_target,
    fail,
    root_lock,
    write_journal,
)


def _eligible_chain(
    run_dirs: list[Path], project_roots: list[Path | None], trust: TrustPolicy
) -> list[tuple[Verified, DirSource]]:
    """C.1: the whole chain is eligible before anything is written."""
    ids = [Path(d).resolve().name for d in run_dirs]
    # Both the name given and the one it resolves to: the subfolder is named by the first
    # (bundle.model.DirSource), and a link named `.git` may lead to an ordinary run.
    for rid in (*ids, *(Path(d).name for d in run_dirs)):
        if (problem := run_subfolder_problem(rid)) is not None:
            raise fail(
                ErrorCode.RESTORE_INELIGIBLE,
                "PREFLIGHT",
                f"{problem}: each run goes into <restore root>/<run id>",
                "CHAIN_RUN_ID",
                run_id=rid,
            )
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise fail(
            ErrorCode.RESTORE_INELIGIBLE,
            "PREFLIGHT",
            f"run id {dup[0]!r} appears twice",
            "CHAIN_DUPLICATE_RUN",
            run_id=dup[0],
        )
    checked = []
    for d, project_root in zip(run_dirs, project_roots, strict=True):
        try:
            checked.append(eligible(Path(d), project_root, trust))
        except CatalyticError as exc:
            exc.details["run_id"] = Path(d).resolve().name
            raise
    return checked


def _plans(
    checked: list[tuple[Verified, DirSource]], restore_root: Path, croot: str
) -> list[tuple[str, Plan]]:
    plans: list[tuple[str, Plan]] = []
    for v, src in checked:
        check_keys(list(v.hashes))
        result_root = restore_root / v.run_id
        if os.path.lexists(result_root):
            raise fail(
                ErrorCode.TARGET_EXISTS,
                "PLAN",
                f"{result_root} already exists",
                path=v.run_id,
                run_id=v.run_id,
            )
        plan = build_plan(src, v, result_root, probe=False)
        plan.chain_root = croot
        plans.append((v.run_id, plan))
    return plans


def _dry_run(plans: list[tuple[str, Plan]], croot: str) -> dict[str, Any]:
    return {
        "ok": True,
        "dry_run": True,
        "chain_root": croot,
        "would_restore_files_count": sum(len(p.entries) for _, p in plans),
        "would_restore_bytes": sum(p.total_bytes for _, p in plans),
        "would_restore_paths": [
            path for rid, p in plans for path in dry_run_report(p, rid + "/")["would_restore_paths"]
        ],
    }


def _appeared(rid: str) -> CatalyticError:
    return fail(
        ErrorCode.TARGET_EXISTS,
        "EXECUTE",
        f"{rid} appeared in the restore root",
        path=rid,
        run_id=rid,
    )


def _restore_runs(
    rfd: int, plans: list[tuple[str, Plan]], croot: str, callbacks: Callbacks
) -> list[dict[str, Any]]:
    for rid, _ in plans:
        if lstat_at(rfd, rid) is not None:
            raise _appeared(rid)
    jname = new_chain_journal_name()
    journal: dict[str, Any] = {
        "chain_root": croot,
        "committed": False,
        "created": [],
        "runs": [rid for rid, _ in plans],
    }
    write_journal(rfd, jname, journal)
    results = []
    try:
        for rid, plan in plans:
            journal["created"].append(rid)
            write_journal(rfd, jname, journal)  # recorded before it exists
            try:
                os.mkdir(rid, 0o777, dir_fd=rfd)  # the umask decides
            except FileExistsError:
                # Made by someone else since the check above: theirs, never rolled back.
                journal["created"].pop()
                write_journal(rfd, jname, journal)
                raise _appeared(rid) from None
            made = os.stat(rid, dir_fd=rfd, follow_symlinks=False)
            journal.setdefault("created_ids", {})[rid] = [made.st_dev, made.st_ino]
            write_journal(rfd, jname, journal)
            plan.new_dirs = []
            try:
                results.append({"run_id": rid, **execute(plan, callbacks)})
            except CatalyticError as exc:
                raise fail(
                    ErrorCode.CHAIN_RESTORE_FAILED,
                    str(exc.details.get("phase", "EXECUTE")),
                    f"restoring {rid} failed: {exc.message}; every run "
                    "restored so far was rolled back",
                    exc.code.value,
                    run_id=rid,
                    cause=exc.to_dict(),
                ) from exc
        journal["committed"] = True
        write_journal(rfd, jname, journal)
    except BaseException:
        rollback_chain(rfd, journal)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(jname, dir_fd=rfd)
        os.fsync(rfd)
        raise
    os.unlink(jname, dir_fd=rfd)
    os.fsync(rfd)
    return results


def restore_chain(
    run_dirs: list[Path],
    restore_root: Path,
    *,
    project_root: Path | None = None,
    allow_untrusted: bool = False,
    trust: TrustPolicy | None = None,
    dry_run: bool = False,
    callbacks: Callbacks | None = None,
    project_roots: list[Path] | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """`project_roots`: one per run directory (archives: each its own) instead of
    `project_root`; `record=False`: the caller records the restore (restore/archived.py)."""
    callbacks = callbacks or Callbacks()
    if not run_dirs:
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", "the chain is empty", "CHAIN_EMPTY")
    if trust is None:
        trust = trust_policy(caller_anchor(), allow_untrusted=allow_untrusted)
    roots: list[Path | None] = (
        list(project_roots) if project_roots is not None else [project_root] * len(run_dirs)
    )
    checked = _eligible_chain(run_dirs, roots, trust)
    croot = chain_root([v.bundle_root for v, _ in checked], [v.run_id for v, _ in checked])
    check_target(restore_root)
    plans = _plans(checked, restore_root, croot)
    if dry_run:
        return _dry_run(plans, croot)
    with root_lock(restore_root) as rfd:
        recover(restore_root, locked_fd=rfd)
        results = _restore_runs(rfd, plans, croot, callbacks)
    if record:
        record_for(
            Path(run_dirs[0]).resolve().parent,
            "restore",
            {
                "run_ids": [rid for rid, _ in plans],
                "chain_root": croot,
                "target": str(restore_root),
            },
        )
    return {
        "ok": True,
        "chain_root": croot,
        "runs": results,
        "restored_files_count": sum(r["restored_files_count"] for r in results),
        "restored_bytes": sum(r["restored_bytes"] for r in results),
    }
