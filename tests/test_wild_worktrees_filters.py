"""Linked worktrees, SHA-256 repositories, text filters (`eol=crlf`) and a clean/smudge filter:
hooks and `run --restore` work, HEAD, index and worktree digests agree, nothing is falsely
flagged, and the undo gives back the exact bytes that were on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import catalytic, git, write_files

POLICY = 'durable_roots = ["outputs"]\n'


def _digests(repo: Path) -> set[str]:
    out = set()
    for view in (["--worktree"], ["--index"], ["--rev", "HEAD"]):
        proc = catalytic("digest", *view, "--json", cwd=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out.add(json.loads(proc.stdout)["details"]["digest"])
    return out


def _run(repo: Path, script: str) -> dict[str, object]:
    proc = catalytic(
        "run", "--run-id", "r1", "--restore", "--json", "--", "sh", "-c", script, cwd=repo
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = json.loads(proc.stdout)["details"]
    assert isinstance(details, dict) and details["proof_verdict"] == "PASS"
    return details


def test_a_linked_worktree(make_repo, tmp_path: Path) -> None:
    main = make_repo({"data/raw.csv": "1\n", "outputs/k.txt": "k\n"}, policy=POLICY)
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "-b", "side", str(linked))
    assert catalytic("install", cwd=linked).returncode == 0
    (linked / "data/raw.csv").write_text("2\n")
    git(linked, "add", "-A")
    proc = git(linked, "commit", "-m", "x", check=False)
    assert proc.returncode != 0 and "data/raw.csv: protected path changed" in proc.stderr
    git(linked, "reset", "-q", "--hard")
    _run(linked, "echo forged > data/raw.csv")
    assert (linked / "data/raw.csv").read_text() == "1\n"
    assert (main / "data/raw.csv").read_text() == "1\n"


def test_a_sha256_repository(tmp_path: Path) -> None:
    repo = tmp_path / "sha256"
    git(tmp_path, "init", "-q", "--object-format=sha256", "-b", "main", str(repo))
    write_files(repo, {"data/raw.csv": "1\n", ".catalytic.toml": POLICY})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    assert len(_digests(repo)) == 1
    _run(repo, "echo forged > data/raw.csv")
    assert (repo / "data/raw.csv").read_text() == "1\n"
    assert catalytic("install", cwd=repo).returncode == 0
    (repo / "data/raw.csv").write_text("2\n")
    git(repo, "add", "-A")
    assert git(repo, "commit", "-m", "x", check=False).returncode != 0


@pytest.fixture(params=["eol=crlf", "clean-smudge"])
def filtered(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bytes]:
    repo = tmp_path / "filtered"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    if request.param == "eol=crlf":
        attrs = "*.csv text eol=crlf\n"
    else:
        # A real clean/smudge pair: the repository stores upper case, the disk has lower case.
        git(repo, "config", "filter.case.clean", "tr a-z A-Z")
        git(repo, "config", "filter.case.smudge", "tr A-Z a-z")
        attrs = "*.csv filter=case\n"
    write_files(
        repo,
        {
            ".gitattributes": attrs,
            ".catalytic.toml": POLICY,
            "data/x.csv": "a,b\n1,2\n",
            "outputs/k.txt": "k\n",
        },
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "data/x.csv").unlink()
    git(repo, "checkout", "--", "data/x.csv")  # the bytes git's filters write
    on_disk = (repo / "data/x.csv").read_bytes()
    assert on_disk != git(repo, "cat-file", "blob", "HEAD:data/x.csv").stdout.encode()
    return repo, on_disk


def test_filters_digests_agree_and_nothing_is_falsely_flagged(filtered: tuple[Path, bytes]) -> None:
    repo, _ = filtered
    assert len(_digests(repo)) == 1
    assert catalytic("install", cwd=repo).returncode == 0
    (repo / "outputs/k.txt").write_text("k2\n")
    git(repo, "add", "-A")
    proc = git(repo, "commit", "-q", "-m", "durable only", check=False)
    assert proc.returncode == 0, proc.stderr


def test_filters_the_undo_restores_the_exact_bytes(filtered: tuple[Path, bytes]) -> None:
    repo, on_disk = filtered
    _run(repo, "echo tampered >> data/x.csv")
    assert (repo / "data/x.csv").read_bytes() == on_disk
