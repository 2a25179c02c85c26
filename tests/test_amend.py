"""Signed amendments with real ssh-keygen keys and real SSH-signed commits: accepted in pre-push,
pre-receive and CI when signed by a validator of the base's trust file and carrying the trailer;
refused, with the precise reason, otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.provenance.chronicle import read

from .helpers import HAVE_SSH_KEYGEN, catalytic, git, needs_tool

pytestmark = needs_tool(HAVE_SSH_KEYGEN, "signed amendments need ssh-keygen (OpenSSH), not found")

POLICY = 'durable_roots = ["outputs"]\n'


def _key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


@pytest.fixture
def team(make_repo, tmp_path: Path) -> dict[str, Path]:
    alice, mallory = _key(tmp_path, "alice"), _key(tmp_path, "mallory")
    pub = " ".join((tmp_path / "alice.pub").read_text().split()[:2])
    repo = make_repo(
        {
            "data/x.csv": "1\n",
            "outputs/k.txt": "k\n",
            ".catalytic/allowed_validators": f"alice {pub}\n",
        },
        policy=POLICY,
    )
    git(repo, "config", "gpg.format", "ssh")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "fetch", "-q", "origin")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    assert catalytic("install", "-t", "pre-push", cwd=repo).returncode == 0
    return {"repo": repo, "bare": bare, "alice": alice, "mallory": mallory}


def _amend(repo: Path, key: Path | None, trailer: str | None, text: str = "2\n") -> str:
    (repo / "data/x.csv").write_text(text)
    args = ["commit", "-q", "--no-verify", "-am", "correct the raw data"]
    if key is not None:
        args += ["-S", f"--gpg-sign={key}"]
    if trailer is not None:
        args += ["--trailer", f"Catalytic-Amend: {trailer}"]
    git(repo, *args)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def test_a_signed_trusted_amendment_is_accepted_everywhere(team: dict[str, Path]) -> None:
    repo, bare = team["repo"], team["bare"]
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    commit = _amend(repo, team["alice"], "sensor 3 recalibrated (ticket 42)")
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 0, ci.stdout
    amendments = json.loads(ci.stdout)["details"]["amendments"]
    assert [(a["path"], a["kind"], a["commit"]) for a in amendments] == [
        ("data/x.csv", "amended", commit)
    ]
    assert "accepted amendment by alice" in amendments[0]["reason"]
    assert "sensor 3 recalibrated (ticket 42)" in amendments[0]["reason"]
    push = git(repo, "push", "origin", "main", check=False)  # pre-push, then pre-receive
    assert push.returncode == 0, push.stderr
    assert "remote: catalytic: data/x.csv: accepted amendment by alice" in push.stderr
    assert git(bare, "rev-parse", "main").stdout.strip() == commit
    logged = read(bare / "catalytic/chronicle.jsonl")
    assert [(r["kind"], r["data"]["commit"]) for r in logged] == [("amendment", commit)]


@pytest.mark.parametrize(
    ("signer", "trailer", "why"),
    [
        (None, "no review", "amendment refused: it is not signed"),
        (
            "mallory",
            "trust me",
            "amendment refused: it is signed by a key that is not in the base's trust file",
        ),
        ("alice", None, "protected path changed outside durable roots"),
    ],
)
def test_an_unsigned_untrusted_or_unmarked_amendment_is_refused(
    team: dict[str, Path], signer: str | None, trailer: str | None, why: str
) -> None:
    repo, bare = team["repo"], team["bare"]
    before = git(bare, "rev-parse", "main").stdout.strip()
    _amend(repo, team[signer] if signer else None, trailer)
    push = git(repo, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode != 0
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert why in push.stderr
    assert git(bare, "rev-parse", "main").stdout.strip() == before
    assert not (bare / "catalytic/chronicle.jsonl").exists()


def test_a_trust_change_by_amendment_needs_a_key_already_trusted(team: dict[str, Path]) -> None:
    repo = team["repo"]
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    pub = " ".join((team["mallory"].parent / "mallory.pub").read_text().split()[:2])
    with (repo / ".catalytic/allowed_validators").open("a") as fh:
        fh.write(f"mallory {pub}\n")
    # Mallory signs her own addition: the base's trust file does not know her.
    git(
        repo,
        "commit",
        "-q",
        "--no-verify",
        "-am",
        "add mallory",
        "-S",
        f"--gpg-sign={team['mallory']}",
        "--trailer",
        "Catalytic-Amend: new team member",
    )
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1
    findings = json.loads(ci.stdout)["details"]["findings"]
    assert {f["kind"] for f in findings} == {"policy", "mutation"}
    assert all("not in the base's trust file" in f["reason"] for f in findings)
    # Alice, already trusted, signing the same change makes it an accepted amendment.
    git(
        repo,
        "commit",
        "-q",
        "--no-verify",
        "--amend",
        "--no-edit",
        "-S",
        f"--gpg-sign={team['alice']}",
    )
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 0, ci.stdout
