"""Partial clones (`--filter=blob:none` from a file:// server with uploadpack.allowFilter) and
shallow clones: object reads go through git (promised objects are fetched, in one batch), and a
range that reaches past the shallow boundary gets a precise error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import catalytic, git, write_files

POLICY = 'durable_roots = ["outputs"]\n'


@pytest.fixture
def server(make_repo, tmp_path: Path) -> tuple[Path, list[str]]:
    repo = make_repo({"data/raw.csv": "v0\n", "outputs/k.txt": "k\n"}, policy=POLICY)
    commits = [git(repo, "rev-parse", "HEAD").stdout.strip()]
    for n in range(1, 4):
        write_files(
            repo,
            {f"outputs/o{n}.txt": f"{n}\n", "data/raw.csv": f"v{n}\n"}
            if n == 3
            else {f"outputs/o{n}.txt": f"{n}\n"},
        )
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "--no-verify", "-m", f"c{n}")
        commits.append(git(repo, "rev-parse", "HEAD").stdout.strip())
    git(repo, "config", "uploadpack.allowFilter", "true")
    git(repo, "config", "uploadpack.allowAnySHA1InWant", "true")
    return repo, commits


def test_a_partial_clone_reads_promised_objects(
    server: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, commits = server
    clone = tmp_path / "partial"
    git(tmp_path, "clone", "-q", "--filter=blob:none", src.as_uri(), str(clone))
    assert git(clone, "config", "remote.origin.promisor").stdout.strip() == "true"
    old = catalytic("digest", "--rev", commits[0], "--json", cwd=clone)
    assert old.returncode == 0, old.stdout + old.stderr
    ours = json.loads(catalytic("digest", "--rev", commits[0], "--json", cwd=src).stdout)
    assert json.loads(old.stdout)["details"]["digest"] == ours["details"]["digest"]
    ci = catalytic("check", "--from-ref", commits[0], "--to-ref", "HEAD", "--json", cwd=clone)
    assert ci.returncode == 1
    paths = {f["path"] for f in json.loads(ci.stdout)["details"]["findings"]}
    assert paths == {"data/raw.csv"}
    run = catalytic("run", "--run-id", "r1", "--restore", "--json", "--", "true", cwd=clone)
    assert run.returncode == 0, run.stdout


def test_a_range_past_the_shallow_boundary_says_how_to_deepen(
    server: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, commits = server
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth=2", src.as_uri(), str(clone))
    proc = catalytic("check", "--from-ref", "0" * 40, "--to-ref", "HEAD", "--json", cwd=clone)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["code"] == "HISTORY_INCOMPLETE" and "git fetch --deepen" in doc["message"]
    # inside the clone's depth the check works
    inside = catalytic("check", "--from-ref", "HEAD~1", "--to-ref", "HEAD", "--json", cwd=clone)
    assert inside.returncode == 1
    assert {f["path"] for f in json.loads(inside.stdout)["details"]["findings"]} == {"data/raw.csv"}
    git(clone, "fetch", "-q", "--unshallow")
    full = catalytic("check", "--from-ref", commits[0], "--to-ref", "HEAD", "--json", cwd=clone)
    assert full.returncode == 1
