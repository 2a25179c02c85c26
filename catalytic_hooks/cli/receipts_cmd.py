"""`digest`, `purity-scan`, `restore-proof`: the seed-compatible receipt commands."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from ..canonical import canonical_bytes
from ..errors import EXIT_ERROR, CatalyticError, ErrorCode
from ..fsio import atomic_write
from ..hashing import HashCache
from ..policy import Policy
from ..receipts import (
    digest_receipt,
    error_receipt,
    load_digest_receipt,
    load_purity_receipt,
    purity_scan,
    restore_proof,
)
from ..views import View, dir_view, rev_view, tmp_residue_on_disk
from .common import JsonOpt, ListOpt, RepoOpt, repo_and_policy, split_roots
from .output import handled, result, say

OutputOpt = Annotated[Path | None, typer.Option("--output", help="Write the receipt (canonical "
                                                "JSON, atomically) to this file.")]
ErrorReceiptOpt = Annotated[Path, typer.Option("--error-receipt", help="Where an error receipt "
                                               "goes when the computation cannot complete.")]


def _config_snapshot(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items() if v is not None}


def _fail_closed(operation: str, error_path: Path, config: dict[str, Any], exc: CatalyticError
                 ) -> None:
    receipt = error_receipt(exc.code, operation, exc, config)
    # If even the error receipt cannot be written, the error itself is still reported.
    with contextlib.suppress(CatalyticError):
        atomic_write(error_path.resolve(), canonical_bytes(receipt))


def _write(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        atomic_write(path.resolve(), canonical_bytes(doc))


def digest(
    rev: Annotated[str | None, typer.Option(help="Digest this revision's tree.")] = None,
    index: Annotated[bool, typer.Option("--index", help="Digest the index.")] = False,
    worktree: Annotated[bool, typer.Option("--worktree", help="Digest the working tree.")] = False,
    dir: Annotated[Path | None, typer.Option("--dir", help="Digest a plain directory.")] = None,
    ignored: Annotated[bool, typer.Option("--ignored", help="Working tree: add ignored files."
                                          )] = False,
    exclusions: ListOpt = None,
    durable_roots: ListOpt = None,
    tmp_roots: ListOpt = None,
    repo: RepoOpt = None,
    output: OutputOpt = None,
    pre: Annotated[Path | None, typer.Option("--pre", "--pre-digest", help="Seed alias of "
                                             "--output for a PRE_DIGEST.")] = None,
    post: Annotated[Path | None, typer.Option("--post", "--post-digest", help="Seed alias of "
                                              "--output for a POST_DIGEST.")] = None,
    error_receipt_path: ErrorReceiptOpt = Path("ERROR_RECEIPT.json"),
    json_mode: JsonOpt = False,
) -> None:
    """Compute a tree digest receipt (PRE_DIGEST / POST_DIGEST format)."""
    config = _config_snapshot({
        "rev": rev, "index": index or None, "worktree": worktree or None, "dir": dir,
        "exclusions": split_roots(exclusions), "durable_roots": split_roots(durable_roots),
        "tmp_roots": split_roots(tmp_roots), "repo": repo,
    })
    with handled(json_mode, lambda e: _on_error("digest", error_receipt_path, config, e)):
        chosen = sum([rev is not None, index, worktree, dir is not None])
        if chosen > 1:
            raise CatalyticError(ErrorCode.USAGE, "choose one of --rev, --index, --worktree, --dir")
        targets = [p for p in (output, pre, post) if p is not None]
        if len(targets) > 1:
            raise CatalyticError(ErrorCode.USAGE, "give one of --output, --pre, --post")
        git, root, policy = repo_and_policy(
            dir.resolve() if dir is not None and repo is None else repo,
            exclusions, durable_roots, tmp_roots,
        )
        view: View | None
        if dir is not None:
            view = dir_view(dir.resolve())
            cache = HashCache(None)
        else:
            if git is None:
                if rev is not None or index or worktree:
                    raise CatalyticError(ErrorCode.NOT_A_REPOSITORY,
                                         f"{root} is not inside a git repository")
                view, cache = dir_view(root), HashCache(None)
            else:
                cache = HashCache.for_repo(git)
                view = rev_view(git, rev) if rev is not None else None
        from ..digest import tree_digest
        from ..fastdigest import index_digest, worktree_digest

        if view is not None:
            td, kind = tree_digest(view, policy, cache), view.kind.value
        elif git is None:
            raise CatalyticError(ErrorCode.INTERNAL, "no view and no repository")
        elif index:
            td, kind = index_digest(git, policy, cache), "index"
        else:
            td, kind = worktree_digest(git, policy, cache, ignored=ignored), "worktree"
        receipt = digest_receipt(td, policy)
        _write(targets[0] if targets else None, receipt)
        result(json_mode, True, "PASS", receipt, lambda: say(
            f"{receipt['digest']}  ({receipt['file_count']} files, {kind} view)"))


def _on_error(operation: str, path: Path, config: dict[str, Any], exc: CatalyticError) -> None:
    if exc.code not in (ErrorCode.USAGE,):
        _fail_closed(operation, path, config, exc)


def purity_scan_cmd(
    pre: Annotated[Path, typer.Argument(help="PRE_DIGEST.json")],
    post: Annotated[Path, typer.Argument(help="POST_DIGEST.json")],
    exclusions: ListOpt = None,
    durable_roots: ListOpt = None,
    tmp_roots: ListOpt = None,
    repo: RepoOpt = None,
    output: OutputOpt = None,
    error_receipt_path: ErrorReceiptOpt = Path("ERROR_RECEIPT.json"),
    json_mode: JsonOpt = False,
) -> None:
    """Compare two digests and scan the tmp roots for residue (PURITY_SCAN format)."""
    config = _config_snapshot({"pre": pre, "post": post, "tmp_roots": split_roots(tmp_roots),
                               "repo": repo})
    with handled(json_mode, lambda e: _on_error("purity_scan", error_receipt_path, config, e)):
        _, root, policy = repo_and_policy(repo, exclusions, durable_roots, tmp_roots)
        pre_doc, post_doc = load_digest_receipt(pre), load_digest_receipt(post)
        scan = purity_scan(pre_doc, post_doc, tmp_residue_on_disk(root, policy.tmp_roots))
        _write(output, scan)
        ok = scan["verdict"] == "PASS"
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
    error_receipt_path: ErrorReceiptOpt = Path("ERROR_RECEIPT.json"),
    json_mode: JsonOpt = False,
) -> None:
    """Decide PASS/FAIL from PRE, POST and the purity scan (RESTORE_PROOF format)."""
    config = _config_snapshot({"pre": pre, "post": post, "purity": purity, "repo": repo})
    with handled(json_mode, lambda e: _on_error("restore_proof", error_receipt_path, config, e)):
        _, _, policy = repo_and_policy(repo, exclusions, durable_roots, tmp_roots)
        proof = restore_proof(load_digest_receipt(pre), load_digest_receipt(post),
                              load_purity_receipt(purity), policy)
        _write(output, proof)
        ok = proof["verdict"] == "PASS"
        result(json_mode, ok, proof["verdict"], proof, lambda: _human_proof(proof))


def _human_proof(proof: dict[str, Any]) -> None:
    say(f"restore proof: {proof['verdict']}")
    for kind, paths in proof.get("diff_summary", {}).items():
        for p in paths:
            say(f"  {p}: {kind}")


__all__ = ["EXIT_ERROR", "Policy", "digest", "purity_scan_cmd", "restore_proof_cmd"]
