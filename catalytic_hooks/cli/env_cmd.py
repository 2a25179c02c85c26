"""`env` (the environment a command here would run in, or its differences from a run's),
`env rebuild`, `env export`, `env prune`; and the rebuild options `replay` shares."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from catalytic_hooks.cli.options import JsonOpt, RepoOpt, TrustFileOpt
from catalytic_hooks.cli.output import emit_json, envelope, handled, result, say
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode

if TYPE_CHECKING:
    from catalytic_hooks.core.policy import Policy
    from catalytic_hooks.environment.build import RebuildOptions

env_app = typer.Typer(
    help="The environment a run records: show, compare, rebuild, export.",
    invoke_without_command=True,
    pretty_exceptions_show_locals=False,
)

OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Use only the wheelhouses (env_find_links, --find-links); no index is asked.",
    ),
]
IndexOpt = Annotated[
    str | None,
    typer.Option(
        "--index",
        help="Primary index (PEP 503 simple "
        "URL); default: the policy's env_index, else https://pypi.org/simple.",
    ),
]
FallbackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fallback-index",
        help="A fallback "
        "index, asked in order after the primary (repeatable; replaces the "
        "policy's env_fallback_indexes).",
    ),
]
FindLinksOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--find-links",
        help="A local "
        "wheelhouse directory, asked first (repeatable; added to the policy's "
        "env_find_links).",
    ),
]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        "--python",
        help="The interpreter to build with (default: searched for the recorded version).",
    ),
]
InstallerOpt = Annotated[
    str | None, typer.Option("--installer", help="uv or pip (default: uv when installed).")
]
AllowUnhashedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unhashed",
        help="Install pins the run recorded no hash for, unchecked, from the first source that "
        "has them (default: refused, ENV_UNHASHED).",
    ),
]
PYPI = "https://pypi.org/simple"


def rebuild_options(
    top: Path,
    policy: Policy,
    *,
    offline: bool,
    index: str | None,
    fallbacks: list[str] | None,
    find_links: list[str] | None,
    python: str | None,
    installer: str | None,
    allow_unhashed: bool = False,
) -> RebuildOptions:
    """The sources of a rebuild: the command line over the policy. Policy paths are relative
    to the repository; command-line ones to the current directory."""
    from catalytic_hooks.environment.build import RebuildOptions

    for value in (index, *(fallbacks or []), *(find_links or []), python or "x"):
        if value is not None and (not value or value.startswith("-")):
            raise CatalyticError(ErrorCode.USAGE, f"{value!r} is not a usable location")
    links = [
        str(p if Path(p).is_absolute() or "://" in p else top / p) for p in policy.env_find_links
    ]
    links += [str(Path(p).absolute()) if "://" not in p else p for p in find_links or []]
    return RebuildOptions(
        offline=offline,
        index=index or policy.env_index or PYPI,
        fallbacks=list(fallbacks) if fallbacks is not None else list(policy.env_fallback_indexes),
        find_links=links,
        python=python or None,
        installer=installer,
        allow_unhashed=allow_unhashed,
    )


def run_environment(
    run: Path, trust_file: Path | None, allow_untrusted: bool, need_trust: bool
) -> tuple[Any, str, bool, Any]:
    """environment/recorded.py's `verified_environment`, within the caller's archive limits."""
    from catalytic_hooks.cli.context import caller_limits
    from catalytic_hooks.environment.recorded import verified_environment

    return verified_environment(run, trust_file, allow_untrusted, need_trust, caller_limits())


def _build_checkout(repo: Path | None, commit: Any, builds: tuple[Any, ...]) -> Path:
    """Where editable and directory installs are built from: the run's repository, checked out
    at the run's commit, the directories built from unchanged. The working directory is never
    taken as that checkout: a build runs the code it finds there (setup.py, a build backend),
    which then would be code the run never recorded."""
    from catalytic_hooks.git.repo import Repo

    names = ", ".join(p.name for p in builds)
    r = Repo.find(None if repo is None else repo.resolve())
    head = r.head() if r is not None else None
    if r is None or not isinstance(commit, str) or head != commit:
        where = "this is no git repository" if r is None else f"this checkout is at {head}"
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            f"{names} were installed from the run's repository and are built from its recorded "
            f"commit {commit}, and {where}: check that commit out in the run's repository and "
            "run this there, or replay with --rebuild-env (it builds from a private checkout)",
            reason="CHECKOUT",
            commit=commit,
            head=head,
        )
    paths = sorted({p.repo_path or "." for p in builds})
    if r.has_changes_under(paths):
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            f"{', '.join(paths)} has changes not in the run's commit {commit} (git status): "
            f"{names} would be built from them",
            reason="CHECKOUT",
            commit=commit,
        )
    return r.top


def _repo_policy(repo: Path | None) -> tuple[Path, Policy]:
    from catalytic_hooks.core.policy import load_policy
    from catalytic_hooks.git.repo import Repo

    r = Repo.find(None if repo is None else repo.resolve())
    root = r.top if r else Path.cwd()
    return root, load_policy(root)


@env_app.callback()
def env(
    ctx: typer.Context,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="Compare with a run's recorded environment.")
    ] = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Print the environment a command run here would record (and differences from a run's)."""
    if ctx.invoked_subcommand is not None:
        return
    from catalytic_hooks.environment.recorded import compare_with_run, current_environment

    with handled(json_mode):
        root, policy = _repo_policy(repo)
        details: dict[str, Any] = {}
        ok = True
        if compare is None:
            fp = current_environment(root, policy)
        else:
            fp, details["differences"] = compare_with_run(root, policy, compare)
            ok = not details["differences"]
        details["fingerprint"] = fp

        def human() -> None:
            py = fp.get("python") or {}
            say(
                f"python: {py.get('executable')} ({py.get('implementation')} "
                f"{py.get('version')}, {py.get('abi')}, {py.get('platform')}; found by "
                f"{py.get('found_by')})"
                if py
                else "python: none found"
            )
            say(f"environment_hash: {fp['environment_hash']}")
            say(f"pip_freeze_sha256: {fp['pip_freeze_sha256']}")
            say(f"distributions: {len(fp['distributions'])}")
            sysm = fp["system"]
            say(
                f"system: {sysm['distribution'] or sysm['os']} {sysm['os_release']}, "
                f"{sysm['machine']}, {sysm['libc']}, {sysm['cpu_model']}"
                + (
                    f", GPU {', '.join(sysm['gpus'])} (driver {sysm['gpu_driver']}, CUDA "
                    f"{sysm['cuda_version']})"
                    if sysm["gpus"]
                    else ""
                )
            )
            for d in details.get("differences", []):
                say(f"differs: {d['field']}: recorded {d['recorded']} now {d['current']}")

        result(json_mode, ok, SuccessCode.PASS if ok else ErrorCode.ENV_MISMATCH, details, human)


@env_app.command("rebuild")
def rebuild_cmd(
    run: Annotated[Path, typer.Argument(help="The run directory, or an archive file.")],
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="A new directory for the "
            "environment (default: the cache, $XDG_CACHE_HOME/catalytic/envs).",
        ),
    ] = None,
    offline: OfflineOpt = False,
    index: IndexOpt = None,
    fallback_index: FallbackOpt = None,
    find_links: FindLinksOpt = None,
    python: PythonOpt = None,
    installer: InstallerOpt = None,
    allow_unhashed: AllowUnhashedOpt = False,
    allow_untrusted: Annotated[bool, typer.Option("--allow-untrusted")] = False,
    trust_file: TrustFileOpt = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Rebuild a run's recorded environment: exactly its pins, hash-checked, in a new venv."""
    from dataclasses import replace

    from catalytic_hooks.environment.build import rebuild

    with handled(json_mode):
        from catalytic_hooks.environment.pins import plan_of

        root, policy = _repo_policy(repo)
        environment, _, _, commit = run_environment(run, trust_file, allow_untrusted, True)
        builds = plan_of(environment).builds
        if into is None and builds:
            raise CatalyticError(
                ErrorCode.USAGE,
                "this environment installs packages from the "
                "repository (editable or directory installs), which the cache "
                "does not keep; give --into DIR",
            )
        checkout = _build_checkout(repo, commit, builds) if builds else None
        opts = rebuild_options(
            root,
            policy,
            offline=offline,
            index=index,
            fallbacks=fallback_index,
            find_links=find_links,
            python=python,
            installer=installer,
            allow_unhashed=allow_unhashed,
        )
        done = rebuild(environment, replace(opts, into=into, checkout=checkout))
        done.release()
        details = {**done.report, "venv": str(done.venv), "cached": done.cached}

        def human() -> None:
            for p in done.report["packages"]:
                say(f"  {p['name']}=={p['version']}  {p['source']}  {p['file']}  {p['sha256']}")
            for e in done.report["events"]:
                say(f"  {e['package']}: {e['source']} {e['event']}")
            say(
                f"environment {done.report['environment_hash']} "
                f"{'reused from the cache' if done.cached else 'rebuilt'}: {done.venv}"
            )

        result(json_mode, True, SuccessCode.OK, details, human)


@env_app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="The run directory, or an archive file.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="requirements (hashed; pip and uv install it) or pylock (PEP 751)."
        ),
    ] = "requirements",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write here instead of stdout.")
    ] = None,
    offline: OfflineOpt = False,
    index: IndexOpt = None,
    fallback_index: FallbackOpt = None,
    find_links: FindLinksOpt = None,
    trust_file: TrustFileOpt = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Write a run's recorded environment as a lock file other tools install. For pylock, the
    rebuild's sources (--find-links, --index, ...) say where each recorded wheel is."""
    from catalytic_hooks.environment.export import FORMATS, export
    from catalytic_hooks.environment.sources import make_sources
    from catalytic_hooks.fs.files import atomic_write

    with handled(json_mode):
        if fmt not in FORMATS:
            raise CatalyticError(ErrorCode.USAGE, f"--format must be one of {', '.join(FORMATS)}")
        environment, run_id, trusted, _ = run_environment(run, trust_file, True, False)
        sources = None
        if fmt == "pylock":
            root, policy = _repo_policy(repo)
            opts = rebuild_options(
                root,
                policy,
                offline=offline,
                index=index,
                fallbacks=fallback_index,
                find_links=find_links,
                python=None,
                installer=None,
            )
            sources = make_sources(opts.find_links, opts.index, opts.fallbacks, opts.offline)
        text, unhashed = export(environment, fmt, run_id, sources)
        if output is not None:
            atomic_write(output, text.encode())
        details = {
            "format": fmt,
            "output": None if output is None else str(output),
            "trusted": trusted,
            "unhashed": unhashed,
            **({"text": text} if output is None else {}),
        }
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, details))
        elif output is None:
            typer.echo(text, nl=False)
        else:
            say(f"wrote {output}")


@env_app.command("prune")
def prune_cmd(json_mode: JsonOpt = False) -> None:
    """Remove the cached rebuilt environments not in use."""
    from catalytic_hooks.environment.cache import prune

    with handled(json_mode):
        details = prune()
        result(
            json_mode,
            True,
            SuccessCode.OK,
            details,
            lambda: say(
                f"removed {len(details['removed'])} environment(s) from "
                f"{details['cache']}"
                + (f"; {len(details['in_use'])} in use, kept" if details["in_use"] else "")
                + (
                    f"; left alone, not made by this cache: {', '.join(details['ignored'])}"
                    if details["ignored"]
                    else ""
                )
            ),
        )
