"""`archive create|list|show|import`, and the helpers the other commands use to take an archive
file wherever they take a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalytic_hooks.bundle.trust import caller_anchor, trust_policy
from catalytic_hooks.cli.archive_impl import ArchiveCreateArgs, run_archive_create
from catalytic_hooks.cli.context import caller, caller_limits, open_repo
from catalytic_hooks.cli.hot_options import ARCHIVE_CREATE, ARCHIVE_CREATE_ARGS
from catalytic_hooks.cli.options import JsonOpt, TrustFileOpt, typer_command
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.policy import load_policy

archive_app = typer.Typer(
    help="Portable run archives: one file that verifies, restores and replays anywhere.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


archive_app.command("create")(
    typer_command(
        ARCHIVE_CREATE,
        ArchiveCreateArgs,
        run_archive_create,
        "Write one deterministic archive of a run: bundle, outputs, commit objects, BagIt and "
        "RO-Crate metadata.",
        positional=ARCHIVE_CREATE_ARGS,
    )
)


@archive_app.command("show")
def show_cmd(
    archive: Annotated[Path, typer.Argument(help="The archive file.")],
    json_mode: JsonOpt = False,
) -> None:
    """Print an archive's manifest without unpacking it (every structural and hash check
    runs)."""
    from catalytic_hooks.archive.store import show

    with handled(json_mode):
        doc = show(archive, caller_limits())

        def human() -> None:
            m = doc["manifest"]
            say(
                f"{archive}: run {m['run_id']}, commit {m['commit']} ({m['object_format']}), "
                f"history {'yes' if m['history'] else 'no'}"
            )
            say(f"  sha256 {doc['sha256']}, {doc['size']} bytes, {len(m['entries'])} entries")
            say(f"  bundle root {m['bundle_root']}, signed by validator {m['validator_id']}")
            for e in m["entries"]:
                say(f"  {e['size']:>12}  {e['sha256'][:16]}…  {e['name']}")

        result(json_mode, True, SuccessCode.OK, doc, human)


@archive_app.command("list")
def list_cmd(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="The store (default: the repository's archive_dir, else the current directory)."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Verify every archive in full (every byte hashed, the signature checked "
            "against your trust file); without it the listing shows what each ARCHIVE.json "
            "claims, structurally checked but not verified.",
        ),
    ] = False,
    trust_file: TrustFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """List a store's archives: run id, commit, signer, size; with --verify, hash and whether
    each verifies."""
    from catalytic_hooks.archive.store import list_store

    with handled(json_mode):
        here = caller()
        if directory is None:
            directory = here[0] / here[1].archive_dir if here else Path.cwd()
        doc = list_store(
            directory,
            trust=trust_policy(caller_anchor(trust_file), allow_untrusted=False)
            if verify
            else None,
            limits=caller_limits(),
            verify=verify,
        )

        def human() -> None:
            for r in doc["archives"]:
                if r["valid"] is None:
                    say(
                        f"{r['archive']}: {r['run_id']} commit {(r['commit'] or '-')[:12]} "
                        f"signer {(r['signer'] or '-')[:16]}… {r['size']} bytes, as its "
                        "ARCHIVE.json claims (not verified: --verify)"
                    )
                elif r["valid"]:
                    say(
                        f"{r['archive']}: {r['run_id']} commit {(r['commit'] or '-')[:12]} "
                        f"signer {r['signer'][:16]}… {r['size']} bytes sha256 "
                        f"{r['sha256'][:16]}… {'verified' if r['verified'] else 'UNTRUSTED'}"
                    )
                else:
                    say(f"{r['archive']}: NOT VERIFIED {r['code']}: {r.get('message')}")
            if not doc["archives"]:
                say(f"no archive in {doc['store']}")

        result(json_mode, True, SuccessCode.OK, doc, human)


@archive_app.command("import")
def import_cmd(
    archive: Annotated[Path, typer.Argument(help="The archive file.")],
    allow_untrusted: Annotated[bool, typer.Option("--allow-untrusted")] = False,
    trust_file: TrustFileOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Verify an archive, add its commit's objects to this repository and place the run under
    the first run root."""
    from catalytic_hooks.archive.read import limits_for
    from catalytic_hooks.archive.store import import_archive

    with handled(json_mode):
        repo = open_repo(None)
        policy = load_policy(repo.top)
        info = import_archive(
            archive,
            repo,
            policy,
            limits=limits_for(policy),
            trust=trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted),
        )
        result(
            json_mode,
            True,
            SuccessCode.OK,
            info,
            lambda: say(
                f"imported {info['run_id']} into {info['run_dir']} (commit {info['commit']})"
            ),
        )
