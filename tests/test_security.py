"""The judged never chooses its judge: each test reproduces an attack with real git, real keys and
real files, and asserts that the harm did not happen (SECURITY.md)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalytic_hooks.bundle.keys import signer_from_seed
from catalytic_hooks.bundle.model import DirSource
from catalytic_hooks.bundle.verify import verify_bundle
from catalytic_hooks.core.errors import CatalyticError

from .helpers import SEED_A, SEED_B, catalytic, git, key_file, make_bundle, write_files

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'


def _code(proc: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(proc.stdout)["code"])


# -- 2. the trust anchor belongs to the caller -------------------------------------------------


def test_a_downloaded_bundle_cannot_trust_itself(make_repo, tmp_path: Path) -> None:
    attacker = signer_from_seed(SEED_B)
    download = tmp_path / "download"
    make_bundle(download / "_runs/r1", download, {"out/x.txt": b"evil\n"}, seed=SEED_B)
    # The download carries a policy and a trust file that trust its own signer.
    write_files(
        download,
        {
            ".catalytic.toml": "",
            ".catalytic/allowed_validators": f"mallory id:{attacker.validator_id}\n",
        },
    )
    mine = make_repo({"a.txt": "a"}, policy=POLICY)
    verify = catalytic(
        "verify", str(download / "_runs/r1"), "--project-root", str(download), "--json", cwd=mine
    )
    assert verify.returncode == 1 and _code(verify) == "UNTRUSTED"
    assert json.loads(verify.stdout)["details"]["results"][0]["trusted"] is False
    target = tmp_path / "target"
    target.mkdir()
    restore = catalytic(
        "restore",
        "bundle",
        str(download / "_runs/r1"),
        "--restore-root",
        str(target),
        "--project-root",
        str(download),
        "--json",
        cwd=mine,
    )
    assert restore.returncode == 1 and _code(restore) == "RESTORE_INELIGIBLE"
    assert list(target.iterdir()) == []


def test_an_explicit_trust_file_is_the_anchor(make_repo, tmp_path: Path) -> None:
    run = make_bundle(tmp_path / "b/_runs/r1", tmp_path / "b", seed=SEED_A)
    mine = make_repo({"a.txt": "a"}, policy=POLICY)
    anchor = tmp_path / "anchor"
    anchor.write_text(f"alice id:{signer_from_seed(SEED_A).validator_id}\n")
    root = ["--project-root", str(tmp_path / "b")]
    refused = catalytic("verify", str(run), *root, "--json", cwd=mine)
    assert refused.returncode == 1 and _code(refused) == "UNTRUSTED"
    ok = catalytic("verify", str(run), *root, "--trust-file", str(anchor), "--json", cwd=mine)
    assert ok.returncode == 0 and _code(ok) == "PASS"


def test_restore_worktree_never_runs_the_repositorys_hooks(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"src.txt": "s"}, policy=POLICY)
    assert (
        catalytic(
            "run",
            "--run-id",
            "w1",
            "--sign",
            str(key_file(tmp_path)),
            "--",
            "sh",
            "-c",
            "mkdir -p outputs && echo r > outputs/r.txt",
            cwd=repo,
        ).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run")
    marker = tmp_path / "planted"
    hook = repo / ".git/hooks/post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    proc = catalytic(
        "restore",
        "bundle",
        str(repo / "_runs/w1"),
        "--worktree",
        str(tmp_path / "wt"),
        "--allow-untrusted",
        "--json",
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "wt/outputs/r.txt").read_text() == "r\n"
    assert not marker.exists()


# -- 4. restore bookkeeping is never taken from the target -------------------------------------


@pytest.mark.parametrize(
    "journal",
    [
        {"bundle_root": "x", "committed": False, "dirs": [], "placed": [], "staging": "../victim"},
        {"bundle_root": "x", "committed": True, "dirs": [], "placed": [], "staging": "VICTIM_ABS"},
        {
            "bundle_root": "x",
            "committed": False,
            "dirs": ["../victim"],
            "placed": [],
            "staging": ".spectrum06_staging_" + "a" * 32,
        },
    ],
    ids=["relative-staging", "absolute-staging", "escaping-dirs"],
)
def test_a_planted_journal_deletes_nothing(tmp_path: Path, journal: dict[str, object]) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    root = tmp_path / "root"
    root.mkdir()
    if journal["staging"] == "VICTIM_ABS":
        journal["staging"] = str(victim)
    name = ".spectrum06_journal_" + "a" * 32 + ".json"
    (root / name).write_text(json.dumps(journal))
    proc = catalytic("restore", "recover", str(root), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (victim / "precious.txt").read_text() == "keep me\n"
    doc = json.loads(proc.stdout)["details"]
    assert [r["name"] for r in doc["refused"]] == [name]
    assert (root / name).exists()  # not ours: left alone


def test_a_planted_chain_journal_deletes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    root = tmp_path / "root"
    root.mkdir()
    name = ".spectrum06_chain_" + "b" * 32 + ".json"
    (root / name).write_text(
        json.dumps(
            {"chain_root": "x", "committed": False, "created": [str(victim)], "runs": [str(victim)]}
        )
    )
    proc = catalytic("restore", "recover", str(root), "--json", cwd=tmp_path)
    assert proc.returncode == 0
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert json.loads(proc.stdout)["details"]["refused"][0]["name"] == name


def test_keys_are_probed_in_their_own_parent(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    make_bundle(proj / "_runs/r1", proj, {"newdir/x": b"new\n"})
    target = tmp_path / "target"
    target.mkdir()
    (target / "x").write_text("an unrelated file at the top\n")
    proc = catalytic(
        "restore",
        "bundle",
        str(proj / "_runs/r1"),
        "--restore-root",
        str(target),
        "--project-root",
        str(proj),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout
    assert (target / "newdir/x").read_bytes() == b"new\n"
    assert (target / "x").read_text() == "an unrelated file at the top\n"


@pytest.mark.parametrize(
    "key",
    [
        ".git/hooks/pre-commit",
        ".GIT/config",
        "a/.git./x",
        "git~1/hooks/post-checkout",
        "sub/.Git /x",
    ],
)
def test_no_output_key_names_git_directory(tmp_path: Path, key: str) -> None:
    proj = tmp_path / "proj"
    make_bundle(proj / "_runs/r1", proj, {key: b"#!/bin/sh\necho owned\n"})
    with pytest.raises(CatalyticError) as info:
        verify_bundle(DirSource(proj / "_runs/r1", proj))
    assert info.value.code.value == "PATH_ESCAPE_DETECTED"
    target = tmp_path / "target"
    target.mkdir()
    proc = catalytic(
        "restore",
        "bundle",
        str(proj / "_runs/r1"),
        "--restore-root",
        str(target),
        "--project-root",
        str(proj),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and _code(proc) == "RESTORE_INELIGIBLE"
    assert list(target.iterdir()) == []


# -- 6. submodules ------------------------------------------------------------------------------


def test_an_ignored_submodule_bump_is_still_a_finding(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=POLICY)
    old, new = "1" * 40, "2" * 40
    (repo / ".gitmodules").write_text(
        '[submodule "sub"]\n\tpath = sub\n\turl = ./sub\n\tignore = all\n'
    )
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{old},sub")
    git(repo, "add", ".gitmodules")
    git(repo, "commit", "-q", "-m", "submodule")
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    git(repo, "update-index", "--cacheinfo", f"160000,{new},sub")
    git(repo, "commit", "-q", "-m", "bump")
    proc = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert proc.returncode == 1
    paths = [f["path"] for f in json.loads(proc.stdout)["details"]["findings"]]
    assert paths == ["sub"]


# -- 7. the chronicle is append-only in fact ------------------------------------------------------


def test_a_committed_symlink_cannot_redirect_the_chronicle(make_repo, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"")  # e.g. someone's empty log, or a file the attacker wants to grow
    repo = make_repo({"a.txt": "a"}, policy=POLICY)
    (repo / ".catalytic").mkdir()
    os.symlink(victim, repo / ".catalytic/chronicle.jsonl")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "plant")
    proc = catalytic("run", "--run-id", "r", "--json", "--", "true", cwd=repo)
    assert proc.returncode == 1 and _code(proc) == "CHRONICLE_INVALID"
    assert victim.read_bytes() == b""


# -- 8. chained hooks get their arguments ---------------------------------------------------------


def test_a_chained_pre_push_hook_gets_gits_arguments_and_stdin(make_repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = make_repo({"a.txt": "a"}, policy='protected_roots = ["data"]\n')
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")  # the baseline, pushed before the hooks
    old = git(repo, "rev-parse", "HEAD").stdout.strip()
    record = tmp_path / "record"
    hook = repo / ".git/hooks/pre-push"
    hook.write_text(f'#!/bin/sh\necho "$1|$2" > {record}\ncat >> {record}\n')
    hook.chmod(0o755)
    assert catalytic("install", "--force", cwd=repo).returncode == 0
    git(repo, "commit", "-q", "--allow-empty", "-m", "next")
    push = git(repo, "push", "-q", "origin", "main", check=False)
    assert push.returncode == 0, push.stderr
    lines = record.read_text().splitlines()
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert lines[0] == f"origin|{remote}"
    assert lines[1] == f"refs/heads/main {head} refs/heads/main {old}"


# -- 9. an edited output is not a corrupt bundle ---------------------------------------------------


def test_where_a_mismatching_output_was_read_decides_corrupt_or_edited(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    run = make_bundle(proj / "_runs/r1", proj, {"out/a.txt": b"a\n"})
    (proj / "out/a.txt").write_bytes(b"edited\n")
    with pytest.raises(CatalyticError) as edited:
        verify_bundle(DirSource(run, proj))
    assert edited.value.code.value == "HASH_MISMATCH"
    assert edited.value.details["source"] == "project"
    # The same mismatch in the bundle's own content store is the bundle's bytes: corrupt.
    ref = "sha256:" + hashlib.sha256(b"a\n").hexdigest()
    stored = run / "objects/sha256" / ref[7:9] / ref[9:]
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"rotted\n")
    with pytest.raises(CatalyticError) as corrupt:
        verify_bundle(DirSource(run, proj))
    assert corrupt.value.details["source"] == "bundle store"


# -- 10. small holes ------------------------------------------------------------------------------


def test_a_fifo_output_does_not_hang_verification(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    run = make_bundle(proj / "_runs/r1", proj, {"out/a.txt": b"a\n"})
    (proj / "out/a.txt").unlink()
    os.mkfifo(proj / "out/a.txt")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "verify",
            str(run),
            "--project-root",
            str(proj),
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and _code(proc) == "OUTPUT_MISSING"


@pytest.mark.parametrize(
    "point",
    [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ],
    ids=["y=0", "identity", "order-8", "y=p (non-canonical)"],
)
def test_weak_public_keys_are_refused(tmp_path: Path, point: str) -> None:
    run = make_bundle(tmp_path / "_runs/r1", tmp_path, sign=False)
    vid = hashlib.sha256(bytes.fromhex(point)).hexdigest()
    (run / "VALIDATOR_IDENTITY.json").write_text(
        json.dumps({"algorithm": "ed25519", "public_key": point, "validator_id": vid})
    )
    (run / "SIGNED_PAYLOAD.json").write_text(
        json.dumps({"bundle_root": "0" * 64, "decision": "ACCEPT", "validator_id": vid})
    )
    (run / "SIGNATURE.json").write_text(
        json.dumps({"payload_type": "BUNDLE", "signature": "0" * 128, "validator_id": vid})
    )
    with pytest.raises(CatalyticError) as info:
        verify_bundle(DirSource(run, tmp_path))
    assert info.value.code.value == "KEY_INVALID"


def test_a_non_finite_number_is_malformed_not_a_crash(tmp_path: Path) -> None:
    run = make_bundle(tmp_path / "_runs/r1", tmp_path)
    (run / "STATUS.json").write_text('{"status": "success", "cmp01": "pass", "x": 1e400}')
    proc = catalytic("verify", str(run), "--project-root", str(tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 1 and _code(proc) == "ARTIFACT_MALFORMED"
