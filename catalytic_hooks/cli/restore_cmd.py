"""`restore bundle|chain|recover`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.bundle.trust import TrustPolicy, caller_anchor, trust_policy
from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.options import JsonOpt, RepoOpt, TrustFileOpt
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.cli.registry_cmd import InsecureOpt, RegistryConfigOpt
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.restore.transaction import Callbacks, Plan

restore_app = typer.Typer(
    help="Restore verified bundle outputs (SPECTRUM-06).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

RootOpt = Annotated[
    Path | None,
    typer.Option("--restore-root", help="Absolute, existing, writable directory to restore into."),
]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Run every check that does not write.")]
UntrustedOpt = Annotated[
    bool, typer.Option("--allow-untrusted", help="Restore a valid bundle whatever its signer.")
]
ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project-root", help="Where outputs live (default: the repository of the run dir)."
    ),
]
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


@contextlib.contextmanager
def progress(json_mode: bool) -> Iterator[Callbacks]:
    """A rich progress bar (files and bytes) on a terminal for large restores, started once the
    engine has its plan; none in --json mode or when stderr is not a terminal."""
    if json_mode or not sys.stderr.isatty():
        yield Callbacks()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
    )

    bar = Progress(
        TextColumn("restoring"),
        BarColumn(),
        MofNCompleteColumn(),
        DownloadColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: list[Any] = []

    def planned(plan: Plan) -> None:
        if plan.total_bytes < PROGRESS_MIN_BYTES:
            return
        if not tasks:
            bar.start()
        tasks[:] = [
            bar.add_task("files", total=len(plan.entries)),
            bar.add_task("bytes", total=plan.total_bytes, visible=False),
        ]

    def update(done_files: int, done_bytes: int) -> None:
        if tasks:
            bar.update(tasks[0], completed=done_files)
            bar.update(tasks[1], completed=done_bytes)

    try:
        yield Callbacks(progress=update, planned=planned)
    finally:
        bar.stop()


def _trust(trust_file: Path | None, allow_untrusted: bool) -> TrustPolicy:
    return trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted)


def _human(doc: dict[str, Any]) -> None:
    if doc.get("dry_run"):
        say(
            f"dry run: would restore {doc['would_restore_files_count']} file(s), "
            f"{doc['would_restore_bytes']} bytes"
        )
        for p in doc["would_restore_paths"]:
            say(f"  {p}")
        return
    say(
        f"restored {doc['restored_files_count']} file(s), {doc['restored_bytes']} bytes into "
        f"{doc.get('result_root') or doc.get('restore_root')}"
    )
    if doc.get("worktree"):
        say(f"worktree: {doc['worktree']} at {doc['rev']}")


@restore_app.command("bundle")
def bundle(
    run_dir: Annotated[Path, typer.Argument(help="The run directory, or an archive file.")],
    restore_root: RootOpt = None,
    worktree: Annotated[
        Path | None,
        typer.Option(
            "--worktree",
            help="Create a new git worktree "
            "here and restore into it (from an archive: a standalone repository "
            "at the recorded commit).",
        ),
    ] = None,
    rev: Annotated[
        str | None,
        typer.Option(
            "--rev", help="Worktree revision (default: the bundle's recorded commit, else HEAD)."
        ),
    ] = None,
    dry_run: DryOpt = False,
    allow_untrusted: UntrustedOpt = False,
    project_root: ProjectOpt = None,
    trust_file: TrustFileOpt = None,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Restore one bundle's outputs into an empty target, all or nothing (a run directory, an
    archive file or an oci:// reference)."""
    from catalytic_hooks.cli.registry_cmd import options, resolved
    from catalytic_hooks.restore.engine import WorktreeTarget, restore_bundle

    with (
        handled(json_mode),
        resolved([run_dir], options(registry_config, insecure)) as ((run_dir,), pulled),
    ):
        target: Path | WorktreeTarget
        if restore_root is not None and worktree is None:
            target = restore_root
        elif worktree is not None and restore_root is None:
            target = WorktreeTarget(worktree, rev)
        else:
            raise CatalyticError(
                ErrorCode.USAGE, "give exactly one of --restore-root and --worktree"
            )
        with progress(json_mode) as callbacks:
            if run_dir.is_file():
                from catalytic_hooks.cli.context import caller_limits
                from catalytic_hooks.restore.archived import restore_archive

                doc = restore_archive(
                    run_dir,
                    target,
                    trust=_trust(trust_file, allow_untrusted),
                    limits=caller_limits(),
                    dry_run=dry_run,
                    callbacks=callbacks,
                )
            else:
                doc = restore_bundle(
                    run_dir,
                    target,
                    project_root=project_root,
                    trust=_trust(trust_file, allow_untrusted),
                    dry_run=dry_run,
                    callbacks=callbacks,
                )
        if pulled:
            doc["pulled"] = pulled[0]
        result(json_mode, True, SuccessCode.PASS, doc, lambda: _human(doc))


@restore_app.command("chain")
def chain(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories, or archive files, in chain order.")
    ],
    restore_root: RootOpt = None,
    dry_run: DryOpt = False,
    allow_untrusted: UntrustedOpt = False,
    project_root: ProjectOpt = None,
    trust_file: TrustFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Restore a chain into per-run subfolders, all or nothing (run directories, or archive
    files)."""
    from catalytic_hooks.restore.chain import restore_chain

    with handled(json_mode):
        if restore_root is None:
            raise CatalyticError(ErrorCode.USAGE, "--restore-root is required")
        archives = [d for d in run_dirs if d.is_file()]
        if archives and len(archives) != len(run_dirs):
            raise CatalyticError(
                ErrorCode.USAGE, "a chain is run directories or archive files, not both"
            )
        with progress(json_mode) as callbacks:
            if archives:
                from catalytic_hooks.cli.context import caller_limits
                from catalytic_hooks.restore.archived import restore_archive_chain

                doc = restore_archive_chain(
                    archives,
                    restore_root,
                    trust=_trust(trust_file, allow_untrusted),
                    limits=caller_limits(),
                    dry_run=dry_run,
                    callbacks=callbacks,
                )
            else:
                doc = restore_chain(
                    run_dirs,
                    restore_root,
                    project_root=project_root,
                    trust=_trust(trust_file, allow_untrusted),
                    dry_run=dry_run,
                    callbacks=callbacks,
                )
        result(
            json_mode,
            True,
            SuccessCode.PASS,
            doc,
            lambda: _human({**doc, "result_root": str(restore_root)}),
        )


@restore_app.command("recover")
def recover_cmd(
    root: Annotated[Path, typer.Argument(help="The restore root to recover.")],
    json_mode: JsonOpt = False,
) -> None:
    """Undo (or finish) a restore that was interrupted, and remove stale staging."""
    from catalytic_hooks.restore.recovery import recover

    with handled(json_mode):
        doc = recover(root)

        def human() -> None:
            for k in ("rolled_back", "completed", "stale_staging_removed"):
                for item in doc[k]:
                    say(f"{k.replace('_', ' ')}: {item}")
            for item in doc["refused"]:
                say(f"left alone (not this tool's): {item['name']}: {item['reason']}")
            if not any(doc.values()):
                say("nothing to recover")

        result(json_mode, True, SuccessCode.PASS, doc, human)


def recover_all(
    restore_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--restore-root",
            help="Also recover an interrupted restore into this root (repeatable).",
        ),
    ] = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Finish or roll back whatever was interrupted here: the undo of killed `catalytic run
    --restore` commands, and restores into this repository (and any --restore-root)."""
    from catalytic_hooks.restore.recovery import recover
    from catalytic_hooks.run.recovery import recover_runs

    with handled(json_mode):
        r = open_repo(repo)
        runs = recover_runs(r)
        restores = {str(root): recover(root) for root in [r.top, *(restore_root or [])]}
        ok = all(x["status"] == "recovered" for x in runs)
        # A journal this tool did not write (or that names what no policy could) is left alone
        # and named by its own code: nothing of it was acted on.
        code = (
            SuccessCode.PASS
            if ok
            else ErrorCode.UNDO_INCOMPLETE
            if any(x["status"] == "incomplete" for x in runs)
            else ErrorCode.JOURNAL_REFUSED
        )
        details = {"runs": runs, "restores": restores}

        def human() -> None:
            for x in runs:
                say(f"run {x.get('run_id')} ({x['journal']}): {x['status']}")
                for k in ("restored", "removed"):
                    for item in x.get(k, []):
                        say(f"  {k}: {item['path']}")
                for item in x.get("refused", []) if isinstance(x.get("refused"), list) else []:
                    say(f"  still changed: {item['path']}: {item['reason']}")
                if x["status"] == "refused" or "reason" in x:
                    say(f"  left alone: {x['reason']}")
            for root, doc in restores.items():
                for k in ("rolled_back", "completed", "stale_staging_removed"):
                    for item in doc[k]:
                        say(f"restore into {root}: {k.replace('_', ' ')}: {item}")
            if not runs and not any(any(d.values()) for d in restores.values()):
                say("nothing to recover")

        result(json_mode, ok, code, details, human)
