"""The index snapshot patched from the previous one (git write-tree into the tool's scratch store,
the trees compared where they differ) gives exactly the records of a full build, over a sequence of
real index changes; and whatever git cannot compare falls back to the full build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.git import snapshot
from catalytic_hooks.git.digests import tree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.views import index_view

from .helpers import DEFAULT_POLICY, git

FILES = {f"src/m{i}.py": f"v{i}\n" for i in range(30)} | {
    "outputs/o.txt": "o\n",
    "docs/a b.md": "x\n",
    "é/ü.txt": "u\n",
}


def _step(repo: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=repo, check=True, capture_output=True)


STEPS = [
    "echo changed > src/m1.py && git add src/m1.py",
    "git rm -q src/m2.py",
    "echo new > src/new.py && ln -s src/m3.py link && git add src/new.py link",
    "chmod +x src/m4.py && git add src/m4.py",
    "echo out2 > outputs/o.txt && git add outputs/o.txt",  # durable: not in the records
    "git mv src/m5.py src/moved.py",
    "git commit -qm step --no-verify",
    "git update-index --add --cacheinfo 160000,%s,sub",
    "mkdir -p deep/a/b && echo d > deep/a/b/c.txt && git add deep",
    "git rm -q -r --cached src && git add src",
]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"full": 0, "patch": 0}
    full, patch = snapshot._full, snapshot._patch

    def count_full(*a: object) -> object:
        calls["full"] += 1
        return full(*a)  # type: ignore[arg-type]

    def count_patch(*a: object) -> object:
        calls["patch"] += 1
        return patch(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot, "_full", count_full)
    monkeypatch.setattr(snapshot, "_patch", count_patch)
    return calls


def test_patched_snapshots_equal_full_builds(make_repo, counted: dict[str, int]) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    r = Repo.discover(repo)
    policy = load_policy(repo)
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    snapshot.index_snapshot(r, policy)
    assert counted == {"full": 1, "patch": 0}
    for i, step in enumerate(STEPS, 1):
        _step(repo, step.replace("%s", head))
        got = snapshot.index_snapshot(r, policy).records
        want = tree_digest(index_view(r), policy, HashCache(None)).records.materialize()
        assert (got.text, got.digest) == (want.text, want.digest), step
        assert list(got.starts) == list(want.starts) and list(got.klens) == list(want.klens)
        assert counted == {"full": 1, "patch": i}, step  # every change was a patch
    # Unchanged index: the stored snapshot, neither patched nor rebuilt.
    snapshot.index_snapshot(r, policy)
    assert counted["patch"] == len(STEPS)


def test_what_git_cannot_compare_is_built_in_full(make_repo, counted: dict[str, int]) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    r = Repo.discover(repo)
    policy = load_policy(repo)
    _step(repo, "echo staged > src/m2.py && git add src/m2.py")  # a tree only the scratch has
    snapshot.index_snapshot(r, policy)
    # The scratch store emptied: the old tree is gone, so the patch gives way to a full build.
    shutil.rmtree(repo / ".git/catalytic/trees")
    _step(repo, "echo a > src/m1.py && git add src/m1.py")
    got = snapshot.index_snapshot(r, policy).records
    assert got.text == tree_digest(index_view(r), policy, HashCache(None)).records.text()
    assert counted == {"full": 2, "patch": 1}
    # A conflicted index has no tree: built in full from the index ("ours").
    _step(
        repo,
        "git commit -qm a --no-verify && git checkout -qb other HEAD~0 && "
        "echo theirs > src/m9.py && git commit -qam t --no-verify && git checkout -q main "
        "&& echo ours > src/m9.py && git commit -qam o --no-verify && "
        "(git merge -q other || true)",
    )
    assert "UU" in git(repo, "status", "--porcelain").stdout
    got = snapshot.index_snapshot(r, policy).records
    assert got.text == tree_digest(index_view(r), policy, HashCache(None)).records.text()
    assert counted["full"] == 3


def test_the_repository_index_and_objects_are_not_written(make_repo) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    r = Repo.discover(repo)
    policy = load_policy(repo)
    snapshot.index_snapshot(r, policy)
    _step(repo, "echo a > src/m1.py && git add src/m1.py")
    index_before = (repo / ".git/index").read_bytes()
    objects = sorted(p.relative_to(repo) for p in (repo / ".git/objects").rglob("*"))
    snapshot.index_snapshot(r, policy)
    assert (repo / ".git/index").read_bytes() == index_before
    assert sorted(p.relative_to(repo) for p in (repo / ".git/objects").rglob("*")) == objects
    assert any((repo / ".git/catalytic/trees").iterdir())
