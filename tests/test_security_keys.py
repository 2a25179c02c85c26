"""Issue 26, class 3: a key's validity belongs to the key. With OpenSSH-style rotation (the old
key kept under the same name with `valid-before`, the new key added under that name), whatever
the revoked key signs (an amendment, a bundle, an attestation) is refused, judged by the key that
signed, now, never by the name or by a date the signer chose. Real ssh-keygen keys, real SSH-signed
commits pushed to a real bare repository with the server gate installed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .helpers import HAVE_SSH_KEYGEN, catalytic, git, needs_tool

pytestmark = needs_tool(HAVE_SSH_KEYGEN, "rotated keys need ssh-keygen (OpenSSH), not found")

POLICY = 'durable_roots = ["outputs"]\n'
REVOKED_AT = "20200101000000Z"  # the old key's valid-before: long past


def _key(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key, " ".join((directory / f"{name}.pub").read_text().split()[:2])


@pytest.fixture
def rotated(make_repo, tmp_path: Path) -> dict[str, Path]:
    """alice rotated her key: the old one is kept under her name, revoked in 2020; the new one
    is added under the same name. Both are in the base every push is judged by."""
    old, old_pub = _key(tmp_path, "alice_old")
    new, new_pub = _key(tmp_path, "alice_new")
    trust = (
        f'alice namespaces="catalytic,git",valid-before="{REVOKED_AT}" {old_pub}\n'
        f'alice namespaces="catalytic,git" {new_pub}\n'
    )
    repo = make_repo(
        {"data/x.csv": "1\n", "outputs/k.txt": "k\n", ".catalytic/allowed_validators": trust},
        policy=POLICY,
    )
    git(repo, "config", "gpg.format", "ssh")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    return {"repo": repo, "bare": bare, "old": old, "new": new}


def _amend(repo: Path, key: Path, text: str, date: str | None = None) -> str:
    (repo / "data/x.csv").write_text(text)
    env = dict(os.environ)
    if date is not None:  # the signer chooses the dates a commit carries
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    git(
        repo,
        "commit",
        "-q",
        "--no-verify",
        "-am",
        "correct the raw data",
        "-S",
        f"--gpg-sign={key}",
        "--trailer",
        "Catalytic-Amend: sensor 3 recalibrated",
        env=env,
    )
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def _tip(bare: Path) -> str:
    return git(bare, "rev-parse", "main").stdout.strip()


def test_the_revoked_keys_amendment_is_refused_and_the_new_keys_accepted(
    rotated: dict[str, Path],
) -> None:
    repo, bare = rotated["repo"], rotated["bare"]
    before = _tip(bare)
    _amend(repo, rotated["old"], "2\n")
    push = git(repo, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode != 0, push.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert "amendment refused" in push.stderr and "alice" in push.stderr
    assert "outside its validity window" in push.stderr
    assert _tip(bare) == before
    assert not (bare / "catalytic/chronicle.jsonl").exists()
    ci = catalytic("check", "--from-ref", before, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1, ci.stdout
    # The same change signed by the key alice holds now is her reviewed amendment.
    git(repo, "reset", "-q", "--hard", before)
    commit = _amend(repo, rotated["new"], "2\n")
    push = git(repo, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode == 0, push.stderr
    assert "remote: catalytic: data/x.csv: accepted amendment by alice" in push.stderr
    assert _tip(bare) == commit


def test_a_backdated_commit_by_the_revoked_key_is_refused(rotated: dict[str, Path]) -> None:
    """The commit claims 2019, when the old key was still valid: the date is the signer's
    choice, so validity is judged now."""
    repo, bare = rotated["repo"], rotated["bare"]
    before = _tip(bare)
    commit = _amend(repo, rotated["old"], "3\n", date="2019-06-01T12:00:00Z")
    assert git(repo, "log", "-1", "--format=%cI", commit).stdout.startswith("2019-06-01")
    push = git(repo, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode != 0, push.stderr
    assert "outside its validity window" in push.stderr
    assert _tip(bare) == before
    ci = catalytic("check", "--from-ref", before, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1
    reasons = [f["reason"] for f in json.loads(ci.stdout)["details"]["findings"]]
    assert reasons and all("outside its validity window" in r for r in reasons), reasons


def _signed_run(repo: Path, key: Path, run_id: str) -> None:
    run = catalytic(
        "run",
        "--run-id",
        run_id,
        "--sign",
        str(key),
        "--attest",
        "--",
        "sh",
        "-c",
        f"mkdir -p outputs && echo {run_id} > outputs/{run_id}.txt",
        cwd=repo,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_bundles_and_attestations_by_the_revoked_key_are_untrusted(
    rotated: dict[str, Path],
) -> None:
    repo, bare = rotated["repo"], rotated["bare"]
    _signed_run(repo, rotated["old"], "by-old")
    _signed_run(repo, rotated["new"], "by-new")
    for run_id, trusted in (("by-old", False), ("by-new", True)):
        proc = catalytic("verify", f"_runs/{run_id}", "--json", cwd=repo)
        row = json.loads(proc.stdout)["details"]["results"][0]
        assert (proc.returncode, row["valid"], row["trusted"]) == (
            0 if trusted else 1,
            True,
            trusted,
        ), proc.stdout
        att = catalytic(
            "verify",
            f"_runs/{run_id}",
            "--attestation",
            f"_runs/{run_id}/attestation.intoto.json",
            "--json",
            cwd=repo,
        )
        doc = json.loads(att.stdout)
        if trusted:
            assert att.returncode == 0 and doc["code"] == "PASS", att.stdout
        else:
            assert (att.returncode, doc["code"]) == (1, "UNTRUSTED"), att.stdout
            assert "outside its validity window" in doc["message"]
            assert "outside its validity window" in row["trust"]
    # The server gate refuses to take in a bundle the revoked key signed.
    before = _tip(bare)
    git(repo, "add", "-A", "_runs/by-old", "outputs/by-old.txt")
    git(repo, "commit", "-q", "--no-verify", "-m", "record by-old")
    push = git(repo, "push", "--no-verify", "origin", "main", check=False)
    assert push.returncode != 0, push.stderr
    assert "run bundle is valid but untrusted" in push.stderr
    assert "outside its validity window" in push.stderr
    assert _tip(bare) == before


# -- the trust file is read as OpenSSH reads it ------------------------------------------------


def _pub() -> str:
    from catalytic_hooks.bundle.sshsig import public_line

    from .helpers import signer

    return public_line(signer().public_hex)


@pytest.mark.parametrize("sep", ["\r", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", "\u2029"])
def test_a_key_inside_a_comment_line_is_not_trusted(sep: str) -> None:
    """`str.splitlines` split at these too, so a key written after one of them inside a line
    OpenSSH (and a reviewer) reads as a comment was trusted."""
    from catalytic_hooks.bundle.trust import TrustSet, parse

    from .helpers import signer

    text = f'# retired, do not trust:{sep}alice namespaces="catalytic" {_pub()}\n'
    assert TrustSet(parse(text), "t").lookup(signer().validator_id)[0] is False


@pytest.mark.parametrize(
    "options, after",
    [
        ('namespaces="catalytic",valid-before="20200101Z"', " valid-before=2099-01-01"),
        ('namespaces="catalytic",valid-before="20200101Z",valid-before="20990101Z"', ""),
        ('namespaces="git",namespaces="catalytic"', ""),
    ],
    ids=["bound-after-the-key", "bound-twice", "namespaces-twice"],
)
def test_a_key_line_cannot_give_itself_a_second_bound_or_namespace(
    options: str, after: str
) -> None:
    """OpenSSH reads what follows the key as a comment and refuses an option given twice; the
    last of each won here, so an expired key, or one for amendments only (`git`), verified
    bundles."""
    from catalytic_hooks.bundle.trust import TrustSet, parse
    from catalytic_hooks.core.errors import CatalyticError

    from .helpers import signer

    text = f"alice {options} {_pub()}{after}\n"
    try:
        ok = TrustSet(parse(text), "t").lookup(signer().validator_id)[0]
    except CatalyticError as exc:
        assert exc.code.value == "CONFIG_INVALID" and "twice" in exc.message
    else:
        assert ok is False


def test_a_bound_without_z_is_local_time_as_openssh_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from catalytic_hooks.bundle.trust import parse_date

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse_date("20261206000000").isoformat() == "2026-12-05T15:00:00+00:00"
        assert parse_date("20261206000000Z").isoformat() == "2026-12-06T00:00:00+00:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
