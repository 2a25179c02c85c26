"""Repository, policy and chronicle helpers for commands (no Typer: the fast path uses them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy, load_policy
from catalytic_hooks.git.repo import Repo


def caller() -> tuple[Path, Policy] | None:
    """The repository the command runs in (its top and policy), or None outside one."""
    repo = Repo.find(None)
    return (repo.top, load_policy(repo.top)) if repo is not None else None


def caller_limits() -> Any:
    """The archive reader's limits by the policy of the repository the command runs in (the
    defaults outside one), never by the archive's own."""
    from catalytic_hooks.archive.read import limits_for

    here = caller()
    return limits_for(here[1] if here else Policy())


def split_roots(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def open_repo(repo: Path | None) -> Repo:
    return Repo.discover(None if repo is None else repo.resolve())


def repo_and_policy(
    repo_path: Path | None,
    exclusions: list[str] | None = None,
    durable_roots: list[str] | None = None,
    tmp_roots: list[str] | None = None,
) -> tuple[Repo | None, Path, Policy]:
    """The repository (None outside one), its root and the policy with command-line overrides."""
    repo = Repo.find(None if repo_path is None else repo_path.resolve())
    if repo is None and repo_path is not None and not repo_path.is_dir():
        raise CatalyticError(ErrorCode.PATH_INVALID, f"{repo_path} is not a directory")
    root = repo.top if repo else (repo_path or Path.cwd()).resolve()
    policy = load_policy(root).with_roots(
        exclusions=split_roots(exclusions),
        durable_roots=split_roots(durable_roots),
        tmp_roots=split_roots(tmp_roots),
    )
    return repo, root, policy
