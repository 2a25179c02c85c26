"""Sparse checkouts: protected files outside the cone are neither deleted nor read; runs, hooks
and digests work; a run that writes outside the cone is judged (and undone) like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import catalytic, git

POLICY = 'durable_roots = ["outputs"]\n'


@pytest.fixture
def sparse(make_repo) -> Path:
    repo = make_repo({"data/raw.csv": "1,2\n", "src/a.py": "a = 1\n", "outputs/k.txt": "k\n"},
                     policy=POLICY)
    git(repo, "sparse-checkout", "set", "outputs", "src")
    assert not (repo / "data").exists()
    return repo


def _digest(repo: Path, *view: str) -> str:
    proc = catalytic("digest", *view, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["details"]["digest"])


def test_digests_agree_and_nothing_is_deleted(sparse: Path) -> None:
    assert _digest(sparse, "--worktree") == _digest(sparse, "--index") == \
        _digest(sparse, "--rev", "HEAD")
    doc = json.loads(catalytic("digest", "--json", cwd=sparse).stdout)["details"]
    assert "data/raw.csv" in doc["file_manifest"]


def test_runs_pass_and_a_write_outside_the_cone_is_undone(sparse: Path) -> None:
    ok = catalytic("run", "--run-id", "r1", "--restore", "--json", "--", "true", cwd=sparse)
    assert ok.returncode == 0, ok.stdout
    out = catalytic("run", "--run-id", "r2", "--restore", "--json", "--", "sh", "-c",
                    "mkdir -p data && echo forged > data/raw.csv", cwd=sparse)
    assert out.returncode == 0, out.stdout
    details = json.loads(out.stdout)["details"]
    assert [r["path"] for r in details["undo"]["removed"]] == ["data/raw.csv"]
    assert not (sparse / "data/raw.csv").exists()
    plain = catalytic("run", "--run-id", "r3", "--json", "--", "sh", "-c",
                      "mkdir -p data && echo forged > data/raw.csv", cwd=sparse)
    assert plain.returncode == 1  # without --restore the write is a violation
    assert "data/raw.csv" in json.loads(
        (sparse / "_runs/r3/PURITY_SCAN.json").read_text())["violations"]


def test_hooks_work_in_a_sparse_checkout(sparse: Path) -> None:
    assert catalytic("install", cwd=sparse).returncode == 0
    (sparse / "outputs/new.txt").write_text("n\n")
    git(sparse, "add", "outputs/new.txt")
    assert git(sparse, "commit", "-q", "-m", "durable", check=False).returncode == 0
    (sparse / "src/a.py").write_text("a = 2\n")
    git(sparse, "add", "src/a.py")
    proc = git(sparse, "commit", "-m", "protected", check=False)
    assert proc.returncode != 0 and "src/a.py: protected path changed" in proc.stderr
