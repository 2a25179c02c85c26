"""`digest`, `purity-scan`, `restore-proof`: the seed-compatible receipt commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.context import repo_and_policy, split_roots
from catalytic_hooks.cli.hot_options import DIGEST
from catalytic_hooks.cli.options import JsonOpt, ListOpt, RepoOpt, typer_command
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.cli.receipts_impl import (
    DigestArgs,
    config_snapshot,
    on_error,
    run_digest,
    write_receipt,
)
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.receipts import (
    load_digest_receipt,
    load_purity_receipt,
    purity_scan,
    restore_proof,
)
from catalytic_hooks.git.views import tmp_residue_on_disk

OutputOpt = Annotated[
    Path | None,
    typer.Option("--output", help="Write the receipt (canonical JSON, atomically) to this file."),
]
ErrorReceiptOpt = Annotated[
    Path | None,
    typer.Option(
        "--error-receipt",
        help="Write an error receipt here when the computation cannot complete (none by default).",
    ),
]


digest = typer_command(
    DIGEST,
    DigestArgs,
    run_digest,
    "Compute a tree digest receipt (PRE_DIGEST / POST_DIGEST format).",
)


def _receipt_bytes(path: Path) -> bytes:
    """A receipt named on the command line, often a bundle's: read through the safe reader (a
    FIFO, a device or a link there is refused unread, and it is size-capped)."""
    from catalytic_hooks.fs.untrusted import read_named

    try:
        return read_named(path)
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.IO_ERROR, f"cannot read the receipt: {exc}", path=str(path)
        ) from exc


def purity_scan_cmd(
    pre: Annotated[Path, typer.Argument(help="PRE_DIGEST.json")],
    post: Annotated[Path, typer.Argument(help="POST_DIGEST.json")],
    exclusions: ListOpt = None,
    durable_roots: ListOpt = None,
    tmp_roots: ListOpt = None,
    repo: RepoOpt = None,
    output: OutputOpt = None,
    error_receipt_path: ErrorReceiptOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Compare two digests and scan the tmp roots for residue (PURITY_SCAN format)."""
    config = config_snapshot(
        {"pre": pre, "post": post, "tmp_roots": split_roots(tmp_roots), "repo": repo}
    )
    with handled(json_mode, lambda e: on_error("purity_scan", error_receipt_path, config, e)):
        _, root, policy = repo_and_policy(repo, exclusions, durable_roots, tmp_roots)
        pre_doc = load_digest_receipt(_receipt_bytes(pre), str(pre))
        post_doc = load_digest_receipt(_receipt_bytes(post), str(post))
        scan = purity_scan(pre_doc, post_doc, tmp_residue_on_disk(root, policy.tmp_roots))
        write_receipt(output, scan)
        ok = scan["verdict"] == SuccessCode.PASS
        result(json_mode, ok, scan["verdict"], scan, lambda: _human_scan(scan))


def _human_scan(scan: dict[str, Any]) -> None:
    say(f"purity scan: {scan['verdict']}")
    for p in scan["violations"]:
        say(f"  {p}: changed outside durable roots")
    for p in scan["tmp_residue"]:
        say(f"  {p}: tmp residue")


def restore_proof_cmd(
    pre: Annotated[Path, typer.Argument(help="PRE_DIGEST.json")],
    post: Annotated[Path, typer.Argument(help="POST_DIGEST.json")],
    purity: Annotated[Path, typer.Argument(help="PURITY_SCAN.json")],
    exclusions: ListOpt = None,
    durable_roots: ListOpt = None,
    tmp_roots: ListOpt = None,
    repo: RepoOpt = None,
    output: OutputOpt = None,
    error_receipt_path: ErrorReceiptOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Decide PASS/FAIL from PRE, POST and the purity scan (RESTORE_PROOF format)."""
    config = config_snapshot({"pre": pre, "post": post, "purity": purity, "repo": repo})
    with handled(json_mode, lambda e: on_error("restore_proof", error_receipt_path, config, e)):
        _, _, policy = repo_and_policy(repo, exclusions, durable_roots, tmp_roots)
        proof = restore_proof(
            load_digest_receipt(_receipt_bytes(pre), str(pre)),
            load_digest_receipt(_receipt_bytes(post), str(post)),
            load_purity_receipt(_receipt_bytes(purity), str(purity)),
            policy,
        )
        write_receipt(output, proof)
        ok = proof["verdict"] == SuccessCode.PASS
        result(json_mode, ok, proof["verdict"], proof, lambda: _human_proof(proof))


def _human_proof(proof: dict[str, Any]) -> None:
    say(f"restore proof: {proof['verdict']}")
    for kind, paths in proof.get("diff_summary", {}).items():
        for p in paths:
            say(f"  {p}: {kind}")


__all__ = ["digest", "purity_scan_cmd", "restore_proof_cmd"]
