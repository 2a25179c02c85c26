"""`run`, `keygen`, `trust`, `sign`, `verify`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.hot_options import RUN, RUN_REST_HELP
from catalytic_hooks.cli.options import JsonOpt, RepoOpt, TrustFileOpt, typer_command
from catalytic_hooks.cli.output import emit_json, envelope, handled, result, say
from catalytic_hooks.cli.registry_cmd import InsecureOpt, RegistryConfigOpt
from catalytic_hooks.cli.run_impl import RunArgs, run_run
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.policy import load_policy

KeyOpt = Annotated[
    Path,
    typer.Option(
        "--key", help="Ed25519 private key (from `catalytic keygen`, or an OpenSSH ed25519 key)."
    ),
]


run = typer_command(
    RUN,
    RunArgs,
    run_run,
    "Run COMMAND as a catalytic operation and record it as a run bundle.",
    rest=RUN_REST_HELP,
)


def keygen(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Private key path (default: $XDG_CONFIG_HOME/catalytic/validator_ed25519).",
        ),
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Create an Ed25519 key pair (private key mode 0600, never printed)."""
    from catalytic_hooks.bundle.keys import default_key_path
    from catalytic_hooks.bundle.keys import keygen as make

    with handled(json_mode):
        path = (out or default_key_path()).expanduser()
        s = make(path)
        details = {
            "private_key": str(path),
            "public_key_file": str(path) + ".pub",
            "public_key": s.public_hex,
            "validator_id": s.validator_id,
        }
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, details))
        else:
            say(f"private key:  {path} (mode 0600; keep it secret)")
            say(f"public key:   {path}.pub")
            say(f"validator id: {s.validator_id}")
            say(f"trust it in a repository with: catalytic trust add NAME {path}.pub")


def sign(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.")],
    key: KeyOpt,
    force: Annotated[bool, typer.Option("--force", help="Re-sign a signed bundle.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Sign a run directory: VALIDATOR_IDENTITY, SIGNED_PAYLOAD, SIGNATURE."""
    from catalytic_hooks.bundle.keys import load_signer
    from catalytic_hooks.bundle.sign import sign_and_record

    with handled(json_mode):
        info = sign_and_record(run_dir.resolve(), load_signer(key), force=force)
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, info))
        else:
            say(f"signed {run_dir}: bundle_root {info['bundle_root']}")
            say(f"validator id {info['validator_id']}")


def verify(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories, or archive files.")],
    chain: Annotated[
        bool, typer.Option("--chain", help="Verify them as one chain, in order.")
    ] = False,
    project_root: Annotated[
        Path | None,
        typer.Option(
            "--project-root",
            help="Where outputs live (default: the repository containing the run directory).",
        ),
    ] = None,
    allow_untrusted: Annotated[
        bool,
        typer.Option("--allow-untrusted", help="Exit 0 for a valid bundle whatever its signer."),
    ] = False,
    trust_file: TrustFileOpt = None,
    attestation: Annotated[
        Path | None,
        typer.Option(
            "--attestation", help="Also verify this in-toto attestation (DSSE envelope) of the run."
        ),
    ] = None,
    attested: Annotated[
        bool,
        typer.Option(
            "--attested",
            help="For oci:// references: also fetch the attestations attached to each archive "
            "in the registry (OCI referrers API, else the sha256-<hex> fallback tag) and require "
            "one that verifies with your trust.",
        ),
    ] = False,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Verify run bundles (SPECTRUM-05), single or as a chain, and report trust; archive
    files and oci:// references too."""
    from catalytic_hooks.cli.registry_cmd import oci_text, options, resolved

    with handled(json_mode):
        if attested and (attestation is not None or any(oci_text(d) is None for d in run_dirs)):
            raise CatalyticError(
                ErrorCode.USAGE,
                "--attested takes oci:// references only (for a file or run directory, give "
                "--attestation FILE)",
            )
        with resolved(run_dirs, options(registry_config, insecure), attestations=attested) as (
            local,
            pulled,
        ):
            _verify(
                local,
                pulled,
                chain,
                project_root,
                allow_untrusted,
                trust_file,
                attestation,
                json_mode,
            )


def _verify(
    run_dirs: list[Path],
    pulled: list[dict[str, Any]],
    chain: bool,
    project_root: Path | None,
    allow_untrusted: bool,
    trust_file: Path | None,
    attestation: Path | None,
    json_mode: bool,
) -> None:
    from catalytic_hooks.bundle.report import verify_report
    from catalytic_hooks.bundle.trust import caller_anchor, trust_policy

    if chain and attestation is not None:
        # The attestation check answers for each run on its own and ends the command: with a
        # chain it would stand in for the chain's verdict (a duplicated link passed).
        raise CatalyticError(
            ErrorCode.USAGE,
            "--attestation checks runs one by one, --chain checks them as a chain: verify the "
            "chain and the attestation in two calls",
        )
    trust = trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted)
    archives = [d for d in run_dirs if d.is_file()]
    if archives and attestation is not None:
        _verify_attestation(attestation, run_dirs, project_root, trust, json_mode)
    # --attested: the attached attestations complete each archive's verdict before the
    # chronicle records it (a failed attestation is never recorded as a passing verify).
    judge: Callable[[dict[str, Any]], None] | None = None
    if pulled and any("attached" in p for p in pulled):

        def attested(rep: dict[str, Any]) -> None:
            _verify_attached(rep, pulled, trust)

        judge = attested

    if archives:
        report = _verify_archives(run_dirs, archives, chain, trust, judge)
    else:
        if attestation is not None:
            _verify_attestation(attestation, run_dirs, project_root, trust, json_mode)
        report = verify_report(run_dirs, chain=chain, project_root=project_root, trust=trust)
    if pulled:
        from catalytic_hooks.cli.registry_cmd import name_pulled

        name_pulled(report["results"], pulled)
        report["pulled"] = pulled

    def human() -> None:
        for r in report["results"]:
            if r["valid"]:
                trust = "trusted" if r["trusted"] else "UNTRUSTED"
                say(
                    f"{r['run_dir']}: valid, {trust} ({r['trust']}); bundle_root "
                    f"{r['bundle_root']}; proof covered: {r['proof_covered']}"
                )
            else:
                say(f"{r['run_dir']}: REJECTED {r['code']}: {r['message']}")
            for a in r.get("attestations", ()):
                if a["valid"]:
                    who = "trusted" if a["trusted"] else "UNTRUSTED"
                    say(
                        f"  attestation {a['digest']} ({a['via']}): valid, by "
                        f"{a['keyid'][:16]}… ({who}), {a['subjects']} subject(s)"
                    )
                else:
                    say(
                        f"  attestation {a['digest']} ({a['via']}): "
                        f"REJECTED {a['code']}: {a['message']}"
                    )
            _say_attestations_end(r, report["code"])
        if report.get("chain_root"):
            say(f"chain_root {report['chain_root']}")

    result(json_mode, report["ok"], report["code"], report, human)


def _say_attestations_end(r: dict[str, Any], code: str) -> None:
    if "attestations" not in r:
        return
    rows, unchecked = r["attestations"], r.get("attestations_unchecked", 0)
    if not rows:
        say("  no attestation is attached to this archive in the registry")
    if any(a["valid"] for a in rows):
        if unchecked:
            say(f"  {unchecked} more attached, not fetched: one verifies")
    elif r.get("attestations_reason") == "REFERRER_LIMIT":
        say(
            f"  REJECTED {code}: none of the {len(rows)} attestations fetched verifies, and "
            f"{unchecked} more attached were not fetched (REFERRER_LIMIT, the limit on work)"
        )
    elif r["valid"]:
        say(f"  REJECTED {code}: no attestation attached to it verifies")


def _verify_attached(
    report: dict[str, Any], pulled: list[dict[str, Any]], trust: TrustPolicy
) -> None:
    """`--attested`: each pulled archive's row gains the attestations attached to it in the
    registry that were judged, in the order listed, up to the first that verifies with the
    caller's trust; a refused one is a row, never the end of the search. The verdict fails
    unless every archive that verified has one that verifies: ATTESTATION_MISSING when none is
    attached, or (reason REFERRER_LIMIT) when the limit on referrers fetched ended the search,
    else the first refusal's code."""
    from catalytic_hooks.cli.context import caller_limits
    from catalytic_hooks.registry.pull import verify_attached

    by_path = {r.get("archive"): r for r in report["results"]}
    for p in pulled:
        found = p.pop("attached")
        rows = verify_attached(Path(p["path"]), found, trust, caller_limits())
        row = by_path.get(p["path"])
        if row is None:  # no row to carry the requirement: fail closed
            report["ok"] = False
            report["code"] = ErrorCode.ATTESTATION_MISSING.value
            continue
        row["attestations"] = rows
        if found.unchecked:
            row["attestations_unchecked"] = found.unchecked
        if found.malformed:
            row["attestations_malformed"] = found.malformed
        if not report["ok"] or any(a["valid"] for a in rows):
            continue
        report["ok"] = False
        if found.limit_reached:
            report["code"] = ErrorCode.ATTESTATION_MISSING.value
            report["reason"] = row["attestations_reason"] = "REFERRER_LIMIT"
        else:
            report["code"] = rows[0]["code"] if rows else ErrorCode.ATTESTATION_MISSING.value


def _verify_archives(
    run_dirs: list[Path],
    archives: list[Path],
    chain: bool,
    trust: TrustPolicy,
    judge: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    from catalytic_hooks.archive.verify import verify_archive_chain, verify_archives
    from catalytic_hooks.cli.context import caller_limits

    if len(archives) != len(run_dirs):
        raise CatalyticError(
            ErrorCode.USAGE,
            "archive files are verified on their own (not mixed with run directories)",
        )
    if chain:
        return verify_archive_chain(archives, trust=trust, limits=caller_limits(), judge=judge)
    return verify_archives(archives, trust=trust, limits=caller_limits(), judge=judge)


def _verify_attestation(
    path: Path, run_dirs: list[Path], project_root: Path | None, trust: TrustPolicy, json_mode: bool
) -> None:
    from catalytic_hooks.archive.runs import verify_attestations
    from catalytic_hooks.cli.context import caller_limits

    infos = verify_attestations(path, run_dirs, project_root, trust, caller_limits)

    def human() -> None:
        for i in infos:
            say(
                f"{i['run_dir']}: valid in-toto attestation by {i['keyid'][:16]}… "
                f"({'trusted' if i['trusted'] else 'UNTRUSTED'}), {i['subjects']} subject(s)"
            )

    result(json_mode, True, SuccessCode.PASS, {"attestation": str(path), "results": infos}, human)


def attest(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Signed run directories (several: a chain, one envelope per line)."),
    ],
    key: Annotated[Path, typer.Option("--sign", help="The validator's private key.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Where to write (default: RUN_DIR/attestation.intoto.json; required for a chain).",
        ),
    ] = None,
    project_root: Annotated[Path | None, typer.Option("--project-root")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Write in-toto Statements v1 of signed runs in DSSE envelopes."""
    with handled(json_mode):
        from catalytic_hooks.cli.run_impl import write_attestations

        target, n = write_attestations(run_dirs, key, output, project_root)
        result(
            json_mode,
            True,
            SuccessCode.OK,
            {"attestation": str(target), "envelopes": n},
            lambda: say(f"wrote {target} ({n} envelope{'s' if n != 1 else ''})"),
        )


trust_app = typer.Typer(
    help="Manage the repository's trusted validators.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _trust_target(repo: RepoOpt) -> Path:
    from catalytic_hooks.bundle.trust import editable_trust_file

    r = open_repo(repo)
    return editable_trust_file(load_policy(r.top), r.top)


@trust_app.command("add")
def trust_add(
    name: Annotated[str, typer.Argument(help="A name for the validator.")],
    key: Annotated[
        str,
        typer.Argument(
            help="A public key file (.pub), `ed25519:<hex>`, "
            "`ssh-ed25519 <base64>` or `id:<validator id>`."
        ),
    ],
    valid_after: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    valid_before: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Trust a validator (commit the file so the change is reviewed)."""
    from catalytic_hooks.bundle.trust import trust_validator

    with handled(json_mode):
        path = _trust_target(repo)
        v = trust_validator(path, name, key, valid_after, valid_before)
        details = {"file": str(path), "name": name, "validator_id": v.validator_id}
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, details))
        else:
            say(f"trusted {name} ({v.validator_id}) in {path}")


@trust_app.command("list")
def trust_list(repo: RepoOpt = None, json_mode: JsonOpt = False) -> None:
    """List trusted validators."""
    from catalytic_hooks.bundle.trust import load_trust

    with handled(json_mode):
        r = open_repo(repo)
        ts = load_trust(load_policy(r.top), r.top)
        rows = [
            {"name": v.name, "validator_id": v.validator_id, "line": v.line()}
            for v in ts.validators
        ]
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, {"source": ts.source, "validators": rows}))
        else:
            for row in rows:
                say(f"{row['name']}\t{row['validator_id']}\t{row['line']}")


@trust_app.command("remove")
def trust_remove(
    name_or_id: Annotated[str, typer.Argument(help="Name or validator id.")],
    repo: RepoOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Stop trusting a validator."""
    from catalytic_hooks.bundle.trust import untrust

    with handled(json_mode):
        path = _trust_target(repo)
        n = untrust(path, name_or_id)
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, {"removed": n, "file": str(path)}))
        else:
            say(f"removed {n} entr{'y' if n == 1 else 'ies'} from {path}")


@trust_app.command("migrate")
def trust_migrate(repo: RepoOpt = None, json_mode: JsonOpt = False) -> None:
    """Rewrite the trusted-validators file in OpenSSH's allowed_signers syntax (commit it)."""
    from catalytic_hooks.bundle.trust import migrate_file

    with handled(json_mode):
        path = _trust_target(repo)
        changed = migrate_file(path)
        details = {"file": str(path), "changed": changed}
        if json_mode:
            emit_json(envelope(True, SuccessCode.OK, details))
        else:
            say(f"{'rewrote' if changed else 'already in allowed_signers syntax:'} {path}")
