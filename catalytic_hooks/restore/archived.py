"""`restore bundle FILE`: restore from an archive, with no repository anywhere.

`--restore-root DIR`: the extracted run directory is restored like any other (its outputs come
from its content store). `--worktree DIR`: a standalone repository is created at DIR from the
archive's own objects, checked out at the commit git computes from them (which must be the one
TASK_SPEC records, never ARCHIVE.json's word), and the outputs are restored into it, all of it
beside DIR under a hidden name that is renamed to DIR at the end: on any failure, a kill
included, DIR does not exist.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.read import Opened, opened_archive, prove_objects
from catalytic_hooks.archive.verify import check_commit
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.fs.dirfd import remove_tree
from catalytic_hooks.git.pack import checkout_detached
from catalytic_hooks.provenance.chronicle import record_for
from catalytic_hooks.restore.aside import built_aside, new_target, placed
from catalytic_hooks.restore.chain import restore_chain
from catalytic_hooks.restore.engine import (
    WorktreeTarget,
    build_plan,
    check_keys,
    dry_run_report,
    eligible,
    execute,
    restore_bundle,
)
from catalytic_hooks.restore.transaction import Callbacks, check_target, fail


def _into_standalone(
    opened: Opened, wt: WorktreeTarget, trust: TrustPolicy, dry_run: bool, callbacks: Callbacks
) -> dict[str, Any]:
    v, src = eligible(opened.run_dir, opened.project_root, trust)
    check_keys(list(v.hashes))
    target = new_target(wt.path)
    if dry_run:
        return {
            **dry_run_report(build_plan(src, v, target, probe=False)),
            "bundle_root": v.bundle_root,
        }
    if not target.parent.is_dir():
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"{target.parent} is not a directory",
            "NOT_A_DIRECTORY",
        )
    # Built beside DIR and renamed into place whole (restore.aside): a kill at any instant
    # leaves DIR absent, never a checkout without its outputs that the next attempt refuses.
    with built_aside(target, remove_tree) as (partial, held):
        proved = prove_objects(opened, partial, bare=False)
        if proved is None:
            raise CatalyticError(
                ErrorCode.WORKTREE_FAILED, "the archive records no commit to check out"
            )
        check_commit(opened, proved)
        if wt.rev is not None and wt.rev != proved.commit:
            raise CatalyticError(
                ErrorCode.USAGE, f"--rev: an archive holds only its recorded commit {proved.commit}"
            )
        from catalytic_hooks.git.repo import Repo

        checkout_detached(Repo.discover(partial), proved.commit)
        check_target(partial)
        doc = execute(build_plan(src, v, partial), callbacks, locked_fd=held)
        with placed(target):
            try:
                os.rename(partial, target)
            except OSError as exc:
                raise io_failure(f"put the checkout in place at {target}", target, exc) from exc
    doc["result_root"] = str(target)
    return {
        **doc,
        "worktree": str(target),
        "rev": proved.commit,
        "tree": proved.tree,
        "standalone": True,
    }


def restore_archive(
    path: Path,
    target: Path | WorktreeTarget,
    *,
    trust: TrustPolicy,
    limits: Limits,
    dry_run: bool = False,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Restore from the archive at `path`; a restore that wrote something is recorded in the
    chronicle of the repository the command runs in, if any, as a run directory's restore is
    in its own repository's, with the archive's name and SHA-256 as `source_archive`."""
    callbacks = callbacks or Callbacks()
    with opened_archive(path, limits) as (opened, proved):
        check_commit(opened, proved)
        if isinstance(target, WorktreeTarget):
            doc = _into_standalone(opened, target, trust, dry_run, callbacks)
        else:
            doc = restore_bundle(
                opened.run_dir,
                target,
                project_root=opened.project_root,
                trust=trust,
                dry_run=dry_run,
                callbacks=callbacks,
                record=False,
            )
        if not dry_run:
            record_for(
                Path.cwd(),
                "restore",
                {
                    "run_id": opened.run_id,
                    "bundle_root": doc.get("bundle_root"),
                    "target": doc.get("worktree") or str(doc.get("result_root")),
                    "source_archive": {"name": path.name, "sha256": opened.sha256},
                },
            )
        return {**doc, "source_archive": opened.source_info(), "run_id": opened.run_id}


def restore_archive_chain(
    paths: list[Path],
    restore_root: Path,
    *,
    trust: TrustPolicy,
    limits: Limits,
    dry_run: bool = False,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """`restore chain` of archives: each checked, extracted and its commit proven, then the
    run directories restored as one chain (every one eligible before anything is written, all
    or nothing). Recorded in the chronicle of the repository the command runs in, with every
    archive's name and SHA-256 (`source_archives`)."""
    with contextlib.ExitStack() as stack:
        opened_all: list[Opened] = []
        for path in paths:
            opened, proved = stack.enter_context(opened_archive(path, limits))
            check_commit(opened, proved)
            opened_all.append(opened)
        doc = restore_chain(
            [o.run_dir for o in opened_all],
            restore_root,
            project_roots=[o.project_root for o in opened_all],
            trust=trust,
            dry_run=dry_run,
            callbacks=callbacks,
            record=False,
        )
        sources = [{"name": o.archive.name, "sha256": o.sha256} for o in opened_all]
    if not dry_run:
        record_for(
            Path.cwd(),
            "restore",
            {
                "run_ids": [o.run_id for o in opened_all],
                "chain_root": doc["chain_root"],
                "target": str(restore_root),
                "source_archives": sources,
            },
        )
    return {**doc, "source_archives": sources}
