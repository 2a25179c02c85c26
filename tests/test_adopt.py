"""`catalytic adopt`: an ungoverned repository with history becomes governed without
`--no-verify`, and the first push to an empty server passes; what comes after is judged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.bundle.keys import signer_from_seed

from .helpers import SEED_A, catalytic, git, write_files

LEGACY = {"data/raw.csv": "1\n", "src/a.py": "a = 1\n", "outputs/old.txt": "o\n"}


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    repo = tmp_path / "legacy"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    for n, (path, text) in enumerate(LEGACY.items()):
        write_files(repo, {path: text})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"history {n}")
    (repo / "_tmp").mkdir()  # scratch on disk, never committed
    return repo


def _adopt(repo: Path, tmp_path: Path) -> dict[str, object]:
    pub = tmp_path / "alice.pub"
    pub.write_text(f"ed25519:{signer_from_seed(SEED_A).public_hex}\n")
    proc = catalytic("adopt", "--trust", f"alice={pub}", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = json.loads(proc.stdout)["details"]
    assert isinstance(details, dict)
    return details


def _server(tmp_path: Path) -> Path:
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    return bare


def test_adopt_writes_the_policy_and_commits_only_it(legacy: Path, tmp_path: Path) -> None:
    head = git(legacy, "rev-parse", "HEAD").stdout.strip()
    a = _adopt(legacy, tmp_path)
    assert a["baseline"] == head
    assert a["durable_roots"] == ["outputs"] and a["tmp_roots"] == ["_tmp"]
    assert git(legacy, "rev-parse", "HEAD^").stdout.strip() == head
    changed = git(legacy, "diff", "--name-only", "HEAD^", "HEAD").stdout.split()
    assert changed == [".catalytic.toml", ".catalytic/allowed_validators"]
    policy = (legacy / ".catalytic.toml").read_text()
    assert f'baseline = "{head}"' in policy
    assert (
        'alice namespaces="catalytic,git" ssh-ed25519 AAAA'
        in (legacy / ".catalytic/allowed_validators").read_text()
    )


def test_first_push_to_an_empty_server_passes_and_later_work_is_judged(
    legacy: Path, tmp_path: Path
) -> None:
    _adopt(legacy, tmp_path)
    assert catalytic("install", cwd=legacy).returncode == 0
    bare = _server(tmp_path)
    git(legacy, "remote", "add", "origin", str(bare))
    push = git(legacy, "push", "origin", "main", check=False)  # client and server hooks both run
    assert push.returncode == 0, push.stderr
    ci = catalytic("check", "--from-ref", "0" * 40, "--to-ref", "HEAD", "--json", cwd=legacy)
    assert ci.returncode == 0, ci.stdout
    (legacy / "data/raw.csv").write_text("forged\n")
    git(legacy, "commit", "-q", "--no-verify", "-am", "forge")
    push = git(legacy, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode != 0 and "remote: data/raw.csv" in push.stderr
    # a fresh mirror of the forged history is judged the same way
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "init", "-q", "--bare", str(mirror))
    assert catalytic("install", "--server", "--git-dir", str(mirror), cwd=tmp_path).returncode == 0
    push = git(legacy, "push", "--no-verify", str(mirror), "main", check=False)
    assert push.returncode != 0 and "remote: data/raw.csv" in push.stderr


def test_an_adoption_commit_that_smuggles_data_is_refused(legacy: Path, tmp_path: Path) -> None:
    head = git(legacy, "rev-parse", "HEAD").stdout.strip()
    assert catalytic("adopt", "--no-commit", cwd=legacy).returncode == 0
    (legacy / "data/raw.csv").write_text("smuggled\n")
    git(legacy, "add", "-A")
    git(legacy, "commit", "-q", "--no-verify", "-m", "adopt (and a little more)")
    assert f'baseline = "{head}"' in (legacy / ".catalytic.toml").read_text()
    bare = _server(tmp_path)
    push = git(legacy, "push", "--no-verify", str(bare), "main", check=False)
    assert push.returncode != 0
    assert "remote: data/raw.csv: the adoption commit may change only the policy" in push.stderr


def test_a_server_that_predates_adoption_accepts_the_adoption(legacy: Path, tmp_path: Path) -> None:
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(legacy, "push", "-q", str(bare), "main")  # the history, before any policy
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    _adopt(legacy, tmp_path)
    push = git(legacy, "push", "--no-verify", str(bare), "main", check=False)
    assert push.returncode == 0, push.stderr


@pytest.mark.parametrize("state", ["no-commit-yet", "already-governed", "dirty"])
def test_adopt_refuses_cleanly(tmp_path: Path, legacy: Path, state: str) -> None:
    repo = legacy
    if state == "no-commit-yet":
        repo = tmp_path / "empty"
        git(tmp_path, "init", "-q", str(repo))
    elif state == "already-governed":
        (repo / ".catalytic.toml").write_text("durable_roots = []\n")
    else:
        (repo / "src/a.py").write_text("uncommitted\n")
    before = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
    ).stdout
    proc = catalytic("adopt", "--json", cwd=repo)
    assert proc.returncode == 2 and json.loads(proc.stdout)["code"] == "USAGE"
    after = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
    ).stdout
    assert before == after


def test_doctor_names_each_problem_and_its_fix(legacy: Path, tmp_path: Path) -> None:
    proc = catalytic("doctor", "--json", cwd=legacy)
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["details"]["checks"]}
    assert not checks["pre-commit hook"]["ok"]
    assert checks["pre-commit hook"]["fix"] == "catalytic install --hook-type pre-commit"
    assert not checks["policy"]["ok"] and checks["policy"]["fix"] == "catalytic adopt"
    _adopt(legacy, tmp_path)
    assert catalytic("install", cwd=legacy).returncode == 0
    proc = catalytic("doctor", "--json", cwd=legacy)
    checks = {c["name"]: c for c in json.loads(proc.stdout)["details"]["checks"]}
    assert proc.returncode == 0, checks
    assert checks["baseline"]["detail"].startswith("adopted at")
    assert "1 trusted validator(s)" in checks["trust file"]["detail"]
    # an uncommitted policy edit is pointed out: the hooks judge by the committed policy
    with (legacy / ".catalytic.toml").open("a") as fh:
        fh.write('exclusions = ["data"]\n')
    proc = catalytic("doctor", cwd=legacy)
    assert proc.returncode == 1 and "FIX  committed policy" in proc.stdout
