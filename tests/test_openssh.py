"""Verification with nothing but OpenSSH: the trusted-validators file is an allowed_signers file,
and `catalytic sign` writes an SSHSIG signature that the real `ssh-keygen -Y verify` checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.bundle.keys import signer_from_seed

from .helpers import HAVE_SSH_KEYGEN, SEED_A, SEED_B, catalytic, key_file, needs_tool

pytestmark = needs_tool(HAVE_SSH_KEYGEN, "needs OpenSSH's ssh-keygen, not found")

POLICY = 'durable_roots = ["outputs"]\n'


def ssh_verify(
    repo: Path,
    principal: str,
    run: str = "_runs/r1",
    allowed: str = ".catalytic/allowed_validators",
) -> subprocess.CompletedProcess[str]:
    with (repo / run / "SIGNED_PAYLOAD.json").open() as payload:
        return subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                allowed,
                "-I",
                principal,
                "-n",
                "catalytic",
                "-s",
                f"{run}/ssh-signature.sig",
            ],
            cwd=repo,
            stdin=payload,
            capture_output=True,
            text=True,
        )


@pytest.fixture
def signed(make_repo, tmp_path: Path) -> Path:
    repo = make_repo({"data/x.csv": "1\n"}, policy=POLICY)
    pub = tmp_path / "alice.pub"
    pub.write_text(f"ed25519:{signer_from_seed(SEED_A).public_hex}\n")
    assert catalytic("trust", "add", "alice", str(pub), cwd=repo).returncode == 0
    run = catalytic(
        "run",
        "--run-id",
        "r1",
        "--sign",
        str(key_file(tmp_path)),
        "--",
        "sh",
        "-c",
        "mkdir -p outputs && echo r > outputs/r.txt",
        cwd=repo,
    )
    assert run.returncode == 0, run.stderr
    return repo


def test_ssh_keygen_verifies_a_trusted_signer_and_nobody_else(signed: Path, tmp_path: Path) -> None:
    ok = ssh_verify(signed, "alice")
    assert ok.returncode == 0 and 'Good "catalytic" signature for alice' in ok.stdout
    assert ssh_verify(signed, "mallory").returncode != 0
    # Another key under alice's name: the signature is not hers.
    from catalytic_hooks.bundle.sshsig import public_line

    other = tmp_path / "other_allowed"
    pub_b = signer_from_seed(SEED_B).public_hex
    other.write_text(f'alice namespaces="catalytic" {public_line(pub_b)}\n')
    assert ssh_verify(signed, "alice", allowed=str(other)).returncode != 0
    # One changed byte of the payload fails too.
    payload = signed / "_runs/r1/SIGNED_PAYLOAD.json"
    payload.write_bytes(payload.read_bytes().replace(b"ACCEPT", b"ACCEPt"))
    assert ssh_verify(signed, "alice").returncode != 0
    # and catalytic agrees
    assert catalytic("verify", "_runs/r1", cwd=signed).returncode == 1


def test_the_trust_file_is_an_allowed_signers_file(signed: Path) -> None:
    line = [
        ln
        for ln in (signed / ".catalytic/allowed_validators").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert line[0].startswith('alice namespaces="catalytic,git" ssh-ed25519 AAAA')
    assert catalytic("verify", "_runs/r1", cwd=signed).returncode == 0


def test_an_expired_window_fails_both_ways(signed: Path, tmp_path: Path) -> None:
    pub = tmp_path / "alice.pub"
    assert catalytic("trust", "remove", "alice", cwd=signed).returncode == 0
    assert (
        catalytic(
            "trust", "add", "alice", str(pub), "--valid-before", "2020-01-01", cwd=signed
        ).returncode
        == 0
    )
    assert (
        'valid-before="20200101000000Z"' in (signed / ".catalytic/allowed_validators").read_text()
    )
    assert ssh_verify(signed, "alice").returncode != 0
    proc = catalytic("verify", "_runs/r1", "--json", cwd=signed)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "UNTRUSTED"


def test_a_key_limited_to_git_namespace_does_not_vouch_for_bundles(signed: Path) -> None:
    path = signed / ".catalytic/allowed_validators"
    path.write_text(path.read_text().replace('namespaces="catalytic,git"', 'namespaces="git"'))
    proc = catalytic("verify", "_runs/r1", "--json", cwd=signed)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "UNTRUSTED"
    assert ssh_verify(signed, "alice").returncode != 0


def test_migrate_rewrites_the_earlier_format(signed: Path) -> None:
    path = signed / ".catalytic/allowed_validators"
    legacy = f"# team\nalice ed25519:{signer_from_seed(SEED_A).public_hex} valid-after=2020-01-01\n"
    path.write_text(legacy)
    assert catalytic("verify", "_runs/r1", cwd=signed).returncode == 0  # still read
    proc = catalytic("trust", "migrate", cwd=signed)
    assert proc.returncode == 0 and "rewrote" in proc.stdout
    text = path.read_text()
    assert text.startswith("# team\n")
    assert 'alice namespaces="catalytic,git",valid-after="20200101000000Z" ssh-ed25519' in text
    assert ssh_verify(signed, "alice").returncode == 0
    assert catalytic("verify", "_runs/r1", cwd=signed).returncode == 0
    path.write_text(f"bob id:{signer_from_seed(SEED_B).validator_id}\n")
    refused = catalytic("trust", "migrate", "--json", cwd=signed)
    assert refused.returncode == 2 and "public key" in json.loads(refused.stdout)["message"]
    assert path.read_text().startswith("bob id:")  # untouched
