"""Linked worktrees for restore and replay: created at a commit, removed without a trace.

Both run on behalf of a bundle from elsewhere, so git runs with the caller's environment stripped
of hook variables and with hooks disabled (`core.hooksPath=/dev/null`): a `post-checkout` hook of
the repository (or one committed to the checked-out branch) never runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, clean_env

NO_HOOKS = ("-c", f"core.hooksPath={os.devnull}")


def neutral(repo: Repo) -> Repo:
    """The same repository, seen without any git variable inherited from a calling hook."""
    return Repo(repo.top, repo.git_dir, repo.common_dir, clean_env())


def add_worktree(repo: Repo, path: Path, commit: str) -> Path:
    """A new detached worktree of `repo` at `commit`; `path` must not exist."""
    if path.exists() or path.is_symlink():
        raise CatalyticError(ErrorCode.WORKTREE_FAILED, f"{path} exists; a worktree needs a new "
                             "path", path=str(path), reason="WORKTREE_EXISTS")
    neutral(repo).git(*NO_HOOKS, "worktree", "add", "--detach", "-q", str(path), commit)
    return path.resolve()


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove a worktree this tool created (files and git's bookkeeping); never fails."""
    r = neutral(repo)
    r.git(*NO_HOOKS, "worktree", "remove", "--force", str(path), check=False)
    r.git(*NO_HOOKS, "worktree", "prune", check=False)
