"""`check`, `hook`, `install`, `uninstall`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalytic_hooks.cli.check_impl import CheckArgs, run_check
from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.hot_options import CHECK
from catalytic_hooks.cli.options import JsonOpt, RepoOpt, typer_command
from catalytic_hooks.cli.output import CommandExit, emit_json, envelope, handled, result, say
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode
from catalytic_hooks.enforce.install import (
    HOOK_TYPES,
    SERVER_DEFAULT,
    SERVER_HOOK_TYPES,
    configure_server,
    install,
    uninstall,
)
from catalytic_hooks.git.repo import Repo

check = typer_command(
    CHECK,
    CheckArgs,
    run_check,
    "Run the commit check (--staged) or the push check over a range (CI mode).",
)


def hook(
    hook_type: Annotated[str, typer.Argument(help="pre-commit, pre-push, pre-receive or update")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="What git passes (pre-push: remote and URL; update: ref, old, new)."),
    ] = None,
) -> None:
    """The entry point git runs (normally dispatched before this CLI loads)."""
    from catalytic_hooks.enforce.hookmain import main as hook_main

    raise CommandExit(hook_main([hook_type, *(args or [])]))


def _hook_repo(repo: Path | None, server: bool, git_dir: Path | None) -> Repo:
    if server or git_dir is not None:
        return Repo.discover_bare(git_dir or repo or Path.cwd())
    return open_repo(repo)


ServerOpt = Annotated[
    bool,
    typer.Option(
        "--server",
        help="Server-side gate in a bare "
        "repository: pre-receive and post-receive (or "
        "--hook-type update).",
    ),
]
GitDirOpt = Annotated[
    Path | None,
    typer.Option("--git-dir", help="The (bare) repository for --server (default: here)."),
]


def install_cmd(
    hook_type: Annotated[
        list[str] | None,
        typer.Option(
            "--hook-type",
            "-t",
            help="pre-commit and/or pre-push (default: both); with --server "
            "pre-receive and post-receive (default), or update.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a foreign hook, keeping it "
            "chained (run first) as <hook>.catalytic-chained.",
        ),
    ] = False,
    server: ServerOpt = False,
    git_dir: GitDirOpt = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Install native git hooks (honours core.hooksPath)."""
    with handled(json_mode):
        bare = server or git_dir is not None
        default = list(SERVER_DEFAULT if bare else HOOK_TYPES)
        target = _hook_repo(repo, server, git_dir)
        results = install(target, list(hook_type or default), force)
        configured = configure_server(target) if bare else []
        details: dict[str, object] = {"hooks": [r.__dict__ for r in results]}
        # The default branch's policy judges every other ref: say at once when HEAD does not
        # lead to it (`git init --bare` leaves HEAD on master while the team pushes main).
        head = []
        if bare:
            from catalytic_hooks.enforce.doctor import server_head

            head = [c for c in server_head(target) if not c.ok]
            details["config"] = [
                {"key": r.hook, "path": r.path, "action": r.action} for r in configured
            ]
            details["warnings"] = [c.to_dict() for c in head]
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, details))
        else:
            for r in results:
                say(f"{r.hook}: {r.action} ({r.path})")
            for r in configured:
                say(f"{r.hook} = true: {r.action} ({r.path})")
            for c in head:
                say(f"warning: {c.detail}; fix: {c.fix}")


def uninstall_cmd(
    hook_type: Annotated[list[str] | None, typer.Option("--hook-type", "-t")] = None,
    server: ServerOpt = False,
    git_dir: GitDirOpt = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Remove the hooks catalytic installed (and only those)."""
    with handled(json_mode):
        bare = server or git_dir is not None
        results = uninstall(
            _hook_repo(repo, server, git_dir),
            list(hook_type or (SERVER_HOOK_TYPES if bare else HOOK_TYPES)),
        )
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, {"hooks": [r.__dict__ for r in results]}))
        else:
            for r in results:
                say(f"{r.hook}: {r.action} ({r.path})")


def adopt_cmd(
    durable_roots: Annotated[
        list[str] | None,
        typer.Option(
            "--durable-roots", help="Durable roots (default: proposed from the directories found)."
        ),
    ] = None,
    tmp_roots: Annotated[
        list[str] | None, typer.Option("--tmp-roots", help="Tmp roots (default: proposed).")
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            help="NAME=KEY (a .pub file or key text) to trust from the start; repeatable.",
        ),
    ] = None,
    no_commit: Annotated[
        bool, typer.Option("--no-commit", help="Write the files, do not commit them.")
    ] = False,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Start governing an existing repository: policy with baseline = HEAD, trust file, and the
    adoption commit."""
    from catalytic_hooks.enforce.adopt import adopt

    with handled(json_mode):
        pairs = []
        for item in trust or []:
            name, sep, key = item.partition("=")
            if not sep:
                raise CatalyticError(ErrorCode.USAGE, f"--trust {item!r}: use NAME=KEY")
            pairs.append((name, key))
        a = adopt(
            open_repo(repo),
            durable=durable_roots,
            tmp=tmp_roots,
            validators=pairs,
            commit=not no_commit,
        )
        details = a.__dict__

        def human() -> None:
            say(f"baseline: {a.baseline} (history up to here is not judged)")
            say(
                f"durable roots: {', '.join(a.durable_roots) or '(none)'}; tmp roots: "
                f"{', '.join(a.tmp_roots) or '(none)'}; protected: everything else"
            )
            say(f"trusted validators: {', '.join(a.validators) or '(none yet)'}")
            say(
                f"adoption commit: {a.commit}"
                if a.commit
                else f"wrote {', '.join(a.files)}; commit exactly these on top of the baseline"
            )
            say("next: `catalytic install` here, `catalytic install --server` on the server")

        result(json_mode, True, SuccessCode.OK, details, human)


def doctor_cmd(
    server: ServerOpt = False,
    git_dir: GitDirOpt = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Is this repository governed? Hooks, interpreter, policy, trust file, baseline, git and
    ssh-keygen, with a fix for each problem; with --server, a bare repository's gate and HEAD."""
    from catalytic_hooks.enforce.doctor import diagnose, diagnose_server

    with handled(json_mode):
        if server or git_dir is not None:
            checks = diagnose_server(_hook_repo(repo, server, git_dir))
        else:
            checks = diagnose(open_repo(repo))
        ok = all(c.ok for c in checks)

        def human() -> None:
            for c in checks:
                say(f"{'ok ' if c.ok else 'FIX'}  {c.name}: {c.detail}")
                if c.fix:
                    say(f"     -> {c.fix}")
            say("catalytic: all good" if ok else "catalytic: problems found (FIX lines)")

        result(
            json_mode,
            ok,
            SuccessCode.OK if ok else VerdictCode.DOCTOR_PROBLEMS,
            {"checks": [c.to_dict() for c in checks]},
            human,
        )


__all__ = ["adopt_cmd", "check", "doctor_cmd", "hook", "install_cmd", "uninstall_cmd"]
