"""The server gate against pushes that reach what it guards by another name: a symbolic ref
aliasing the default branch (SECURITY.md, pre-receive row), and a directory where a policy source
would be. Real `git push --no-verify` into a bare server with `catalytic install --server`."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalytic_hooks.enforce.quickaccept import _clean

from .helpers import commit_all, gated_server, git, push_unchecked, write_files

POLICY = 'durable_roots = ["outputs"]\nprotected_roots = ["data", ".catalytic"]\n'
BASE = {"data/raw.csv": "1\n", "outputs/o.txt": "o\n"}


def _ref(bare: Path, ref: str = "refs/heads/main") -> str:
    return git(bare, "rev-parse", "--verify", "--quiet", ref, check=False).stdout.strip()


def _serve(repo: Path, tmp_path: Path) -> Path:
    return gated_server(repo, tmp_path, head="main")


@pytest.fixture
def served(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(BASE, policy=POLICY)
    return repo, _serve(repo, tmp_path)


def test_a_push_through_an_alias_is_judged_as_a_push_to_its_target(
    make_repo, tmp_path: Path
) -> None:
    # History before adoption, then the policy: a rewind to `pre` would leave no ref governed.
    repo = make_repo(BASE)
    pre = git(repo, "rev-parse", "HEAD").stdout.strip()
    policy_tip = commit_all(repo, {".catalytic.toml": POLICY}, "adopt")
    bare = _serve(repo, tmp_path)
    git(bare, "symbolic-ref", "refs/heads/master", "refs/heads/main")  # left by a rename
    proc = push_unchecked(
        repo, "-f", "origin", f"{pre}:refs/heads/main"
    )  # the control: by its name
    assert proc.returncode != 0 and "default branch" in proc.stderr, proc.stderr
    proc = push_unchecked(repo, "-f", "origin", f"{pre}:refs/heads/master")
    assert proc.returncode != 0, proc.stderr
    assert "non-fast-forward update of the default branch" in proc.stderr, proc.stderr
    assert "refs/heads/master is a symbolic ref to refs/heads/main" in proc.stderr, proc.stderr
    assert _ref(bare) == policy_tip
    # git deletes the target of a deleted alias: deleting it deletes the default branch.
    proc = push_unchecked(repo, "origin", ":refs/heads/master")
    assert proc.returncode != 0 and "deleting it is refused" in proc.stderr, proc.stderr
    assert _ref(bare) == policy_tip
    # A protected change through the alias is judged by main's policy, like one to main.
    forged = commit_all(repo, {"data/raw.csv": "forged\n"}, "forge")
    proc = push_unchecked(repo, "origin", f"{forged}:refs/heads/master")
    assert proc.returncode != 0 and "data/raw.csv" in proc.stderr, proc.stderr
    assert _ref(bare) == policy_tip
    # An honest push through the alias is accepted and moves main.
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    honest = commit_all(repo, {"outputs/new.txt": "n\n"}, "a result")
    proc = push_unchecked(repo, "origin", f"{honest}:refs/heads/master")
    assert proc.returncode == 0, proc.stderr
    assert _ref(bare) == honest == _ref(bare, "refs/heads/master")


def test_an_alias_cannot_reach_outside_the_ref_namespaces(served: tuple[Path, Path]) -> None:
    repo, bare = served
    git(bare, "symbolic-ref", "refs/heads/notes", "refs/notes/commits")
    proc = push_unchecked(repo, "origin", "main:refs/heads/notes")
    assert proc.returncode != 0 and "REF_FORBIDDEN" in proc.stderr, proc.stderr
    assert _ref(bare, "refs/notes/commits") == ""


@pytest.mark.parametrize("path", ["pyproject.toml/x", "pyproject.toml/a/b", ".catalytic.toml/x"])
def test_a_directory_where_a_policy_source_would_be_is_a_policy_finding(
    served: tuple[Path, Path], path: str
) -> None:
    repo, bare = served
    before = _ref(bare)
    if path.startswith(".catalytic.toml/"):
        git(repo, "rm", "-q", ".catalytic.toml")
        write_files(repo, {"pyproject.toml": "[tool.catalytic]\n" + POLICY})
    commit_all(repo, {path: "x\n"}, "a harmless-looking directory")
    proc = push_unchecked(repo, "origin", "main")
    assert proc.returncode != 0, proc.stderr
    assert f"{path}: policy changed ({path} would make" in proc.stderr, proc.stderr
    assert _ref(bare) == before
    # Nothing was locked: without that commit, the next honest push lands.
    git(repo, "reset", "-q", "--hard", before)
    honest = commit_all(repo, {"outputs/o2.txt": "o2\n"}, "an honest result")
    proc = push_unchecked(repo, "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert _ref(bare) == honest


def test_the_quick_path_never_accepts_a_path_under_a_watched_one() -> None:
    roots: list[list[str]] = [[], [], ["."], [], []]
    assert _clean(b"outputs/x\0", ["pyproject.toml"], roots)
    assert not _clean(b"pyproject.toml/x\0", ["pyproject.toml"], roots)
    assert not _clean(b"pyproject.toml\0", ["pyproject.toml"], roots)
