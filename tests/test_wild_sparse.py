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
    repo = make_repo(
        {"data/raw.csv": "1,2\n", "src/a.py": "a = 1\n", "outputs/k.txt": "k\n"}, policy=POLICY
    )
    git(repo, "sparse-checkout", "set", "outputs", "src")
    assert not (repo / "data").exists()
    return repo


def _digest(repo: Path, *view: str) -> str:
    proc = catalytic("digest", *view, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["details"]["digest"])


def test_digests_agree_and_nothing_is_deleted(sparse: Path) -> None:
    assert (
        _digest(sparse, "--worktree")
        == _digest(sparse, "--index")
        == _digest(sparse, "--rev", "HEAD")
    )
    doc = json.loads(catalytic("digest", "--json", cwd=sparse).stdout)["details"]
    assert "data/raw.csv" in doc["file_manifest"]


def test_runs_pass_and_a_write_outside_the_cone_is_undone(sparse: Path) -> None:
    ok = catalytic("run", "--run-id", "r1", "--restore", "--json", "--", "true", cwd=sparse)
    assert ok.returncode == 0, ok.stdout
    out = catalytic(
        "run",
        "--run-id",
        "r2",
        "--restore",
        "--json",
        "--",
        "sh",
        "-c",
        "mkdir -p data && echo forged > data/raw.csv",
        cwd=sparse,
    )
    assert out.returncode == 0, out.stdout
    details = json.loads(out.stdout)["details"]
    assert [r["path"] for r in details["undo"]["removed"]] == ["data/raw.csv"]
    assert not (sparse / "data/raw.csv").exists()
    plain = catalytic(
        "run",
        "--run-id",
        "r3",
        "--json",
        "--",
        "sh",
        "-c",
        "mkdir -p data && echo forged > data/raw.csv",
        cwd=sparse,
    )
    assert plain.returncode == 1  # without --restore the write is a violation
    assert (
        "data/raw.csv"
        in json.loads((sparse / "_runs/r3/PURITY_SCAN.json").read_text())["violations"]
    )


def test_hooks_work_in_a_sparse_checkout(sparse: Path) -> None:
    assert catalytic("install", cwd=sparse).returncode == 0
    (sparse / "outputs/new.txt").write_text("n\n")
    git(sparse, "add", "outputs/new.txt")
    assert git(sparse, "commit", "-q", "-m", "durable", check=False).returncode == 0
    (sparse / "src/a.py").write_text("a = 2\n")
    git(sparse, "add", "src/a.py")
    proc = git(sparse, "commit", "-m", "protected", check=False)
    assert proc.returncode != 0 and "src/a.py: protected path changed" in proc.stderr


def test_replay_in_a_sparse_checkout_sees_the_whole_commit(sparse: Path, tmp_path: Path) -> None:
    from catalytic_hooks.bundle.keys import signer_from_seed

    from .helpers import SEED_A, key_file

    (sparse / ".catalytic").mkdir(exist_ok=True)
    (sparse / ".catalytic/allowed_validators").write_text(
        f"ci id:{signer_from_seed(SEED_A).validator_id}\n"
    )
    git(sparse, "add", "--sparse", "-A")
    git(sparse, "commit", "-q", "-m", "trust")
    # The job reads protected data that lies outside this checkout's cone.
    job = "mkdir -p outputs && git show HEAD:data/raw.csv | tr 1 9 > outputs/r.txt"
    run = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key_file(tmp_path)),
        "--json",
        "--",
        "sh",
        "-c",
        job,
        cwd=sparse,
    )
    assert run.returncode == 0, run.stdout
    git(sparse, "add", "--sparse", "-A")
    git(sparse, "commit", "-q", "-m", "run")
    replay = catalytic("replay", "_runs/r1", "--json", cwd=sparse)
    assert replay.returncode == 0, replay.stdout
    assert json.loads(replay.stdout)["details"]["verdict"] == "exact"
