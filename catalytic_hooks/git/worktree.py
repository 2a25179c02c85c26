"""Linked worktrees for restore and replay: created at a commit, removed without a trace.

Both run on behalf of a bundle from elsewhere, so git runs with the caller's environment stripped
of hook variables, and (as every git command of this tool: git.invoke) with hooks disabled: a
`post-checkout` hook of the repository (or one committed to the checked-out branch) never runs.
"""

from __future__ import annotations

from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, clean_env


def neutral(repo: Repo) -> Repo:
    """The same repository, seen without any git variable inherited from a calling hook."""
    return Repo(repo.top, repo.git_dir, repo.common_dir, clean_env())


def add_worktree(repo: Repo, path: Path, commit: str, *, into_empty: bool = False) -> Path:
    """A new detached worktree of `repo` at `commit`; `path` must not exist (`into_empty`: or
    be an empty directory, which git fills)."""
    if (path.exists() or path.is_symlink()) and not (
        into_empty and path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    ):
        raise CatalyticError(
            ErrorCode.WORKTREE_FAILED,
            f"{path} exists; a worktree needs a new path",
            path=str(path),
            reason="WORKTREE_EXISTS",
        )
    neutral(repo).git("worktree", "add", "--detach", "-q", str(path), commit)
    return path.resolve()


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove a worktree this tool created (files and git's bookkeeping); never fails."""
    r = neutral(repo)
    # Twice forced: a worktree git was still adding carries a `locked` ("initializing") mark,
    # which a single --force (and prune) leaves registered for ever.
    r.git("worktree", "remove", "--force", "--force", str(path), check=False)
    r.git("worktree", "prune", check=False)


def move_worktree(repo: Repo, src: Path, dst: Path) -> None:
    """Move a worktree this tool created (git updates its own bookkeeping); `dst` must not
    exist."""
    neutral(repo).git("worktree", "move", str(src), str(dst))
