"""The index snapshot path gives exactly the full-view digests, and skips work when warm."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.git import hashing
from catalytic_hooks.git.digests import index_digest, tree_digest, worktree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.snapshot import _snapshot_file
from catalytic_hooks.git.views import index_view, worktree_view

from .helpers import DEFAULT_POLICY, git

FILES = {f"src/m{i}.py": f"x = {i}\n" for i in range(30)} | {
    "data/raw.csv": "1,2\n",
    "outputs/o.txt": "o\n",
    "é/ü.txt": "u\n",
    "z.txt": "z\n",
}


def both(repo: Path) -> None:
    r = Repo.discover(repo)
    policy = load_policy(repo)
    slow_wt = tree_digest(worktree_view(r), policy, HashCache(None))
    slow_ix = tree_digest(index_view(r), policy, HashCache(None))
    for _ in range(2):  # cold snapshot, then warm
        fast_wt = worktree_digest(r, policy, HashCache.for_repo(r))
        fast_ix = index_digest(r, policy, HashCache.for_repo(r))
        assert fast_wt == slow_wt
        assert fast_ix == slow_ix
        assert list(fast_wt.manifest) == sorted(fast_wt.manifest)


STEPS = [
    lambda r: None,
    lambda r: (r / "src/m3.py").write_text("changed\n"),
    lambda r: (r / "src/m4.py").unlink(),
    lambda r: (r / "new.txt").write_text("untracked\n"),
    lambda r: (r / "aaa-first.txt").write_text("sorts first\n"),
    lambda r: (r / "newdir/deep").mkdir(parents=True) or (r / "newdir/deep/f.txt").write_text("f"),
    lambda r: (
        (r / ".gitignore").write_text("*.log\nignored-dir/\n")
        or (r / "newdir/x.log").write_text("ignored")
        or (r / "ignored-dir").mkdir()
        or (r / "ignored-dir/i.txt").write_text("i")
    ),
    lambda r: os.symlink("src/m1.py", r / "link"),
    lambda r: git(r, "add", "-A"),
    lambda r: (r / "outputs/o.txt").write_text("durable change\n"),
    lambda r: (r / "src/m3.py").write_text("x = 3\n"),
    lambda r: git(r, "commit", "-q", "-m", "c"),
    lambda r: (r / "_tmp").mkdir() or (r / "_tmp/t").write_text("tmp"),
    lambda r: git(r, "rm", "-q", "--cached", "src/m5.py"),
]


def test_snapshot_path_equals_full_views(make_repo) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    for step in STEPS:
        step(repo)
        both(repo)


def test_warm_clean_repo_reads_nothing_and_skips_the_index(
    make_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    r = Repo.discover(repo)
    policy = load_policy(repo)
    expected = worktree_digest(r, policy, HashCache.for_repo(r))
    calls = {"disk": 0, "index": 0}
    real_disk, real_index = hashing.hash_disk, Repo.ls_index_start

    def disk(*a, **kw):  # type: ignore[no-untyped-def]
        calls["disk"] += 1
        return real_disk(*a, **kw)

    def index(self, *a, **kw):  # type: ignore[no-untyped-def]
        calls["index"] += 1
        return real_index(self, *a, **kw)

    monkeypatch.setattr(hashing, "hash_disk", disk)
    monkeypatch.setattr(Repo, "ls_index_start", index)
    assert worktree_digest(r, policy, HashCache.for_repo(r)) == expected
    assert calls == {"disk": 0, "index": 0}
    (repo / "src/m7.py").write_text("modified\n")
    worktree_digest(r, policy, HashCache.for_repo(r))
    assert calls == {"disk": 1, "index": 0}  # only the modified file, from the same snapshot


def test_corrupt_snapshot_is_rebuilt_and_index_change_invalidates(make_repo) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    r = Repo.discover(repo)
    policy = load_policy(repo)
    good = index_digest(r, policy, HashCache.for_repo(r))
    snap = _snapshot_file(r, policy)
    data = bytearray(snap.read_bytes())
    data[-10] ^= 0x01
    snap.write_bytes(bytes(data))
    assert index_digest(r, policy, HashCache.for_repo(r)) == good
    (repo / "src/m1.py").write_text("staged\n")
    git(repo, "add", "src/m1.py")
    after = index_digest(r, policy, HashCache.for_repo(r))
    assert after != good
    assert after == tree_digest(index_view(r), policy, HashCache(None))


def test_untracked_files_git_status_does_not_list_one_by_one(make_repo) -> None:
    """`git status` in its normal untracked mode (the one its untracked cache serves) shows an
    untracked directory as `dir/` and omits a directory standing where a deleted tracked file
    was; the digest must still hold every such file, and nothing ignored."""
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    (repo / "src/m6.py").unlink()
    (repo / "src/m6.py").mkdir()
    (repo / "src/m6.py/inner.txt").write_text("hidden by git status\n")
    (repo / "fresh/a/b").mkdir(parents=True)
    (repo / "fresh/a/b/deep.txt").write_text("deep\n")
    (repo / "fresh/top.txt").write_text("top\n")
    (repo / "fresh/skip.log").write_text("ignored\n")
    (repo / ".gitignore").write_text("*.log\n")
    nested = repo / "fresh/nested"
    nested.mkdir()
    git(nested, "init", "-q")
    git(nested, "commit", "-q", "--allow-empty", "-m", "n")
    head = git(nested, "rev-parse", "HEAD").stdout.strip()
    status = git(repo, "status", "--porcelain=v2", "-unormal").stdout
    assert "fresh/\n" in status and "inner.txt" not in status  # what git alone shows
    r = Repo.discover(repo)
    policy = load_policy(repo)
    for digest in (
        worktree_digest(r, policy, HashCache.for_repo(r)),
        tree_digest(worktree_view(r), policy, HashCache(None)),
    ):
        m = digest.manifest
        assert "src/m6.py/inner.txt" in m and "src/m6.py" not in m
        assert {"fresh/a/b/deep.txt", "fresh/top.txt", ".gitignore"} <= m.keys()
        assert m["fresh/nested"] == f"gitlink:{head}"
        assert "fresh/skip.log" not in m
