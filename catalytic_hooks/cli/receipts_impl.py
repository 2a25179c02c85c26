"""The digest command's implementation and the receipt commands' shared helpers.

No Typer here: `catalytic digest` reaches this both from the Typer command (receipts_cmd.py) and
from the start-up fast path (fastpath.py), so the two can never behave differently.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.cli.context import repo_and_policy, split_roots
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.receipts import digest_receipt, error_receipt
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.views import View, dir_view, rev_view


@dataclass
class DigestArgs:
    """The options of `catalytic digest`, whichever parser read them."""

    rev: str | None = None
    index: bool = False
    worktree: bool = False
    dir: Path | None = None
    ignored: bool = False
    exclusions: list[str] | None = None
    durable_roots: list[str] | None = None
    tmp_roots: list[str] | None = None
    repo: Path | None = None
    output: Path | None = None
    pre: Path | None = None
    post: Path | None = None
    error_receipt_path: Path | None = None  # written only where asked
    json_mode: bool = False
    # `git status` started by the fast path for the current directory's repository (only
    # for --worktree without --repo): the digest's own would be the same command.
    status: Any = None


def config_snapshot(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items() if v is not None}


def _fail_closed(
    operation: str, error_path: Path, config: dict[str, Any], exc: CatalyticError
) -> None:
    receipt = error_receipt(exc.code, operation, exc, config)
    # If even the error receipt cannot be written, the error itself is still reported.
    with contextlib.suppress(CatalyticError):
        atomic_write(error_path.resolve(), canonical_bytes(receipt))


def write_receipt(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        atomic_write(path.resolve(), canonical_bytes(doc))


def on_error(
    operation: str, path: Path | None, config: dict[str, Any], exc: CatalyticError
) -> None:
    if path is not None and exc.code not in (ErrorCode.USAGE,):
        _fail_closed(operation, path, config, exc)


def run_digest(args: DigestArgs) -> None:
    """Compute a tree digest receipt; ends with CommandExit."""
    try:
        _run_digest(args)
    finally:
        if args.status is not None:  # an early `git status` nobody read (an error, say)
            args.status.kill()
            args.status.wait()


def _run_digest(args: DigestArgs) -> None:
    rev, index, worktree, dir, repo = args.rev, args.index, args.worktree, args.dir, args.repo
    exclusions, durable_roots, tmp_roots = args.exclusions, args.durable_roots, args.tmp_roots
    output, pre, post, json_mode = args.output, args.pre, args.post, args.json_mode
    error_receipt_path, ignored = args.error_receipt_path, args.ignored
    config = config_snapshot(
        {
            "rev": rev,
            "index": index or None,
            "worktree": worktree or None,
            "dir": dir,
            "exclusions": split_roots(exclusions),
            "durable_roots": split_roots(durable_roots),
            "tmp_roots": split_roots(tmp_roots),
            "repo": repo,
        }
    )
    with handled(json_mode, lambda e: on_error("digest", error_receipt_path, config, e)):
        chosen = sum([rev is not None, index, worktree, dir is not None])
        if chosen > 1:
            raise CatalyticError(ErrorCode.USAGE, "choose one of --rev, --index, --worktree, --dir")
        targets = [p for p in (output, pre, post) if p is not None]
        if len(targets) > 1:
            raise CatalyticError(ErrorCode.USAGE, "give one of --output, --pre, --post")
        git, root, policy = repo_and_policy(
            dir.resolve() if dir is not None and repo is None else repo,
            exclusions,
            durable_roots,
            tmp_roots,
        )
        view: View | None
        if dir is not None:
            view = dir_view(dir.resolve())
            cache = HashCache(None)
        else:
            if git is None:
                if rev is not None or index or worktree:
                    raise CatalyticError(
                        ErrorCode.NOT_A_REPOSITORY, f"{root} is not inside a git repository"
                    )
                view, cache = dir_view(root), HashCache(None)
            else:
                cache = HashCache.for_repo(git)
                view = rev_view(git, rev) if rev is not None else None
        from catalytic_hooks.git.digests import index_digest, tree_digest, worktree_digest

        if view is not None:
            td, kind = tree_digest(view, policy, cache), view.kind.value
        elif git is None:
            raise CatalyticError(ErrorCode.INTERNAL, "no view and no repository")
        elif index:
            td, kind = index_digest(git, policy, cache), "index"
        else:
            from catalytic_hooks.git.statefiles import refuse_if_pending

            refuse_if_pending(git.git_dir, "a working-tree digest")
            early, args.status = args.status, None
            td, kind = (
                worktree_digest(
                    git, policy, cache, ignored=ignored, status=early if repo is None else None
                ),
                "worktree",
            )
        if (
            git is not None
            and (index or worktree)
            and repo is None
            and not ignored
            and exclusions is None
            and durable_roots is None
            and tmp_roots is None
            and not os.environ.get("GIT_INDEX_FILE")
        ):
            from catalytic_hooks.git.digests import remember_quick

            remember_quick(git)  # what the next plain digest here needs to answer quickly
        receipt = digest_receipt(td, policy)
        write_receipt(targets[0] if targets else None, receipt)
        result(
            json_mode,
            True,
            SuccessCode.PASS,
            receipt,
            lambda: say(f"{receipt['digest']}  ({receipt['file_count']} files, {kind} view)"),
        )
