"""Crash safety: SIGKILL a real restore at many moments; after recovery the restore root is
byte-identical to before, or completely restored when the kill came after the commit point."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from catalytic_hooks.restore.engine import restore_bundle
from catalytic_hooks.restore.recovery import recover

from .helpers import catalytic, make_bundle, tree

# Every call that changes the disk; the child is killed right before the N-th one.
MUTATING = ("mkdir", "link", "write", "fsync", "rename", "unlink", "rmdir", "fchmod")


def bundle_with_many_files(base: Path, n: int) -> Path:
    rng = random.Random(7)
    files = {
        f"out/d{i % 5}/s{i % 3}/f{i:03d}.bin": rng.randbytes(rng.randint(0, 3000)) for i in range(n)
    }
    make_bundle(base / "_runs/r1", base, files)
    return base


def killed_at(n: int, work: Callable[[], object], names: tuple[str, ...] = MUTATING) -> int:
    """Fork; in the child, SIGKILL itself before the n-th call of `names` (the os functions that
    change the disk) and otherwise run `work` (fault injection at an exact instant, which no
    timer can hit reliably). Returns the child's wait status."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            count = [0]
            for name in names:
                real = getattr(os, name)

                def wrapper(*a, _real=real, **kw):  # type: ignore[no-untyped-def]
                    count[0] += 1
                    if count[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return _real(*a, **kw)

                setattr(os, name, wrapper)
            work()
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


def run_child_killed_at(n: int, proj: Path, root: Path) -> int:
    return killed_at(
        n, lambda: restore_bundle(proj / "_runs/r1", root, project_root=proj, allow_untrusted=True)
    )


def assert_untouched_or_complete(root: Path, before: dict, complete: dict) -> str:
    now = tree(root)
    assert not [k for k in now if ".spectrum06" in k], now.keys()
    if now == before:
        return "untouched"
    assert now == complete, "partial state after recovery"
    return "complete"


# 10 files in the default run (every step of restoring them), 24 with `-m slow`.
@pytest.mark.parametrize("files", [10, pytest.param(24, marks=pytest.mark.slow)])
def test_sigkill_at_every_filesystem_step(tmp_path: Path, files: int) -> None:
    proj = bundle_with_many_files(tmp_path / "proj", files)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "keep.txt").write_bytes(b"mine\n")
    restore_bundle(proj / "_runs/r1", reference, project_root=proj, allow_untrusted=True)
    complete = tree(reference)
    outcomes = []
    n = 1
    while True:
        root = tmp_path / f"t{n}"
        root.mkdir()
        (root / "keep.txt").write_bytes(b"mine\n")
        before = tree(root)
        status = run_child_killed_at(n, proj, root)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0
            assert tree(root) == complete
            break
        assert os.WTERMSIG(status) == signal.SIGKILL
        recover(root)
        outcomes.append(assert_untouched_or_complete(root, before, complete))
        # the next restore into a recovered root works
        if outcomes[-1] == "untouched" and n % 25 == 0:
            restore_bundle(proj / "_runs/r1", root, project_root=proj, allow_untrusted=True)
            assert tree(root) == complete
        n += 1
    assert len(outcomes) > 4 * files  # the kill points really covered the whole restore
    assert "untouched" in outcomes and "complete" in outcomes


def test_automatic_recovery_on_next_restore(tmp_path: Path) -> None:
    proj = bundle_with_many_files(tmp_path / "proj", 10)
    root = tmp_path / "root"
    root.mkdir()
    status = run_child_killed_at(40, proj, root)  # dies mid-way, before the commit point
    assert os.WIFSIGNALED(status)
    assert any(p.name.startswith(".spectrum06") for p in root.iterdir())
    restore_bundle(proj / "_runs/r1", root, project_root=proj, allow_untrusted=True)
    assert not any(p.name.startswith(".spectrum06") for p in root.iterdir())
    assert (root / "RESTORE_MANIFEST.json").exists()


def _timed_kill_trials(tmp_path: Path, n_files: int, delays: list[float]) -> list[str]:
    proj = bundle_with_many_files(tmp_path / "proj", n_files)
    reference = tmp_path / "reference"
    reference.mkdir()
    restore_bundle(proj / "_runs/r1", reference, project_root=proj, allow_untrusted=True)
    complete = tree(reference)
    outcomes = []
    for i, delay in enumerate(delays):
        root = tmp_path / f"k{i}"
        root.mkdir()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "catalytic_hooks",
                "restore",
                "bundle",
                str(proj / "_runs/r1"),
                "--project-root",
                str(proj),
                "--restore-root",
                str(root),
                "--allow-untrusted",
                "--json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rec = catalytic("restore", "recover", str(root), cwd=tmp_path)
        assert rec.returncode == 0, rec.stderr
        outcomes.append(assert_untouched_or_complete(root, {}, complete))
    return outcomes


def test_sigkill_real_cli_process_at_timed_moments(tmp_path: Path) -> None:
    # Measure how long a whole run takes, then spread kills over it.
    proj = bundle_with_many_files(tmp_path / "m", 150)
    root = tmp_path / "m-root"
    root.mkdir()
    t0 = time.perf_counter()
    catalytic(
        "restore",
        "bundle",
        str(proj / "_runs/r1"),
        "--project-root",
        str(proj),
        "--restore-root",
        str(root),
        "--allow-untrusted",
        cwd=tmp_path,
    )
    total = time.perf_counter() - t0
    # Five moments, most of them late, where the writes are (60 random ones: `-m slow` below).
    delays = [total * f for f in (0.5, 0.7, 0.85, 0.95, 1.2)]
    outcomes = _timed_kill_trials(tmp_path, 150, delays)
    assert set(outcomes) <= {"untouched", "complete"}


@pytest.mark.slow
def test_sigkill_stress_many_trials(tmp_path: Path) -> None:
    rng = random.Random(11)
    delays = [rng.uniform(0.1, 1.5) for _ in range(60)]
    outcomes = _timed_kill_trials(tmp_path, 600, delays)
    assert set(outcomes) <= {"untouched", "complete"}


def test_chain_restore_sigkill_then_recover(tmp_path: Path) -> None:
    from catalytic_hooks.restore.chain import restore_chain

    proj = tmp_path / "proj"
    for rid in ("a", "b", "c"):
        make_bundle(
            proj / "_runs" / rid,
            proj,
            {f"out/{rid}/{i}.txt": f"{rid}{i}".encode() for i in range(4)},
        )
    runs = [proj / "_runs" / rid for rid in ("a", "b", "c")]
    reference = tmp_path / "reference"
    reference.mkdir()
    restore_chain(runs, reference, project_root=proj, allow_untrusted=True)
    complete = tree(reference)
    outcomes = []
    n = 1
    while True:
        root = tmp_path / f"c{n}"
        root.mkdir()
        status = killed_at(
            n,
            lambda root=root: restore_chain(  # type: ignore[misc]
                runs, root, project_root=proj, allow_untrusted=True
            ),
        )
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0 and tree(root) == complete
            break
        recover(root)
        outcomes.append(assert_untouched_or_complete(root, {}, complete))
        n += 3  # every third filesystem call across three bundles
    assert len(outcomes) > 20 and "untouched" in outcomes


def test_an_archive_checkout_killed_at_any_moment_is_absent_or_whole(
    make_repo, tmp_path: Path
) -> None:
    """`restore bundle ARCHIVE --worktree DIR` SIGKILLed at many moments: DIR is absent, or
    whole (killed after it was renamed into place), and the next attempt succeeds and removes
    what the dead one left beside DIR. Before, DIR was left a checkout without its outputs,
    which `restore recover` called fine and every later attempt refused (WORKTREE_EXISTS)."""
    import json
    import shutil

    from catalytic_hooks.archive.create import create_archive

    from .helpers import git, inproc

    repo = make_repo({"data/x.csv": "1\n"}, name="src")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    outputs = {"outputs/o.bin": b"o" * 5000, "outputs/p.txt": b"p\n"}
    spec = json.dumps({"task_id": "k1", "git_commit": head}).encode()
    run = make_bundle(repo / "_runs/k1", repo, outputs, task_spec=spec)
    archive = tmp_path / "k1.zip"
    create_archive(run, archive, project_root=repo)
    wt = tmp_path / "wt"
    args = ("restore", "bundle", str(archive), "--worktree", str(wt), "--allow-untrusted")

    def whole() -> bool:
        return git(wt, "rev-parse", "HEAD").stdout.strip() == head and all(
            (wt / k).read_bytes() == v for k, v in outputs.items()
        )

    def work() -> None:
        if inproc(*args, cwd=tmp_path).returncode != 0:
            os._exit(4)

    n, kills = 1, 0
    while True:
        status = killed_at(n, work)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, status
            break  # the restore made fewer changes than n: it ran to the end
        assert os.WTERMSIG(status) == signal.SIGKILL
        kills += 1
        assert not wt.exists() or whole(), n
        shutil.rmtree(wt, ignore_errors=True)
        again = inproc(*args, cwd=tmp_path)
        assert again.returncode == 0, (n, again.stdout)
        assert whole()
        assert [p.name for p in tmp_path.iterdir() if "catalytic-partial" in p.name] == [], n
        shutil.rmtree(wt)
        n = n * 3 // 2 + 1
    assert kills >= 5  # the kills reached well into the restore


def test_a_linked_worktree_restore_killed_at_any_moment_is_absent_or_whole(
    make_repo, tmp_path: Path
) -> None:
    """`restore bundle RUN_DIR --worktree DIR` (a linked worktree of the run's repository)
    SIGKILLed at many moments: DIR is absent or whole, git lists no worktree the dead attempt
    registered once the next attempt has run, and that attempt succeeds."""
    from catalytic_hooks.restore.engine import WorktreeTarget

    from .helpers import git

    repo = make_repo(
        {"src.txt": "s"}, policy='durable_roots = ["outputs"]\nrun_roots = ["_runs"]\n'
    )
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    outputs = {"outputs/o.bin": b"o" * 5000, "outputs/p.txt": b"p\n"}
    make_bundle(repo / "_runs/w1", repo, outputs)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run w1")
    wt = tmp_path / "wt"

    def restore() -> None:
        restore_bundle(repo / "_runs/w1", WorktreeTarget(wt, head), allow_untrusted=True)

    def whole() -> bool:
        return all((wt / k).read_bytes() == v for k, v in outputs.items())

    def listed() -> list[str]:
        lines = git(repo, "worktree", "list", "--porcelain").stdout.splitlines()
        return [ln.split(" ", 1)[1] for ln in lines if ln.startswith("worktree ")][1:]

    n, kills = 1, 0
    while True:
        status = killed_at(n, restore)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, status
            break
        assert os.WTERMSIG(status) == signal.SIGKILL
        kills += 1
        assert not wt.exists() or whole(), n
        if wt.exists():
            git(repo, "worktree", "remove", "--force", str(wt))
        restore()
        assert whole()
        assert listed() == [str(wt.resolve())], n
        assert [p.name for p in tmp_path.iterdir() if "catalytic-partial" in p.name] == [], n
        git(repo, "worktree", "remove", "--force", str(wt))
        n = n * 3 // 2 + 1
    assert kills >= 5


@pytest.mark.parametrize("kind", ["run-directory", "archive"])
def test_two_restores_at_one_worktree_path_place_one(
    make_repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Restore A (in this process) is held between its check that DIR is free and its move
    into DIR; restore B (a process of its own) at the same DIR starts meanwhile. Before, B
    placed DIR in that window and A's `git worktree move` then put A's worktree inside B's (git
    moves into an existing directory, as mv does), both reporting DIR; from an archive A's
    rename failed INTERNAL. Now the check and the move hold the parent locked: B waits there,
    then finds DIR taken and is refused, its partial removed. (Holding A at that instant needs
    a wrapper around its move: no signal or file can stop a process between two lines.)"""
    import json
    import threading

    from catalytic_hooks.archive.create import create_archive
    from catalytic_hooks.archive.zipfmt import Limits
    from catalytic_hooks.bundle.trust import caller_anchor, trust_policy
    from catalytic_hooks.restore import archived, engine
    from catalytic_hooks.restore.archived import restore_archive
    from catalytic_hooks.restore.engine import WorktreeTarget

    from .helpers import git

    repo = make_repo(
        {"src.txt": "s"}, policy='durable_roots = ["outputs"]\nrun_roots = ["_runs"]\n'
    )
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    spec = json.dumps({"task_id": "w1", "git_commit": head}).encode()
    make_bundle(repo / "_runs/w1", repo, {"outputs/o.txt": b"o\n"}, task_spec=spec)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "run w1")
    archive = tmp_path / "w1.zip"
    create_archive(repo / "_runs/w1", archive, project_root=repo)
    wt = tmp_path / "wt"
    at_move, go = threading.Event(), threading.Event()

    def held(real):  # type: ignore[no-untyped-def]
        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            if Path(a[-1]) == wt.resolve():  # the move into DIR, nothing before it
                at_move.set()
                assert go.wait(120)
            return real(*a, **kw)

        return wrapper

    if kind == "archive":
        monkeypatch.setattr(archived.os, "rename", held(os.rename))
    else:
        monkeypatch.setattr(engine, "move_worktree", held(engine.move_worktree))
    outcome: list[object] = []

    def first() -> None:
        target = WorktreeTarget(wt, head)
        try:
            if kind == "archive":
                trust = trust_policy(caller_anchor(), allow_untrusted=True)
                outcome.append(restore_archive(archive, target, trust=trust, limits=Limits()))
            else:
                outcome.append(restore_bundle(repo / "_runs/w1", target, allow_untrusted=True))
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    source = str(archive) if kind == "archive" else str(repo / "_runs/w1")
    a = threading.Thread(target=first)
    a.start()
    b = None
    try:
        assert at_move.wait(60)
        b = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "catalytic_hooks",
                "restore",
                "bundle",
                source,
                "--worktree",
                str(wt),
                "--allow-untrusted",
                "--json",
            ],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while b.poll() is None and "lock" not in Path(f"/proc/{b.pid}/wchan").read_text():
            assert time.monotonic() < deadline, "B neither ended nor waited for the lock"
            time.sleep(0.01)
    finally:
        go.set()
        a.join(60)
    out, _ = b.communicate(timeout=120)
    (won,) = outcome
    assert isinstance(won, dict) and won["worktree"] == str(wt.resolve()), won
    refused = json.loads(out)
    assert (b.returncode, refused["code"]) == (1, "RESTORE_TARGET_INVALID"), out
    assert refused["details"]["reason"] == "WORKTREE_EXISTS"
    assert [p.name for p in wt.iterdir() if "catalytic-partial" in p.name] == []
    assert [p.name for p in tmp_path.iterdir() if "catalytic-partial" in p.name] == []
    assert (wt / "outputs/o.txt").read_bytes() == b"o\n"
