"""SPECTRUM-06 restore: conformance, every code, escape attempts, all-or-nothing, locking,
worktrees, progress."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.restore.chain import restore_chain
from catalytic_hooks.restore.engine import restore_bundle
from catalytic_hooks.restore.transaction import Callbacks, Plan, root_lock

from .helpers import CONFORMANCE, SEED_B, catalytic, git, make_bundle, resign, rewrite, tree

VECTOR = CONFORMANCE / "spectrum-single" / "project_root"
VECTOR_RUN = VECTOR / "LAW/CONTRACTS/_runs/run-single-001"
EXPECTED = CONFORMANCE / "spectrum-single" / "expected_restore"

FILES = {"out/a.txt": b"alpha\n", "out/deep/b.bin": bytes(range(256)) * 8, "c.txt": b""}


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    make_bundle(root / "_runs/r1", root, FILES)
    return root


@pytest.fixture
def target(tmp_path: Path) -> Path:
    t = tmp_path / "target"
    t.mkdir()
    (t / "keep.txt").write_bytes(b"pre-existing\n")
    return t


def restore(proj: Path, target: Path, **kw: object) -> dict:
    return restore_bundle(proj / "_runs/r1", target, project_root=proj, allow_untrusted=True, **kw)  # type: ignore[arg-type]


def expect_code(code: str, fn, *a, **kw):  # type: ignore[no-untyped-def]
    with pytest.raises(CatalyticError) as err:
        fn(*a, **kw)
    assert err.value.code.value == code, err.value
    return err.value


def test_conformance_vector_byte_identical(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    proc = catalytic(
        "restore",
        "bundle",
        str(VECTOR_RUN),
        "--project-root",
        str(VECTOR),
        "--restore-root",
        str(root),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("RESTORE_MANIFEST.json", "RESTORE_REPORT.json"):
        assert (root / name).read_bytes() == (EXPECTED / name).read_bytes()
    key = "NAVIGATION/CORTEX/_generated/ags_vectors/run-single-001/out/result.txt"
    assert (root / key).read_bytes() == (VECTOR / key).read_bytes()
    assert sorted(p.name for p in root.iterdir()) == [
        "NAVIGATION",
        "RESTORE_MANIFEST.json",
        "RESTORE_REPORT.json",
    ]


def test_single_restore_contents_and_modes(proj: Path, target: Path) -> None:
    # The source's mode is unsigned metadata: neither setuid nor the executable bit is copied;
    # the restoring user's umask decides (files 0666 & ~umask, directories 0777 & ~umask).
    os.chmod(proj / "out/a.txt", 0o4755)
    resign(proj / "_runs/r1")
    old = os.umask(0o027)
    try:
        doc = restore(proj, target)
    finally:
        os.umask(old)
    assert doc["restored_files_count"] == 3
    for k, v in FILES.items():
        assert (target / k).read_bytes() == v
    assert stat.S_IMODE(os.stat(target / "out/a.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(target / "c.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(target / "out/deep").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(target / "RESTORE_MANIFEST.json").st_mode) == 0o640
    manifest = json.loads((target / "RESTORE_MANIFEST.json").read_text())
    assert [e["relative_path"] for e in manifest["entries"]] == [
        "c.txt",
        "out/a.txt",
        "out/deep/b.bin",
    ]
    assert (target / "keep.txt").read_bytes() == b"pre-existing\n"
    assert not [p for p in target.iterdir() if p.name.startswith(".spectrum06")]


def test_dry_run_writes_nothing(proj: Path, target: Path) -> None:
    before = tree(target)
    doc = restore(proj, target, dry_run=True)
    assert doc["would_restore_files_count"] == 3
    assert doc["would_restore_bytes"] == sum(len(v) for v in FILES.values())
    assert doc["would_restore_paths"] == ["c.txt", "out/a.txt", "out/deep/b.bin"]
    assert tree(target) == before
    (target / "c.txt").write_bytes(b"x")
    expect_code("TARGET_EXISTS", restore, proj, target, dry_run=True)


# -- every specification code -----------------------------------------------------------------


def test_ineligible(proj: Path, target: Path, tmp_path: Path) -> None:
    before = tree(target)
    rewrite(
        proj / "_runs/r1/PROOF.json", lambda d: d.update(restoration_result={"verified": False})
    )
    e = expect_code("RESTORE_INELIGIBLE", restore, proj, target)
    assert e.details["reason"] == "PROOF_NOT_VERIFIED" and e.details["phase"] == "PREFLIGHT"
    empty = tmp_path / "e"
    make_bundle(empty / "_runs/r1", empty, {})
    e = expect_code("RESTORE_INELIGIBLE", restore, empty, target)
    assert e.details["reason"] == "HASHES_EMPTY"
    other = tmp_path / "o"
    make_bundle(other / "_runs/r1", other, FILES, seed=SEED_B)
    e = expect_code(
        "RESTORE_INELIGIBLE", restore_bundle, other / "_runs/r1", target, project_root=other
    )
    assert e.details["reason"] == "UNTRUSTED"
    assert tree(target) == before


@pytest.mark.parametrize("root", ["relative/dir", "/nonexistent/dir", "FILE", "LINK"])
def test_target_invalid(proj: Path, tmp_path: Path, root: str) -> None:
    (tmp_path / "FILE").write_text("f")
    os.symlink(tmp_path, tmp_path / "LINK")
    path = tmp_path / root if root in ("FILE", "LINK") else Path(root)
    e = expect_code("RESTORE_TARGET_INVALID", restore, proj, path)
    assert e.details["phase"] == "PREFLIGHT"


def test_planted_symlinked_directory(proj: Path, target: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, target / "out")
    before = tree(target)
    e = expect_code("PATH_ESCAPE_DETECTED", restore, proj, target)
    assert e.details["reason"] == "SYMLINK_ESCAPE"
    assert tree(outside) == {} and tree(target) == before


@pytest.mark.parametrize("key", ["RESTORE_MANIFEST.json", "RESTORE_REPORT.json"])
def test_reserved_name(tmp_path: Path, target: Path, key: str) -> None:
    p = tmp_path / "p"
    make_bundle(p / "_runs/r1", p, {key: b"sneaky"})
    e = expect_code("PATH_ESCAPE_DETECTED", restore, p, target)
    assert e.details["reason"] == "RESERVED_NAME"


@pytest.mark.parametrize(
    "key", ["../escape.txt", "/abs/escape.txt", "a\\b.txt", "nul\x00.txt", "a//b.txt", "./a.txt"]
)
def test_escape_keys_refused_nothing_written(tmp_path: Path, target: Path, key: str) -> None:
    p = tmp_path / "p"
    make_bundle(
        p / "_runs/r1",
        p,
        {"ok.txt": b"ok"},
        hashes={
            "ok.txt": "sha256:" + hashlib.sha256(b"ok").hexdigest(),
            key: "sha256:" + hashlib.sha256(b"x").hexdigest(),
        },
    )
    before, parent_before = tree(target), tree(tmp_path)
    with pytest.raises(CatalyticError) as err:
        restore(p, target)
    assert err.value.code.value in ("RESTORE_INELIGIBLE", "PATH_ESCAPE_DETECTED")
    assert tree(target) == before and tree(tmp_path) == parent_before
    proc = catalytic(
        "restore",
        "bundle",
        str(p / "_runs/r1"),
        "--project-root",
        str(p),
        "--restore-root",
        str(target),
        "--allow-untrusted",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_symlinked_source_refused(proj: Path, target: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(FILES["out/a.txt"])
    (proj / "out/a.txt").unlink()
    os.symlink(secret, proj / "out/a.txt")
    e = expect_code("RESTORE_INELIGIBLE", restore, proj, target)
    assert e.details["reason"] == "OUTPUT_MISSING"


def test_source_missing_after_verification(proj: Path, target: Path) -> None:
    before = tree(target)
    callbacks = Callbacks(after_plan=lambda plan: (proj / "out/a.txt").unlink())
    e = expect_code("SOURCE_MISSING", restore, proj, target, callbacks=callbacks)
    assert e.details["phase"] == "EXECUTE"
    assert tree(target) == before


def test_target_exists(proj: Path, target: Path) -> None:
    (target / "out").mkdir()
    (target / "out/a.txt").write_bytes(b"mine")
    before = tree(target)
    e = expect_code("TARGET_EXISTS", restore, proj, target)
    assert e.details["phase"] == "PLAN"
    assert tree(target) == before


def test_target_appearing_during_restore_is_not_clobbered(proj: Path, target: Path) -> None:
    def sneak(plan: Plan) -> None:
        (target / "out").mkdir(exist_ok=True)
        (target / "out/deep").mkdir(exist_ok=True)
        (target / "out/deep/b.bin").write_bytes(b"someone else's")

    e = expect_code("TARGET_EXISTS", restore, proj, target, callbacks=Callbacks(after_stage=sneak))
    assert e.details["reason"] == "RACE"
    assert (target / "out/deep/b.bin").read_bytes() == b"someone else's"
    assert not (target / "out/a.txt").exists() and not (target / "c.txt").exists()
    assert (target / "keep.txt").read_bytes() == b"pre-existing\n"


def test_copy_integrity(proj: Path, target: Path) -> None:
    before = tree(target)
    callbacks = Callbacks(after_plan=lambda plan: (proj / "out/a.txt").write_bytes(b"changed!"))
    e = expect_code("COPY_INTEGRITY_FAILED", restore, proj, target, callbacks=callbacks)
    assert e.details["path"] == "out/a.txt"
    assert tree(target) == before


def test_post_restore_verification(proj: Path, target: Path) -> None:
    before = tree(target)

    def corrupt(plan: Plan) -> None:
        with open(target / "out/a.txt", "r+b") as fh:
            fh.write(b"X")

    e = expect_code(
        "RESTORE_VERIFICATION_FAILED",
        restore,
        proj,
        target,
        callbacks=Callbacks(after_place=corrupt),
    )
    assert e.details["phase"] == "VERIFY"
    assert tree(target) == before


def test_directory_swapped_for_symlink_during_restore(
    proj: Path, target: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()

    def swap(plan: Plan) -> None:
        (target / "out").mkdir(exist_ok=True)
        shutil.rmtree(target / "out")
        os.symlink(outside, target / "out")

    with pytest.raises(CatalyticError):
        restore(proj, target, callbacks=Callbacks(after_stage=swap))
    assert tree(outside) == {}
    assert (target / "keep.txt").read_bytes() == b"pre-existing\n"
    assert not (target / "c.txt").exists() and not (target / "RESTORE_MANIFEST.json").exists()


def test_concurrent_restore_fails_cleanly(proj: Path, target: Path) -> None:
    before = tree(target)
    with root_lock(target):
        proc = catalytic(
            "restore",
            "bundle",
            str(proj / "_runs/r1"),
            "--project-root",
            str(proj),
            "--restore-root",
            str(target),
            "--allow-untrusted",
            "--json",
            cwd=proj,
        )
        assert proc.returncode == 2 and json.loads(proc.stdout)["code"] == "RESTORE_LOCKED"
        assert tree(target) == before
    assert (
        catalytic(
            "restore",
            "bundle",
            str(proj / "_runs/r1"),
            "--project-root",
            str(proj),
            "--restore-root",
            str(target),
            "--allow-untrusted",
            cwd=proj,
        ).returncode
        == 0
    )


# -- chains -----------------------------------------------------------------------------------


@pytest.fixture
def chain_proj(tmp_path: Path) -> Path:
    root = tmp_path / "cp"
    make_bundle(root / "_runs/a", root, {"out/a.txt": b"A", "shared.txt": b"1"})
    make_bundle(root / "_runs/b", root, {"out/b.txt": b"B"})
    return root


def test_chain_restore(chain_proj: Path, target: Path) -> None:
    runs = [chain_proj / "_runs/a", chain_proj / "_runs/b"]
    dry = restore_chain(runs, target, project_root=chain_proj, allow_untrusted=True, dry_run=True)
    assert dry["would_restore_paths"] == ["a/out/a.txt", "a/shared.txt", "b/out/b.txt"]
    doc = restore_chain(runs, target, project_root=chain_proj, allow_untrusted=True)
    assert (target / "a/out/a.txt").read_bytes() == b"A"
    assert (target / "b/out/b.txt").read_bytes() == b"B"
    for rid in ("a", "b"):
        report = json.loads((target / rid / "RESTORE_REPORT.json").read_text())
        assert report["chain_root"] == doc["chain_root"] == dry["chain_root"]
    assert sorted(p.name for p in target.iterdir()) == ["a", "b", "keep.txt"]
    e = expect_code(
        "TARGET_EXISTS", restore_chain, runs, target, project_root=chain_proj, allow_untrusted=True
    )
    assert e.details["run_id"] == "a"


def test_chain_failure_rolls_back_every_run(chain_proj: Path, target: Path) -> None:
    before = tree(target)
    calls = []

    def fail_second(plan: Plan) -> None:
        calls.append(plan.root.name)
        if plan.root.name == "b":
            (chain_proj / "out/b.txt").write_bytes(b"tampered after verification")

    runs = [chain_proj / "_runs/a", chain_proj / "_runs/b"]
    e = expect_code(
        "CHAIN_RESTORE_FAILED",
        restore_chain,
        runs,
        target,
        project_root=chain_proj,
        allow_untrusted=True,
        callbacks=Callbacks(after_plan=fail_second),
    )
    assert calls == ["a", "b"]
    assert e.details["reason"] == "COPY_INTEGRITY_FAILED" and e.details["run_id"] == "b"
    assert tree(target) == before


@pytest.mark.parametrize("how", ["named", "linked"])
def test_a_chain_run_named_dot_git_is_refused_before_anything_is_written(
    tmp_path: Path, target: Path, how: str
) -> None:
    """Each run goes into <root>/<run id>: a run directory named `.git` (or a link so named to
    an ordinary run) made the restore root a repository whose restored `config` set
    `core.fsmonitor`, a command the next `git status` there ran."""
    proj = tmp_path / "p"
    cfg = b'[core]\n\trepositoryformatversion = 0\n\tfsmonitor = "touch PWNED; false"\n'
    outputs = {"HEAD": b"ref: refs/heads/main\n", "config": cfg, "refs/heads/k": b""}
    if how == "named":
        run = make_bundle(proj / "_runs/.git", proj, outputs)
    else:
        make_bundle(proj / "_runs/ok", proj, outputs)
        run = proj / "links/.git"
        run.parent.mkdir()
        run.symlink_to(proj / "_runs/ok")
    before = tree(target)
    e = expect_code(
        "RESTORE_INELIGIBLE", restore_chain, [run], target, project_root=proj, allow_untrusted=True
    )
    assert e.details["reason"] == "CHAIN_RUN_ID" and e.details["run_id"] == ".git"
    assert tree(target) == before and not (target / ".git").exists()


def test_a_run_subfolder_someone_else_makes_meanwhile_is_theirs(
    chain_proj: Path, target: Path
) -> None:
    """`b` appears in the root while `a` is being restored: the chain stops with TARGET_EXISTS
    and rolls back `a` only. Before, `mkdir` failed with a bare FileExistsError (INTERNAL) and
    the rollback removed `b`, the other party's files with it."""

    def someone_else(plan: Plan) -> None:
        if plan.root.name == "a":
            (target / "b").mkdir()
            (target / "b/precious.txt").write_bytes(b"theirs")

    before = tree(target)
    runs = [chain_proj / "_runs/a", chain_proj / "_runs/b"]
    e = expect_code(
        "TARGET_EXISTS",
        restore_chain,
        runs,
        target,
        project_root=chain_proj,
        allow_untrusted=True,
        callbacks=Callbacks(after_stage=someone_else),
    )
    assert e.details["run_id"] == "b"
    assert (target / "b/precious.txt").read_bytes() == b"theirs"
    assert not (target / "a").exists()
    assert tree(target) == {**before, "b/precious.txt": tree(target)["b/precious.txt"]}


def test_a_chain_rollback_removes_only_the_directories_it_made(target: Path) -> None:
    """A journal records a run subfolder before its `mkdir` and its identity right after: a
    crash between the two leaves a name with no identity, which may since have been made by
    someone else. The rollback removes such a one only while it is empty."""
    from catalytic_hooks.restore.chain_journal import rollback_chain

    for rid in ("empty", "full", "swapped"):
        (target / rid).mkdir()
    (target / "full/theirs.txt").write_bytes(b"x")
    (target / "swapped/ours.txt").write_bytes(b"y")
    made = os.stat(target / "swapped")
    (target / "swapped").rename(target / "gone")
    (target / "swapped").mkdir()
    (target / "swapped/theirs.txt").write_bytes(b"z")
    journal = {
        "created": ["empty", "full", "swapped"],
        "runs": ["empty", "full", "swapped"],
        "created_ids": {"swapped": [made.st_dev, made.st_ino]},
    }
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rollback_chain(fd, journal)
    finally:
        os.close(fd)
    assert not (target / "empty").exists()
    assert (target / "full/theirs.txt").read_bytes() == b"x"
    assert (target / "swapped/theirs.txt").read_bytes() == b"z"


def _deep(top: Path, first: str, levels: int) -> None:
    """`top/first/d/d/...`, `levels` directories below `first`, made by fd (no path is long)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    name = first
    for _ in range(levels + 1):
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, name = sub, "d"
    os.close(fd)


def test_a_stale_staging_tree_of_any_depth_is_removed(proj: Path, target: Path) -> None:
    """1,100 directories below a name the restore takes for its own stale staging: the
    removal recursed past Python's limit, and every restore into the root and every
    `restore recover` failed with INTERNAL. The removal now walks by fd at any depth."""
    planted = ".spectrum06_staging_" + "0" * 32
    _deep(target, planted, 1100)
    try:
        proc = catalytic("restore", "recover", str(target), "--json", cwd=proj)
        doc = json.loads(proc.stdout)
        assert (proc.returncode, doc["code"]) == (0, "PASS"), proc.stdout[:500]
        assert doc["details"]["stale_staging_removed"] == [planted]
        assert not (target / planted).exists()
    finally:  # rm walks it iteratively; pytest's own clean-up would recurse like the bug did
        subprocess.run(["rm", "-rf", str(target / planted)], check=True)


def test_an_output_key_too_deep_to_stage_is_refused_before_anything_is_written(
    tmp_path: Path, target: Path
) -> None:
    """A key 1,100 directories deep verifies (the format sets no depth) but staged it recursed
    past Python's limit (INTERNAL). Past 128 directories a key is now refused by name."""
    proj = tmp_path / "deep"
    key = "d/" * 200 + "f.txt"
    run = make_bundle(proj / "_runs/r1", proj, {key: b"deep\n"})
    before = tree(target)
    e = expect_code(
        "PATH_ESCAPE_DETECTED", restore_bundle, run, target, project_root=proj, allow_untrusted=True
    )
    assert e.details["reason"] == "TOO_DEEP"
    assert tree(target) == before


def test_chain_eligibility_before_any_write(chain_proj: Path, target: Path) -> None:
    (chain_proj / "out/b.txt").write_bytes(b"tampered")
    before = tree(target)
    runs = [chain_proj / "_runs/a", chain_proj / "_runs/b"]
    e = expect_code(
        "RESTORE_INELIGIBLE",
        restore_chain,
        runs,
        target,
        project_root=chain_proj,
        allow_untrusted=True,
    )
    assert e.details["run_id"] == "b" and e.details["reason"] == "HASH_MISMATCH"
    assert tree(target) == before
    e = expect_code(
        "RESTORE_INELIGIBLE",
        restore_chain,
        [runs[0], runs[0]],
        target,
        project_root=chain_proj,
        allow_untrusted=True,
    )
    assert e.details["reason"] == "CHAIN_DUPLICATE_RUN"
    proc = catalytic(
        "restore",
        "chain",
        str(runs[0]),
        "--restore-root",
        str(target),
        "--project-root",
        str(chain_proj),
        "--allow-untrusted",
        "--json",
        cwd=target,
    )
    assert proc.returncode == 0 and (target / "a/out/a.txt").exists()


# -- worktrees --------------------------------------------------------------------------------

RUN_POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'


def _key(tmp_path: Path) -> Path:
    from .helpers import key_file

    return key_file(tmp_path)


def test_restore_into_new_worktree(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"src.txt": "s"}, policy=RUN_POLICY)
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert (
        catalytic(
            "run",
            "--run-id",
            "w1",
            "--sign",
            str(_key(tmp_path)),
            "--",
            "sh",
            "-c",
            "mkdir -p outputs && echo restored > outputs/r.txt",
            cwd=repo,
        ).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run w1")
    wt = tmp_path / "wt"
    env = {
        **os.environ,
        "GIT_INDEX_FILE": str(tmp_path / "bogus-index"),
        "GIT_DIR": str(tmp_path / "bogus-dir"),
    }  # as inside a hook: must not leak
    proc = catalytic(
        "restore",
        "bundle",
        str(repo / "_runs/w1"),
        "--worktree",
        str(wt),
        "--allow-untrusted",
        "--json",
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)["details"]
    assert doc["rev"] == base  # the commit recorded in TASK_SPEC
    assert (wt / "outputs/r.txt").read_text() == "restored\n"
    assert (wt / "src.txt").read_text() == "s"
    assert (wt / "RESTORE_MANIFEST.json").exists()
    assert str(wt) in git(repo, "worktree", "list").stdout
    exists = catalytic(
        "restore",
        "bundle",
        str(repo / "_runs/w1"),
        "--worktree",
        str(wt),
        "--allow-untrusted",
        "--json",
        cwd=repo,
    )
    assert exists.returncode == 1 and json.loads(exists.stdout)["code"] == "RESTORE_TARGET_INVALID"


def test_failed_worktree_restore_removes_the_worktree(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"src.txt": "s"}, policy=RUN_POLICY)
    assert (
        catalytic(
            "run",
            "--run-id",
            "w2",
            "--sign",
            str(_key(tmp_path)),
            "--",
            "sh",
            "-c",
            "mkdir -p outputs && echo x > outputs/x.txt",
            cwd=repo,
        ).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run w2")
    wt = tmp_path / "wt2"
    proc = catalytic(
        "restore",
        "bundle",
        str(repo / "_runs/w2"),
        "--worktree",
        str(wt),
        "--rev",
        "HEAD",
        "--allow-untrusted",
        "--json",
        cwd=repo,
    )
    assert proc.returncode == 1  # HEAD already has outputs/x.txt committed
    assert json.loads(proc.stdout)["code"] == "TARGET_EXISTS"
    assert not wt.exists()
    assert str(wt) not in git(repo, "worktree", "list").stdout


# -- progress ---------------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    import pty

    root = tmp_path / "big"
    make_bundle(root / "_runs/r1", root, {f"f{i}.bin": os.urandom(1 << 20) for i in range(6)})
    quiet_target = tmp_path / "t1"
    quiet_target.mkdir()
    quiet = catalytic(
        "restore",
        "bundle",
        str(root / "_runs/r1"),
        "--project-root",
        str(root),
        "--restore-root",
        str(quiet_target),
        "--allow-untrusted",
        cwd=tmp_path,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
    tty_target = tmp_path / "t2"
    tty_target.mkdir()
    master, slave = pty.openpty()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "restore",
            "bundle",
            str(root / "_runs/r1"),
            "--project-root",
            str(root),
            "--restore-root",
            str(tty_target),
            "--allow-untrusted",
        ],
        stderr=slave,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.returncode == 0
    assert b"restoring" in b"".join(chunks)


@pytest.fixture
def committed_run(make_repo) -> tuple[Path, str]:
    """A repository holding a committed run `w1` (one output) and its base commit."""
    repo = make_repo({"src.txt": "s"}, policy=RUN_POLICY)
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    make_bundle(repo / "_runs/w1", repo, {"outputs/o.txt": b"o\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run w1")
    return repo, head


def test_worktree_names_the_tool_keeps_are_refused_and_long_ones_work(
    committed_run: tuple[Path, str], tmp_path: Path
) -> None:
    """A DIR named like a partial directory would be swept by the next attempt as a dead one's
    (a finished restore deleted); a name of 220 characters failed (File name too long) when the
    partial directory's name carried it."""
    from catalytic_hooks.restore.engine import WorktreeTarget

    repo, head = committed_run
    e = expect_code(
        "RESTORE_TARGET_INVALID",
        restore_bundle,
        repo / "_runs/w1",
        WorktreeTarget(tmp_path / (".catalytic-partial-" + "a" * 32), head),
        allow_untrusted=True,
    )
    assert e.details["reason"] == "RESERVED_NAME"
    long = tmp_path / ("w" * 220)
    doc = restore_bundle(repo / "_runs/w1", WorktreeTarget(long, head), allow_untrusted=True)
    assert doc["worktree"] == str(long) and (long / "outputs/o.txt").read_bytes() == b"o\n"


def test_a_dead_partial_under_a_linked_parent_is_swept(
    committed_run: tuple[Path, str], tmp_path: Path
) -> None:
    """What a killed attempt left (an unlocked partial directory) is removed by the next one,
    also when DIR is named through a link to its parent; before, the removal refused the link
    and the partial stayed for ever."""
    from catalytic_hooks.restore.engine import WorktreeTarget

    repo, head = committed_run
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    dead = tmp_path / "real" / (".catalytic-partial-" + "0" * 32)
    (dead / "half").mkdir(parents=True)
    (dead / "half/file").write_bytes(b"x")
    restore_bundle(
        repo / "_runs/w1", WorktreeTarget(tmp_path / "link/wt", head), allow_untrusted=True
    )
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["wt"]


def test_a_worktree_git_left_locked_while_adding_is_removed(
    committed_run: tuple[Path, str], tmp_path: Path
) -> None:
    """git marks a worktree `locked` ("initializing") while it adds it; a kill then leaves that
    mark, and a single --force (and prune) kept it registered for ever."""
    from catalytic_hooks.git.repo import Repo
    from catalytic_hooks.git.worktree import remove_worktree

    repo, head = committed_run
    left = tmp_path / ".catalytic-partial-dead"
    git(repo, "worktree", "add", "-q", "--detach", str(left), head)
    git(repo, "worktree", "lock", "--reason", "initializing", str(left))
    remove_worktree(Repo.discover(repo), left)
    assert str(left) not in git(repo, "worktree", "list").stdout
    assert not left.exists()
