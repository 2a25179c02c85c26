"""`restore bundle|chain|recover`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.common import JsonOpt
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, clean_env
from catalytic_hooks.restore.engine import Hooks

restore_app = typer.Typer(help="Restore verified bundle outputs (SPECTRUM-06).",
                          no_args_is_help=True, pretty_exceptions_show_locals=False)

RootOpt = Annotated[Path | None, typer.Option("--restore-root", help="Absolute, existing, "
                                              "writable directory to restore into.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Run every check that does not write.")]
UntrustedOpt = Annotated[bool, typer.Option("--allow-untrusted", help="Restore a valid bundle "
                                            "whatever its signer.")]
ProjectOpt = Annotated[Path | None, typer.Option("--project-root", help="Where outputs live "
                                                 "(default: the repository of the run dir).")]
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


@contextlib.contextmanager
def progress(json_mode: bool, total_files: int, total_bytes: int) -> Iterator[Hooks]:
    """A rich progress bar (files and bytes) on a terminal for large restores; none otherwise."""
    if json_mode or not sys.stderr.isatty() or total_bytes < PROGRESS_MIN_BYTES:
        yield Hooks()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
    )

    with Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(), DownloadColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        files = bar.add_task("files", total=total_files)
        data = bar.add_task("bytes", total=total_bytes, visible=False)

        def update(done_files: int, done_bytes: int) -> None:
            bar.update(files, completed=done_files)
            bar.update(data, completed=done_bytes)

        yield Hooks(progress=update)


def _human(doc: dict[str, Any]) -> None:
    if doc.get("dry_run"):
        say(f"dry run: would restore {doc['would_restore_files_count']} file(s), "
            f"{doc['would_restore_bytes']} bytes")
        for p in doc["would_restore_paths"]:
            say(f"  {p}")
        return
    say(f"restored {doc['restored_files_count']} file(s), {doc['restored_bytes']} bytes into "
        f"{doc.get('result_root') or doc.get('restore_root')}")
    if doc.get("worktree"):
        say(f"worktree: {doc['worktree']} at {doc['rev']}")


def _worktree(run_dir: Path, path: Path, rev: str | None) -> tuple[Repo, str]:
    """A new linked worktree at REV (default: the bundle's recorded commit, else HEAD). Git's
    variables from a calling hook are not inherited."""
    import json

    if path.exists() or path.is_symlink():
        raise CatalyticError(ErrorCode.RESTORE_TARGET_INVALID, f"{path} exists; --worktree "
                             "needs a new path", phase="PREFLIGHT", reason="WORKTREE_EXISTS")
    repo = Repo.discover(run_dir.resolve().parent)
    repo.env = clean_env()
    if rev is None:
        try:
            spec = json.loads((run_dir / "TASK_SPEC.json").read_bytes())
            recorded = spec.get("git_commit") if isinstance(spec, dict) else None
        except (OSError, ValueError):
            recorded = None
        rev = recorded if isinstance(recorded, str) and repo.rev_parse(recorded) else "HEAD"
    commit = repo.rev_parse(rev)
    if commit is None:
        raise CatalyticError(ErrorCode.WORKTREE_FAILED, f"unknown revision {rev!r}")
    repo.git("worktree", "add", "--detach", "-q", str(path), commit)
    return repo, commit


def _record(run_dir: Path, data: dict[str, Any]) -> None:
    """Append the restore to the chronicle of the repository holding the bundle, if any."""
    from catalytic_hooks.cli.common import record
    from catalytic_hooks.core.policy import load_policy

    repo = Repo.find(run_dir.resolve().parent)
    if repo is not None:
        record(repo, load_policy(repo.top), "restore", data)


def _remove_worktree(repo: Repo, path: Path) -> None:
    repo.git("worktree", "remove", "--force", str(path), check=False)
    repo.git("worktree", "prune", check=False)


@restore_app.command("bundle")
def bundle(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.")],
    restore_root: RootOpt = None,
    worktree: Annotated[Path | None, typer.Option("--worktree", help="Create a new git worktree "
                        "here and restore into it.")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Worktree revision (default: the "
                   "bundle's recorded commit, else HEAD).")] = None,
    dry_run: DryOpt = False,
    allow_untrusted: UntrustedOpt = False,
    project_root: ProjectOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Restore one bundle's outputs into an empty target, all or nothing."""
    from catalytic_hooks.restore.engine import (
        build_plan,
        check_keys,
        check_target,
        dry_run_report,
        eligible,
        execute,
    )

    with handled(json_mode):
        if (restore_root is None) == (worktree is None):
            raise CatalyticError(ErrorCode.USAGE, "give exactly one of --restore-root and "
                                 "--worktree")
        v, src = eligible(run_dir, project_root, allow_untrusted)
        check_keys(list(v.hashes))
        repo = commit = None
        if worktree is not None:
            target = worktree.absolute()
            if not dry_run:
                repo, commit = _worktree(run_dir, target, rev)
        else:
            assert restore_root is not None
            target = restore_root
        doc: dict[str, Any]
        try:
            if dry_run and worktree is not None:
                # The worktree does not exist yet, so every target is new.
                plan = build_plan(src, v, target, probe=False)
                doc = {**dry_run_report(plan), "bundle_root": v.bundle_root}
            else:
                check_target(target)
                plan = build_plan(src, v, target)
                if dry_run:
                    doc = {**dry_run_report(plan), "bundle_root": v.bundle_root}
                else:
                    with progress(json_mode, len(plan.entries), plan.total_bytes) as hooks:
                        doc = execute(plan, hooks)
        except BaseException:
            if repo is not None:
                _remove_worktree(repo, target)
            raise
        if repo is not None:
            doc.update(worktree=str(target), rev=commit)
        if not dry_run:
            _record(run_dir, {"run_id": v.run_id, "bundle_root": v.bundle_root,
                              "target": str(target)})
        result(json_mode, True, "PASS", doc, lambda: _human(doc))


@restore_app.command("chain")
def chain(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories, in chain order.")],
    restore_root: RootOpt = None,
    dry_run: DryOpt = False,
    allow_untrusted: UntrustedOpt = False,
    project_root: ProjectOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Restore a chain into per-run subfolders, all or nothing."""
    from catalytic_hooks.restore.chain import restore_chain

    with handled(json_mode):
        if restore_root is None:
            raise CatalyticError(ErrorCode.USAGE, "--restore-root is required")
        doc = restore_chain(run_dirs, restore_root, project_root=project_root,
                            allow_untrusted=allow_untrusted, dry_run=dry_run)
        if not dry_run:
            _record(run_dirs[0], {"run_ids": [d.resolve().name for d in run_dirs],
                                  "chain_root": doc["chain_root"], "target": str(restore_root)})
        result(json_mode, True, "PASS", doc, lambda: _human({**doc, "result_root":
                                                            str(restore_root)}))


@restore_app.command("recover")
def recover_cmd(
    root: Annotated[Path, typer.Argument(help="The restore root to recover.")],
    json_mode: JsonOpt = False,
) -> None:
    """Undo (or finish) a restore that was interrupted, and remove stale staging."""
    from catalytic_hooks.restore.engine import recover

    with handled(json_mode):
        doc = recover(root)

        def human() -> None:
            for k in ("rolled_back", "completed", "stale_staging_removed"):
                for item in doc[k]:
                    say(f"{k.replace('_', ' ')}: {item}")
            if not any(doc.values()):
                say("nothing to recover")

        result(json_mode, True, "PASS", doc, human)
