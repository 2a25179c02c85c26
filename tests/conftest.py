"""Fixtures: real git repositories in tmp_path, isolated from the user's git config. Plain
helpers live in helpers.py."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalytic_hooks.git.invoke import REPOSITORY_ENV

from .helpers import MakeRepo, git, write_files


@pytest.fixture(autouse=True)
def isolated_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("PRE_COMMIT_HOME", str(home / ".cache-pre-commit"))
    # The console scripts of this interpreter (catalytic, pre-commit) must be found by git hooks
    # and by the framework even where pip put them outside PATH.
    monkeypatch.setenv(
        "PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    for k in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(k, "Test")
    for k in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(k, "test@example.invalid")
    for k in (*REPOSITORY_ENV, "PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "SKIP"):
        monkeypatch.delenv(k, raising=False)
    (home / ".gitconfig").write_text(
        '[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n'
        "[advice]\n\tdetachedHead = false\n"
    )
    yield


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """make_repo(files, policy=None, commit=True, name="repo") -> path of a real git repo."""
    counter = [0]

    def factory(
        files: dict[str, str | bytes] | None = None,
        *,
        policy: str | None = None,
        commit: bool = True,
        name: str | None = None,
    ) -> Path:
        counter[0] += 1
        repo = tmp_path / (name or f"repo{counter[0]}")
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        if policy is not None:
            (repo / ".catalytic.toml").write_text(policy)
        write_files(repo, files or {})
        if commit:
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "initial", "--allow-empty")
        return repo

    return factory
