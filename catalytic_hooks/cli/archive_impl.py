"""`archive create`, `archive pull` and `archive push`, without Typer: each is reached both
from its Typer command (archive_cmd.py, registry_cmd.py) and from the start-up fast path
(fastpath.py), since Typer's start is a second on its own, archiving and pushing are often
scripted over many runs (CI pushes every run), and a transfer's start counts against its
throughput."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.outcomes import SuccessCode


@dataclass
class ArchiveCreateArgs:
    """The options of `catalytic archive create`, whichever parser read them."""

    run_dir: Path | None = None
    output: Path | None = None
    history: bool = False
    project_root: Path | None = None
    json_mode: bool = False


def run_archive_create(args: ArchiveCreateArgs) -> None:
    """Write one deterministic archive of a run; ends with CommandExit."""
    from catalytic_hooks.archive.create import create_archive, default_output

    assert args.run_dir is not None  # required by both parsers
    run_dir, output, json_mode = args.run_dir, args.output, args.json_mode
    with handled(json_mode):
        if output is None:
            # only here: the policy's parser is a fifth of the command's imports
            from catalytic_hooks.core.policy import load_policy
            from catalytic_hooks.git.repo import Repo

            repo = Repo.find(run_dir.resolve().parent if run_dir.is_dir() else None)
            base = repo.top / load_policy(repo.top).archive_dir if repo else Path.cwd()
            output = default_output(run_dir.resolve().name, base)
        info = create_archive(run_dir, output, history=args.history, project_root=args.project_root)
        result(
            json_mode,
            True,
            SuccessCode.OK,
            info,
            lambda: say(
                f"archived {info['run_id']} to {info['archive']} ({info['size']} bytes, "
                f"{info['entries']} entries, {info['git_objects']} git objects)"
            ),
        )


@dataclass
class ArchivePullArgs:
    """The options of `catalytic archive pull`, whichever parser read them."""

    reference: str = ""
    output: Path | None = None
    no_attestations: bool = False
    registry_config: Path | None = None
    insecure: bool = False
    json_mode: bool = False


def run_archive_pull(args: ArchivePullArgs) -> None:
    """Pull a run's archive through the verified cache, and its attestations beside it; ends
    with CommandExit."""
    from catalytic_hooks.registry.pull import Options, pull

    with handled(args.json_mode):
        info = pull(
            args.reference,
            Options(config=args.registry_config, insecure=args.insecure),
            args.output,
            attestations=not args.no_attestations,
        )

        def human() -> None:
            say(f"pulled {info['reference']} to {info['archive_file']}")
            for a in info["attestations"]:
                say(f"  attestation {a['file']}")
            skipped = info.get("referrers_skipped", [])
            if skipped:
                say(
                    f"  {len(skipped)} attached referrer(s) refused and skipped "
                    f"({', '.join(sorted({s['code'] for s in skipped}))}; --json says why)"
                )
            if info.get("referrers_unchecked"):
                say(f"  {info['referrers_unchecked']} more attached, not fetched (the limit)")

        result(args.json_mode, True, SuccessCode.OK, info, human)


@dataclass
class ArchivePushArgs:
    """The options of `catalytic archive push`, whichever parser read them."""

    source: Path | None = None
    target: str = ""
    attestation: Path | None = None
    no_attestation: bool = False
    chunk_size: int | None = None  # MiB
    registry_config: Path | None = None
    insecure: bool = False
    json_mode: bool = False


def run_archive_push(args: ArchivePushArgs) -> None:
    """Push a run's archive, and its attestation as a referrer; ends with CommandExit."""
    from catalytic_hooks.cli.context import caller_limits
    from catalytic_hooks.registry.pull import Options
    from catalytic_hooks.registry.push import push
    from catalytic_hooks.registry.reference import parse

    assert args.source is not None  # required by both parsers
    with handled(args.json_mode):
        ref = parse(args.target)
        client = Options(config=args.registry_config, insecure=args.insecure).client(ref)
        if args.chunk_size is not None:
            client.chunk_size = args.chunk_size * 1024 * 1024
        try:
            info = push(
                args.source,
                ref,
                client,
                limits=caller_limits(),
                attestation=args.attestation,
                with_attestation=not args.no_attestation,
            )
        finally:
            client.close()

        def human() -> None:
            say(info["reference"])
            say(
                f"  tagged {info['tagged']}; {info['blobs_uploaded']} blob(s) uploaded, "
                f"{info['blobs_skipped']} already there"
            )
            if info["attestation"]:
                say(f"  attestation {info['attestation']['digest']} ({info['attestation']['via']})")

        result(args.json_mode, True, SuccessCode.OK, info, human)
