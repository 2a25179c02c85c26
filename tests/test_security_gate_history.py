"""What a ref update changes beyond the commits it brings: a ref pointed at an old commit must not
bring that commit's policy or trust file back as its judge, and a non-fast-forward update must not
undo a protected change that only a judged commit may make. Real bare repositories with the server
gate, real `git push`, real SSH-signed commits; each test pushes the attack first and asserts
what the server holds afterwards."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import catalytic, commit_all, git, push_unchecked

POLICY = 'durable_roots = ["outputs"]\n'
TRUST = ".catalytic/allowed_validators"
REVERTED = "data/x.csv: protected path changed outside durable roots by a non-fast-forward update"


def _rev(where: Path, rev: str) -> str:
    return git(where, "rev-parse", "--verify", "--quiet", rev, check=False).stdout.strip()


def _serve(repo: Path, tmp_path: Path) -> Path:
    """`repo`'s history as it is, pushed before the gate is installed (so it may hold what the
    gate would refuse now: it stands for history accepted under earlier rules)."""
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    proc = catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return bare


def _ssh_key(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key, " ".join((directory / f"{name}.pub").read_text().split()[:2])


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (OpenSSH)")
def test_a_ref_at_an_old_commit_does_not_bring_a_removed_key_back(
    make_repo, tmp_path: Path
) -> None:
    """mallory's key was in the trust file and was removed. A branch created at a commit from
    before the removal brings nothing new, so it is accepted; an amendment mallory signs on it
    was judged by that commit's trust file, and landed."""
    mallory, mallory_pub = _ssh_key(tmp_path, "mallory")
    _, alice_pub = _ssh_key(tmp_path, "alice")
    trusted = f'mallory namespaces="catalytic,git" {mallory_pub}\n'
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n", TRUST: trusted}, policy=POLICY)
    before_removal = _rev(repo, "HEAD")
    commit_all(repo, {TRUST: f'alice namespaces="catalytic,git" {alice_pub}\n'}, "drop mallory")
    bare = _serve(repo, tmp_path)
    assert push_unchecked(repo, "origin", f"{before_removal}:refs/heads/old").returncode == 0

    git(repo, "checkout", "-q", "-b", "old", before_removal)
    git(repo, "config", "gpg.format", "ssh")
    (repo / "data/x.csv").write_text("forged\n")
    git(
        repo, "commit", "-q", "--no-verify", "-am", "recalibrate", f"--gpg-sign={mallory}",
        "--trailer", "Catalytic-Amend: sensor 3 recalibrated",
    )  # fmt: skip
    push = push_unchecked(repo, "origin", "old")
    assert push.returncode != 0, push.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert "amendment refused" in push.stderr
    assert _rev(bare, "refs/heads/old") == before_removal
    # The same push as a tag: tags are judged by the default branch's policy too.
    tag = push_unchecked(repo, "origin", "HEAD:refs/tags/v0")
    assert tag.returncode != 0 and _rev(bare, "refs/tags/v0") == ""


def test_a_ref_at_an_old_commit_does_not_bring_a_laxer_policy_back(
    make_repo, tmp_path: Path
) -> None:
    """data was durable and the policy was tightened: a branch at the older commit, pushed onto,
    is judged by the default branch's policy, where data is protected."""
    repo = make_repo({"data/x.csv": "1\n"}, policy='durable_roots = ["outputs", "data"]\n')
    lax = _rev(repo, "HEAD")
    commit_all(repo, {".catalytic.toml": POLICY}, "data is protected from now on")
    bare = _serve(repo, tmp_path)
    assert push_unchecked(repo, "origin", f"{lax}:refs/heads/lax").returncode == 0
    git(repo, "checkout", "-q", "-b", "lax", lax)
    commit_all(repo, {"data/x.csv": "forged\n"}, "durable on lax")
    push = push_unchecked(repo, "origin", "lax")
    assert push.returncode != 0
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert _rev(bare, "refs/heads/lax") == lax
    # What the default branch's policy allows still lands on it.
    git(repo, "reset", "-q", "--hard", lax)
    tip = commit_all(repo, {"outputs/o.txt": "o\n"}, "an output")
    assert push_unchecked(repo, "origin", "lax").returncode == 0
    assert _rev(bare, "refs/heads/lax") == tip


@pytest.fixture
def amended(make_repo, tmp_path: Path) -> tuple[Path, Path, str, str]:
    """main: a base, then a protected change (an amendment accepted when it landed), then an
    output. The bare server holds it; the repository, the server, the base and the amendment."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    base = _rev(repo, "HEAD")
    amendment = commit_all(repo, {"data/x.csv": "2\n"}, "recalibrated (an accepted amendment)")
    commit_all(repo, {"outputs/o.txt": "p\n"}, "an output")
    return repo, _serve(repo, tmp_path), base, amendment


def test_a_rewind_does_not_undo_a_protected_change(
    amended: tuple[Path, Path, str, str],
) -> None:
    repo, bare, base, _ = amended
    tip = _rev(bare, "main")
    push = push_unchecked(repo, "origin", "--force", f"{base}:main")
    assert push.returncode != 0
    assert f"remote: {REVERTED}" in push.stderr
    assert _rev(bare, "main") == tip
    # A rewind onto another line of history (the amendment dropped by a rewrite) is the same.
    git(repo, "checkout", "-q", "-b", "rewritten", base)
    commit_all(repo, {"outputs/o.txt": "q\n"}, "another output")
    push = push_unchecked(repo, "origin", "--force", "rewritten:main")
    assert push.returncode != 0 and f"remote: {REVERTED}" in push.stderr
    assert _rev(bare, "main") == tip
    # Branches other than the default one too.
    assert push_unchecked(repo, "origin", f"{tip}:refs/heads/topic").returncode == 0
    push = push_unchecked(repo, "origin", "--force", f"{base}:refs/heads/topic")
    assert push.returncode != 0 and f"remote: {REVERTED}" in push.stderr
    assert _rev(bare, "refs/heads/topic") == tip


def test_a_rewind_that_only_drops_outputs_or_redoes_the_change_lands(
    amended: tuple[Path, Path, str, str],
) -> None:
    repo, bare, _, amendment = amended
    assert push_unchecked(repo, "origin", "--force", f"{amendment}:main").returncode == 0
    assert _rev(bare, "main") == amendment
    # A rebase onto a moved base keeps the protected change: nothing is undone.
    git(repo, "checkout", "-q", "-b", "topic", amendment)
    commit_all(repo, {"outputs/t.txt": "t\n"}, "topic output")
    assert push_unchecked(repo, "origin", "topic").returncode == 0
    git(repo, "checkout", "-q", "main")
    git(repo, "reset", "-q", "--hard", amendment)
    main = commit_all(repo, {"outputs/m.txt": "m\n"}, "main output")
    assert push_unchecked(repo, "origin", "main").returncode == 0
    git(repo, "checkout", "-q", "topic")
    git(repo, "rebase", "-q", "--no-verify", "main")
    assert _rev(repo, "topic~1") == main
    push = push_unchecked(repo, "origin", "--force", "topic")
    assert push.returncode == 0, push.stderr
    assert _rev(bare, "refs/heads/topic") == _rev(repo, "topic")


def test_the_pre_push_hook_and_ci_refuse_the_rewind_too(
    amended: tuple[Path, Path, str, str],
) -> None:
    repo, bare, base, _ = amended
    tip = _rev(bare, "main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "remote", "set-head", "origin", "main")
    assert catalytic("install", "--hook-type", "pre-push", "--force", cwd=repo).returncode == 0
    push = git(repo, "push", "--force", "origin", f"{base}:main", check=False)
    assert push.returncode != 0
    assert REVERTED in push.stderr and "remote:" not in push.stderr  # refused before sending
    assert _rev(bare, "main") == tip
    # CI after a force push: the provider's `before` is the old tip, not an ancestor.
    ci = catalytic("check", "--from-ref", tip, "--to-ref", base, cwd=repo)
    assert ci.returncode == 1 and REVERTED in ci.stdout + ci.stderr


def _tree_with(repo: Path, rev: str, name: bytes, blob: str) -> str:
    """`rev`'s root tree plus one entry of any name, written as git's tree format (`git mktree`
    refuses such names: this is what a hand-made pack can carry)."""
    entries = []
    for line in git(repo, "ls-tree", "-z", rev).stdout.split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            mode, _, oid = meta.split()
            entries.append((path.encode(), mode.encode(), bytes.fromhex(oid)))
    entries.append((name, b"100644", bytes.fromhex(blob)))

    def key(e: tuple[bytes, bytes, bytes]) -> bytes:
        return e[0] + (b"/" if e[1] == b"40000" else b"")

    entries.sort(key=key)
    data = b"".join(mode + b" " + path + b"\0" + oid for path, mode, oid in entries)
    return subprocess.run(
        ["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        cwd=repo, input=data, capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip


def test_a_tree_entry_git_would_not_check_out_never_reaches_the_gate(
    make_repo, tmp_path: Path
) -> None:
    """An entry named `outputs/../data/x.csv` reads as a path under the durable root; `install
    --server` turns on git's own object checks, which refuse it before the gate runs."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    bare = _serve(repo, tmp_path)
    assert git(bare, "config", "receive.fsckObjects").stdout.strip() == "true"
    doctor = catalytic("doctor", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert "receive.fsckObjects" in doctor.stdout
    blob = git(repo, "hash-object", "-w", "--stdin", input="forged\n").stdout.strip()
    tree = _tree_with(repo, "HEAD", b"outputs/../data/x.csv", blob)
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "durable?").stdout.strip()
    tip = _rev(bare, "main")
    push = push_unchecked(repo, "origin", f"{commit}:refs/heads/main")
    assert push.returncode != 0
    assert "fullPathname" in push.stderr or "full pathnames" in push.stderr, push.stderr
    assert _rev(bare, "main") == tip
    assert git(bare, "cat-file", "-e", commit, check=False).returncode != 0
    # With the setting turned off, doctor says so and how to turn it back on.
    git(bare, "config", "receive.fsckObjects", "false")
    doctor = catalytic("doctor", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert doctor.returncode != 0
    assert "receive.fsckObjects" in doctor.stdout and "config receive.fsckObjects true" in (
        doctor.stdout
    )


def test_a_submodule_under_a_run_root_is_refused(make_repo, tmp_path: Path) -> None:
    """A gitlink where a run would be: the run it names lives in another repository, so no
    bundle is ever verified, and whoever updates submodules gets an unverified run."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    bare = _serve(repo, tmp_path)
    tip = _rev(bare, "main")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{tip},_runs/run-1")
    git(repo, "commit", "-q", "--no-verify", "-m", "a run, elsewhere")
    push = push_unchecked(repo, "origin", "main")
    assert push.returncode != 0
    assert "remote: _runs/run-1: a submodule (gitlink) under a run root" in push.stderr
    assert _rev(bare, "main") == tip
