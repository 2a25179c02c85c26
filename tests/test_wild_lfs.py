"""git-lfs as a neighbour, with the real git-lfs: install chains its hooks, pushes upload LFS
objects, LFS-tracked paths are protected, digests agree whatever the smudge state, and a run's
undo gives back the real content (not the pointer)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .helpers import catalytic, git, needs_tool

pytestmark = needs_tool(
    subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0,
    "git-lfs is not installed here (.ci/run installs it: apt-get install git-lfs)",
)

POLICY = 'durable_roots = ["outputs"]\n'
DATA = bytes(range(256)) * 40  # the real content of an LFS-tracked protected file


def _digests(repo: Path, env: dict[str, str] | None = None) -> set[str]:
    out = set()
    for view in (["--worktree"], ["--index"], ["--rev", "HEAD"]):
        proc = catalytic("digest", *view, "--json", cwd=repo, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out.add(json.loads(proc.stdout)["details"]["digest"])
    return out


@pytest.fixture
def lfs_repo(tmp_path: Path) -> tuple[Path, Path]:
    repo, remote = tmp_path / "repo", tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "lfs", "install", "--local")
    git(repo, "lfs", "track", "data/*.bin")
    (repo / "data").mkdir()
    (repo / "data/raw.bin").write_bytes(DATA)
    (repo / ".catalytic.toml").write_text(POLICY)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "lfs data")
    git(repo, "remote", "add", "origin", remote.as_uri())
    return repo, remote


def _remote_has_lfs_object(remote: Path) -> bool:
    import hashlib

    oid = hashlib.sha256(DATA).hexdigest()
    return (remote / "lfs/objects" / oid[:2] / oid[2:4] / oid).is_file()


def test_install_chains_git_lfs_and_pushes_still_upload(lfs_repo: tuple[Path, Path]) -> None:
    repo, remote = lfs_repo
    git(repo, "push", "-q", "origin", "main")  # the baseline, with git-lfs's hook alone
    proc = catalytic("install", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "pre-push: chained (git-lfs's hook runs first)" in proc.stdout
    (repo / "data/second.bin").write_bytes(DATA[:512])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "protected lfs file")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and "data/second.bin: protected path added" in push.stderr
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    (repo / "outputs").mkdir()
    (repo / "outputs/r.txt").write_text("r\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "durable")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode == 0, push.stderr
    assert _remote_has_lfs_object(remote)
    doctor = json.loads(catalytic("doctor", "--json", cwd=repo).stdout)["details"]["checks"]
    (lfs,) = [c for c in doctor if c["name"] == "git-lfs"]
    assert lfs["ok"] and "its pre-push hook runs" in lfs["detail"]


def test_lfs_tracked_paths_are_protected(lfs_repo: tuple[Path, Path]) -> None:
    repo, _ = lfs_repo
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", cwd=repo).returncode == 0
    (repo / "data/raw.bin").write_bytes(DATA[::-1])
    git(repo, "add", "-A")
    proc = git(repo, "commit", "-m", "change lfs data", check=False)
    assert proc.returncode != 0 and "data/raw.bin: protected path changed" in proc.stderr
    git(repo, "commit", "-q", "--no-verify", "-m", "change lfs data")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and "data/raw.bin: protected path changed" in push.stderr


def test_digests_agree_smudged_skipped_and_pulled(
    lfs_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, _ = lfs_repo
    git(repo, "push", "-q", "origin", "main")  # git-lfs's hook uploads; catalytic not installed
    assert len(_digests(repo)) == 1
    clone = tmp_path / "skipped"
    env = {**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"}
    subprocess.run(
        ["git", "clone", "-q", (tmp_path / "remote.git").as_uri(), str(clone)], check=True, env=env
    )
    assert (clone / "data/raw.bin").read_bytes().startswith(b"version https://git-lfs")
    skipped = _digests(clone)
    assert len(skipped) == 1 and skipped == _digests(repo)
    git(clone, "lfs", "install", "--local")
    git(clone, "lfs", "pull")
    assert (clone / "data/raw.bin").read_bytes() == DATA
    assert _digests(clone) == skipped


def test_run_restore_gives_back_the_real_content(lfs_repo: tuple[Path, Path]) -> None:
    repo, _ = lfs_repo
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--restore",
        "--json",
        "--",
        "sh",
        "-c",
        "echo tampered > data/raw.bin",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "data/raw.bin").read_bytes() == DATA  # not the pointer
    assert json.loads(proc.stdout)["details"]["proof_verdict"] == "PASS"
    assert git(repo, "status", "--porcelain", "--untracked-files=no").stdout == ""


def test_the_pre_commit_framework_over_git_lfs(lfs_repo: tuple[Path, Path]) -> None:
    from .test_hooks import framework_config

    repo, remote = lfs_repo  # pre-commit is a dependency of this package: never skipped
    framework_config(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "framework config")
    git(repo, "push", "-q", "origin", "main")  # the baseline, before the framework's hook
    # The framework's migration mode keeps git-lfs's hook as pre-push.legacy and runs it.
    proc = subprocess.run(
        ["pre-commit", "install", "--hook-type", "pre-push"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "migration mode" in proc.stdout, proc.stdout
    (repo / "data/more.bin").write_bytes(DATA[:100])
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "new protected lfs file")
    push = git(repo, "push", "origin", "main", check=False)
    assert (
        push.returncode != 0 and "data/more.bin: protected path added" in push.stdout + push.stderr
    )
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    (repo / "outputs").mkdir()
    (repo / "outputs/ok.txt").write_text("ok\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "durable")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode == 0, push.stdout + push.stderr
    assert _remote_has_lfs_object(remote)


def test_runs_with_lfs_inputs_and_outputs_push_verify_replay_restore(
    lfs_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    from catalytic_hooks.bundle.keys import signer_from_seed

    from .helpers import SEED_A, key_file

    repo, remote = lfs_repo
    git(repo, "lfs", "track", "outputs/*.bin")
    (repo / ".catalytic/allowed_validators").parent.mkdir()
    (repo / ".catalytic/allowed_validators").write_text(
        f"ci id:{signer_from_seed(SEED_A).validator_id}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "track outputs, trust ci")
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", cwd=repo).returncode == 0
    job = "mkdir -p outputs && tac < data/raw.bin > outputs/model.bin"
    run = catalytic(
        "run",
        "--run-id",
        "r1",
        "--restore",
        "--sign",
        str(key_file(tmp_path)),
        "--json",
        "--",
        "sh",
        "-c",
        job,
        cwd=repo,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run r1")
    blob = git(repo, "cat-file", "blob", "HEAD:outputs/model.bin").stdout
    assert blob.startswith("version https://git-lfs")  # the commit holds a pointer
    push = git(repo, "push", "origin", "main", check=False)  # verified from the pointer
    assert push.returncode == 0, push.stderr
    assert catalytic("verify", "_runs/r1", cwd=repo).returncode == 0
    replay = catalytic("replay", "_runs/r1", "--json", cwd=repo)
    assert replay.returncode == 0, replay.stdout
    assert json.loads(replay.stdout)["details"]["verdict"] == "exact"
    wt = tmp_path / "restored"
    restore = catalytic("restore", "bundle", "_runs/r1", "--worktree", str(wt), "--json", cwd=repo)
    assert restore.returncode == 0, restore.stdout
    # Without the LFS content, verification says so precisely.
    clone = tmp_path / "skipped"
    subprocess.run(
        ["git", "clone", "-q", remote.as_uri(), str(clone)],
        check=True,
        env={**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"},
    )
    (clone / ".catalytic/allowed_validators").write_text(
        f"ci id:{signer_from_seed(SEED_A).validator_id}\n"
    )
    proc = catalytic("verify", "_runs/r1", "--json", cwd=clone)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["code"] == "OUTPUT_MISSING", doc
    (result,) = doc["details"]["results"]
    assert "an LFS pointer" in result["message"] and "git lfs pull" in result["message"]
