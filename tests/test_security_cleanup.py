"""Issue 26, class 4: bookkeeping never decides what is deleted, and nothing deletes inside git's
directory. Real repositories, real `catalytic run --restore` and `catalytic recover`, real links
and nested repositories; each test reproduces an attack that destroyed data before the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalytic_hooks.core.paths import has_git_component

from .helpers import catalytic, git

RAW = b"id,value\n1,0.5\n"


def _repo_ok(repo: Path) -> bool:
    """The repository still works: its git directory and its committed file are there."""
    st = git(repo, "status", "--porcelain", check=False)
    return st.returncode == 0 and (repo / ".git/HEAD").is_file() \
        and (repo / "data/raw.csv").read_bytes() == RAW


# -- the policy: a tmp root (or any root but an exclusion) never names git's directory, nor "." --

@pytest.mark.parametrize("root", [".git", ".GIT", ".", "a/.git/b", ".git.", ".git ", "git~1",
                                  "GIT~1", ".git::$INDEX_ALLOCATION", ".g\u200cit"],
                         ids=["dotgit", "upper", "dot", "inner", "ntfs-dot", "ntfs-space",
                              "ntfs-short", "ntfs-short-upper", "ntfs-stream", "hfs-ignorable"])
def test_a_tmp_root_in_gits_directory_or_the_top_is_refused(make_repo, root: str) -> None:
    policy = f"tmp_roots = [{json.dumps(root)}]\n"
    repo = make_repo({"data/raw.csv": RAW, "src/a.py": "a = 1\n"}, policy=policy)
    (repo / "notes.txt").write_text("untracked, mine\n")
    proc = catalytic("run", "--run-id", "r1", "--restore", "--json", "--", "true", cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CONFIG_INVALID" and "tmp_roots" in doc["message"], doc
    assert _repo_ok(repo) and (repo / "notes.txt").read_text() == "untracked, mine\n"
    assert not (repo / "_runs").exists()


@pytest.mark.parametrize("key", ["durable_roots", "protected_roots", "run_roots", "lock_files"])
def test_no_other_root_names_gits_directory(make_repo, key: str) -> None:
    repo = make_repo({"data/raw.csv": RAW}, policy=f'{key} = [".Git/hooks"]\n')
    proc = catalytic("digest", "--worktree", "--json", cwd=repo)
    assert proc.returncode == 2 and json.loads(proc.stdout)["code"] == "CONFIG_INVALID"


def test_excluding_gits_directory_stays_allowed(make_repo) -> None:
    """The seed's own examples exclude `.git` (it is excluded anyway): harmless, still accepted."""
    repo = make_repo({"data/raw.csv": RAW}, policy='exclusions = [".git"]\n')
    assert catalytic("digest", "--worktree", cwd=repo).returncode == 0


@pytest.mark.parametrize(("name", "is_git"), [
    (".git", True), (".GiT", True), (".git.", True), (".git. . ", True), ("git~1", True),
    (".git:stream", True), (".\u200dgi\u200ct\ufeff", True), (".gitignore", False),
    ("git", False), (".git~1", False), ("git~2", False), ("x.git", False), (".gitx", False),
])
def test_every_spelling_git_treats_as_its_directory(name: str, is_git: bool) -> None:
    assert has_git_component(f"a/{name}/b") is is_git
