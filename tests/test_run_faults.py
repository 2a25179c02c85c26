"""A run's undo survives Ctrl-C, SIGTERM, SIGKILL and a full disk: real processes, real signals,
a real tmpfs. After each fault, the tracked and the untracked protected file are byte-identical
to before after at most one `catalytic recover`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.run.engine import RunOptions, run_operation

from .helpers import catalytic, git
from .test_restore_crash import killed_at

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
RAW, NOTES = b"id,value\n1,0.5\n", b"my notes, never committed\n"
# Changes a tracked and an untracked protected file, says it started, then keeps running.
MESSY = (
    "echo $$ > ../cmd.pid; echo tampered >> data/raw.csv; echo gone > data/notes.txt; "
    "mkdir -p _tmp && echo s > _tmp/s; touch ../started; sleep 60"
)


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo({"data/raw.csv": RAW, "src/a.py": "a = 1\n"}, policy=POLICY)
    (r / "data/notes.txt").write_bytes(NOTES)  # untracked, protected
    return r


def intact(repo: Path) -> bool:
    return (
        (repo / "data/raw.csv").read_bytes() == RAW
        and (repo / "data/notes.txt").read_bytes() == NOTES
        and not (repo / "_tmp").exists()
    )


def no_journal(repo: Path) -> bool:
    d = repo / ".git/catalytic/runs"
    return not d.exists() or not list(d.iterdir())


def start(repo: Path, *extra: str) -> subprocess.Popen[str]:
    """`catalytic run --restore` as its own process group (as a shell starts a foreground job),
    returned once the command is running."""
    (repo.parent / "started").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "run",
            "--run-id",
            "r1",
            "--restore",
            *extra,
            "--",
            "sh",
            "-c",
            MESSY,
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (repo.parent / "started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def command_gone(repo: Path) -> bool:
    pid = int((repo.parent / "cmd.pid").read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of a reaped-by-init process may linger a moment.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_stops_the_command_and_undoes_it(repo: Path, sig: int, code: int) -> None:
    proc = start(repo)
    os.killpg(proc.pid, sig)  # a terminal's Ctrl-C goes to the whole foreground group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert intact(repo) and no_journal(repo) and command_gone(repo)
    status = (repo / "_runs/r1/STATUS.json").read_text()
    assert '"status":"interrupted"' in status
    assert "then undoing its changes" in err


def test_a_second_ctrl_c_does_not_abort_the_undo(repo: Path) -> None:
    many = "for i in $(seq 1 1500); do echo $i > src/f$i.py; done; "
    git(repo, "add", "-A")
    (repo / "src").mkdir(exist_ok=True)
    for i in range(1, 1501):
        (repo / f"src/f{i}.py").write_text("original\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "many files")
    (repo.parent / "started").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "run",
            "--run-id",
            "r1",
            "--restore",
            "--",
            "sh",
            "-c",
            many + MESSY,
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while not (repo.parent / "started").exists():
        assert proc.poll() is None
        time.sleep(0.05)
    journal = repo / ".git/catalytic/runs"
    # Keep pressing Ctrl-C through the stop and the whole undo, until the journal is gone.
    while proc.poll() is None and (not journal.exists() or list(journal.iterdir())):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 130, out + err
    assert "cannot be interrupted" in err
    assert intact(repo) and no_journal(repo)
    assert all((repo / f"src/f{i}.py").read_text() == "original\n" for i in (1, 750, 1500))


def test_timeout_takes_the_same_path(repo: Path) -> None:
    proc = start(repo, "--timeout", "1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert intact(repo) and no_journal(repo) and command_gone(repo)
    assert '"status":"timeout"' in (repo / "_runs/r1/STATUS.json").read_text()


def test_sigkill_during_the_command_then_recover(repo: Path) -> None:
    proc = start(repo)
    os.kill(proc.pid, signal.SIGKILL)  # catalytic only: the command runs on in its session
    # Not communicate(): the orphaned command still holds catalytic's stdout and stderr, so
    # reading them to the end would wait for its `sleep 60`; `recover` below is what ends it.
    proc.wait()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    assert not intact(repo) and not no_journal(repo)
    # A pending undo is never taken as the next baseline.
    nxt = catalytic("run", "--run-id", "r2", "--restore", "--json", "--", "true", cwd=repo)
    assert nxt.returncode == 2 and '"RUN_UNDO_PENDING"' in nxt.stdout
    assert "catalytic recover" in nxt.stdout
    git(repo, "add", "src/a.py")
    hook = catalytic("check", "--staged", "--json", cwd=repo)
    assert hook.returncode == 2 and '"RUN_UNDO_PENDING"' in hook.stdout
    digest = catalytic("digest", "--worktree", "--json", cwd=repo)
    assert digest.returncode == 2 and '"RUN_UNDO_PENDING"' in digest.stdout
    rec = catalytic("recover", cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "restored: data/raw.csv" in rec.stdout and "restored: data/notes.txt" in rec.stdout
    assert intact(repo) and no_journal(repo) and command_gone(repo)
    again = catalytic("recover", cwd=repo)
    assert again.returncode == 0 and "nothing to recover" in again.stdout
    assert git(repo, "for-each-ref", "refs/catalytic/").stdout == ""


# -- SIGKILL at every filesystem step, in-process (an exact instant no timer can hit) ------------

MUTATING = (
    "mkdir",
    "link",
    "write",
    "fsync",
    "rename",
    "replace",
    "unlink",
    "rmdir",
    "fchmod",
    "ftruncate",
)


def _run_killed_at(repo: Path, n: int) -> int:
    """The child runs `catalytic run --restore` in-process and SIGKILLs itself right before its
    n-th mutating call (test_restore_crash.killed_at). Returns the wait status."""

    def work() -> None:
        os.chdir(repo)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        r = Repo.discover(repo)
        run_operation(
            r,
            load_policy(r.top),
            RunOptions(
                run_id="r1", restore=True, command=["sh", "-c", MESSY.replace("sleep 60", "")]
            ),
        )

    return killed_at(n, work, MUTATING)


# The first steps (journal, command), then a sample of the rest: every 15th step in the default
# run; every step up to the 20th and every 3rd after it with `-m slow` (the default run has a
# 10-minute budget on 2 cores).
@pytest.mark.parametrize("stride", [15, pytest.param(3, marks=pytest.mark.slow)])
def test_sigkill_at_every_step_is_recovered(repo: Path, tmp_path: Path, stride: int) -> None:
    template = repo
    killed = 0
    n = 1
    while True:
        work = tmp_path / f"k{n}" / "repo"
        shutil.copytree(template, work, symlinks=True)
        status = _run_killed_at(work, n)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0
            assert intact(work) and no_journal(work)
            break
        killed += 1
        rec = catalytic("recover", "--json", cwd=work)
        assert rec.returncode == 0, (n, rec.stdout)
        assert intact(work), n
        assert no_journal(work), n
        assert git(work, "for-each-ref", "refs/catalytic/").stdout == "", n
        shutil.rmtree(work.parent)
        n += 1 if n < (10 if stride > 3 else 20) else stride
    assert killed > 10


# -- a full disk: a small tmpfs (needs root; skipped with the reason otherwise) -----------------


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root (CI runs as root)"
    if shutil.which("mount") is None:
        return "no mount(8) here"
    return None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    why = _can_mount()
    if why:
        pytest.skip(why)
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


BIG = bytes(range(256)) * 4800  # 1.2 MB of protected data
FILL = "dd if=/dev/zero of=outputs/fill bs=64k 2>/dev/null; "


def _disk_repo(root: Path) -> Path:
    repo = root / "repo"
    git(root, "init", "-q", "-b", "main", str(repo))
    (repo / "data").mkdir()
    (repo / "data/big.bin").write_bytes(BIG)
    (repo / "data/small.txt").write_text("small\n")
    (repo / ".catalytic.toml").write_text(POLICY)
    (repo / "outputs").mkdir()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data")
    git(repo, "gc", "-q")  # packed: the loose copies would not fit twice
    return repo


def test_a_full_disk_during_the_undo_overwrites_in_place(small_disk: Path) -> None:
    repo = _disk_repo(small_disk)
    script = "head -c 1228800 /dev/urandom > data/big.bin; " + FILL
    proc = catalytic(
        "run", "--run-id", "full", "--restore", "--json", "--", "sh", "-c", script, cwd=repo
    )
    # The undo put the data back although no second copy fitted; the bundle did not fit.
    assert (repo / "data/big.bin").read_bytes() == BIG
    assert proc.returncode == 2, proc.stdout
    assert "catalytic recover" in proc.stdout
    (repo / "outputs/fill").unlink()
    rec = catalytic("recover", "--json", cwd=repo)
    assert rec.returncode == 0, rec.stdout
    assert no_journal(repo) and (repo / "data/big.bin").read_bytes() == BIG
    ok = catalytic("run", "--run-id", "after", "--restore", "--json", "--", "true", cwd=repo)
    assert ok.returncode == 0, ok.stdout


def test_what_cannot_be_undone_on_a_full_disk_is_listed_and_recovered(small_disk: Path) -> None:
    repo = _disk_repo(small_disk)
    script = "rm data/big.bin data/small.txt; " + FILL
    proc = catalytic(
        "run", "--run-id", "full", "--restore", "--json", "--", "sh", "-c", script, cwd=repo
    )
    assert proc.returncode == 2, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["code"] == "UNDO_INCOMPLETE"
    assert "data/big.bin" in doc["details"]["paths"]
    assert "catalytic recover" in doc["message"]
    blocked = catalytic("recover", "--json", cwd=repo)  # the disk is still full
    assert blocked.returncode == 1 and not no_journal(repo)
    (repo / "outputs/fill").unlink()
    rec = catalytic("recover", "--json", cwd=repo)
    assert rec.returncode == 0, rec.stdout
    assert (repo / "data/big.bin").read_bytes() == BIG
    assert (repo / "data/small.txt").read_text() == "small\n"
    assert no_journal(repo)


def test_a_planted_run_journal_is_refused_and_nothing_outside_is_touched(
    repo: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    runs = repo / ".git/catalytic/runs"
    runs.mkdir(parents=True)
    (runs / f"run-{'a' * 32}.json").write_text(
        json.dumps(
            {
                "version": 1,
                "run_id": "x",
                "roots": {},
                "tmp_existed": [],
                "pre_manifest": {},
                "snapshot": {"../victim.txt": ["file", None, None]},
            }
        )
    )
    rec = catalytic("recover", "--json", cwd=repo)
    assert rec.returncode == 1
    (run,) = json.loads(rec.stdout)["details"]["runs"]
    assert run["status"] == "refused" and "unsafe path" in run["reason"]
    assert victim.read_text() == "keep me\n" and intact(repo)


def test_group_alive_sees_a_group_until_it_stops_running() -> None:
    """What `recover` waits on after SIGKILL: a group counts as running while any member is
    not a zombie (a kill is delivered, not finished, when killpg returns)."""
    from catalytic_hooks.run.proctree import group_alive

    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    try:
        assert group_alive(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not group_alive(proc.pid)  # the leader a zombie until reaped, its child gone
    finally:
        proc.wait()
