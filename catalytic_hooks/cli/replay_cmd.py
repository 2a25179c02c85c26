"""`replay` and `chronicle verify|show`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.env_cmd import (
    AllowUnhashedOpt,
    FallbackOpt,
    FindLinksOpt,
    IndexOpt,
    InstallerOpt,
    OfflineOpt,
    PythonOpt,
    rebuild_options,
)
from catalytic_hooks.cli.options import JsonOpt, RepoOpt, TrustFileOpt
from catalytic_hooks.cli.output import emit_json, envelope, handled, result, say
from catalytic_hooks.cli.registry_cmd import InsecureOpt, RegistryConfigOpt
from catalytic_hooks.core.errors import ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.policy import load_policy

if TYPE_CHECKING:
    from catalytic_hooks.replay.report import ReplayReport


def replay(
    run_dir: Annotated[
        Path, typer.Argument(help="The archived run directory, or an archive file.")
    ],
    worktree: Annotated[
        Path | None,
        typer.Option(
            "--worktree",
            help="Where to create the clean worktree (default: a temporary directory).",
        ),
    ] = None,
    strict_env: Annotated[
        bool,
        typer.Option(
            "--strict-env", help="Fail when the environment differs from the recorded one."
        ),
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Kill the command after S seconds.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the worktree(s) afterwards.")] = False,
    no_quarantine: Annotated[
        bool, typer.Option("--no-quarantine", help="Leave a corrupt bundle in place.")
    ] = False,
    allow_untrusted: Annotated[bool, typer.Option("--allow-untrusted")] = False,
    trust_file: TrustFileOpt = None,
    pass_env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            help="Pass this variable of "
            "your environment to the replayed command (repeatable); by default it "
            "sees only PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TERM, "
            "TZ and TMPDIR.",
        ),
    ] = None,
    replay_dir: Annotated[
        Path | None,
        typer.Option(
            "--replay-dir",
            help="For an archive: the "
            "new directory to unpack and replay in (default: "
            "<replays_dir>/<run_id>-<UTC time>).",
        ),
    ] = None,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    rebuild_env: Annotated[
        bool,
        typer.Option(
            "--rebuild-env",
            help="Rebuild the recorded "
            "environment (exact pins, hash-checked; cached) and run the command "
            "in it.",
        ),
    ] = False,
    offline: OfflineOpt = False,
    index: IndexOpt = None,
    fallback_index: FallbackOpt = None,
    find_links: FindLinksOpt = None,
    python: PythonOpt = None,
    installer: InstallerOpt = None,
    allow_unhashed: AllowUnhashedOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Re-execute an archived run at its recorded commit and judge whether it reproduces (a
    run directory, an archive file or an oci:// reference)."""
    from catalytic_hooks.bundle.trust import caller_anchor, trust_policy
    from catalytic_hooks.cli.registry_cmd import options, resolved
    from catalytic_hooks.replay.runner import ReplayOptions
    from catalytic_hooks.replay.runner import replay as do_replay

    with (
        handled(json_mode),
        resolved([run_dir], options(registry_config, insecure)) as ((run_dir,), pulled),
    ):
        rebuild = None
        if rebuild_env:
            from catalytic_hooks.cli.context import caller
            from catalytic_hooks.core.policy import Policy

            here = caller()
            top, policy = here if here else (Path.cwd(), Policy())
            rebuild = rebuild_options(
                top,
                policy,
                offline=offline,
                index=index,
                fallbacks=fallback_index,
                find_links=find_links,
                python=python,
                installer=installer,
                allow_unhashed=allow_unhashed,
            )
        opts = ReplayOptions(
            rebuild=rebuild,
            worktree=worktree.absolute() if worktree else None,
            strict_env=strict_env,
            timeout=timeout,
            keep=keep,
            quarantine=not no_quarantine,
            allow_untrusted=allow_untrusted,
            trust=trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted),
            pass_env=list(pass_env or []),
        )
        if run_dir.is_file():
            # a pulled archive is never quarantined: its bytes stay in the registry (validate)
            rep = _replay_archive(run_dir, opts, replay_dir, no_quarantine or bool(pulled))
        else:
            repo = open_repo(None)
            rep = do_replay(repo, load_policy(repo.top), run_dir, opts)
        if pulled:
            rep.pulled = pulled[0]
        assert rep.verdict is not None  # a replay that returns has its verdict

        def human() -> None:
            for line in rep.lines():
                say(line)

        result(json_mode, rep.passing, rep.verdict.code, rep.to_dict(), human)


def _replay_archive(
    path: Path, opts: Any, replay_dir: Path | None, no_quarantine: bool
) -> ReplayReport:
    from catalytic_hooks.archive.read import limits_for
    from catalytic_hooks.cli.context import caller
    from catalytic_hooks.core.policy import Policy
    from catalytic_hooks.replay.archived import replay_archive

    here = caller()
    policy = here[1] if here else Policy()
    qdir = here[0] / policy.quarantine_dir if here else Path.cwd() / "quarantine"
    return replay_archive(
        path,
        opts,
        caller=here,
        replay_dir=replay_dir,
        quarantine_dir=qdir,
        limits=limits_for(policy),
        quarantine=not no_quarantine,
    )


chronicle_app = typer.Typer(
    help="The hash-chained ledger of runs, verifications, restores and replays.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@chronicle_app.command("verify")
def chronicle_verify(repo: RepoOpt = None, json_mode: JsonOpt = False) -> None:
    """Check every line's hash chain; name the first bad line."""
    from catalytic_hooks.provenance.chronicle import verify

    with handled(json_mode):
        r = open_repo(repo)
        path = r.top / load_policy(r.top).chronicle
        check = verify(path)
        details: dict[str, Any] = {
            "path": str(path),
            "records": check.records,
            "bad_line": check.bad_line,
            "reason": check.reason,
        }
        result(
            json_mode,
            check.ok,
            SuccessCode.PASS if check.ok else ErrorCode.CHRONICLE_INVALID,
            details,
            lambda: say(
                f"chronicle OK: {check.records} record(s)"
                if check.ok
                else f"chronicle INVALID at line {check.bad_line}: {check.reason}"
            ),
        )


def _record_line(rec: dict[str, Any]) -> str:
    """One record as a line. Its fields are whatever anyone who could commit wrote there (the
    chain vouches for order, not for shape): a field of another type shows as text."""

    def text(value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    data = rec.get("data")
    fields = data if isinstance(data, dict) else {}
    summary = ", ".join(
        f"{k}={text(v)}" for k, v in sorted(fields.items()) if not isinstance(v, dict | list)
    )
    if data is not None and not isinstance(data, dict):
        summary = f"data={text(data)}"
    seq, when, kind = (text(rec.get(k, "?")) for k in ("seq", "time", "kind"))
    return f"{seq:>5}  {when[:19]}  {kind:<8} {summary}"


@chronicle_app.command("show")
def chronicle_show(repo: RepoOpt = None, json_mode: JsonOpt = False) -> None:
    """List the chronicle's records."""
    from catalytic_hooks.provenance.chronicle import read

    with handled(json_mode):
        r = open_repo(repo)
        records = read(r.top / load_policy(r.top).chronicle)
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, {"records": records}))
            return
        for rec in records:
            say(_record_line(rec))
