"""Issue 26, class 6: a run ends when everything it started has ended. Real processes: a `&` job,
a daemon that forks twice into a session of its own, a `setsid` child. Before the fix each one
rewrote a protected file after the POST digest while the bundle recorded PASS, and outlived
`catalytic run`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import catalytic

RAW = b"id,value\n1,0.5\n"
POLICY = 'durable_roots = ["outputs"]\n'
LATE = "echo late >> data/raw.csv"
# What the command leaves behind lets go of catalytic's stdout and stderr, as a daemon does: so
# nothing here waits on a pipe a leftover holds, and `catalytic run` returns when it says.
QUIET = "</dev/null >/dev/null 2>&1"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for init is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def repo(make_repo) -> Iterator[Path]:
    r = make_repo({"data/raw.csv": RAW}, policy=POLICY)
    yield r
    for f in r.parent.glob("*.pid"):  # whatever a failing run left behind
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(f.read_text().split()[0]), signal.SIGKILL)


def run(repo: Path, script: str, *extra: str) -> tuple[int, dict[str, object]]:
    proc = catalytic("run", "--run-id", "r1", "--json", *extra, "--", "sh", "-c", script, cwd=repo)
    return proc.returncode, json.loads(proc.stdout)


def _until_pid(name: str) -> str:
    """Shell that waits until the child has written its pid file: the command ends only once
    its escapee exists, however slow the machine (a fixed pause could end it sooner)."""
    return f"while [ ! -s ../{name}.pid ]; do sleep 0.01; done"


def pid_of(repo: Path, name: str) -> int:
    return int((repo.parent / f"{name}.pid").read_text().split()[0])


def scan(repo: Path) -> dict[str, object]:
    return json.loads((repo / "_runs/r1/PURITY_SCAN.json").read_text())  # type: ignore[no-any-return]


def test_a_background_job_is_waited_for_and_seen_by_post(repo: Path) -> None:
    """The issue's `sleep 1 && echo x > protected &`: it ends within the grace period, so the run
    waits for it, and POST sees what it did."""
    code, doc = run(repo, f"sh -c 'echo $$ > ../bg.pid; sleep 1; {LATE}' {QUIET} &")
    assert code == 1 and doc["code"] == "RUN_FAILED", doc
    assert scan(repo)["verdict"] == "FAIL" and scan(repo)["violations"] == ["data/raw.csv"]
    assert not alive(pid_of(repo, "bg"))
    assert (repo / "data/raw.csv").read_bytes() == RAW + b"late\n"  # recorded, not hidden


def test_a_background_job_still_running_is_killed_and_fails_the_run(repo: Path) -> None:
    code, doc = run(
        repo,
        f"sh -c 'echo $$ > ../bg.pid; sleep 30; {LATE}' {QUIET} & {_until_pid('bg')}",
        "--grace",
        "0.5",
        "--restore",
    )
    pid = pid_of(repo, "bg")
    assert code == 1 and not alive(pid), doc
    details = doc["details"]
    assert isinstance(details, dict) and details["proof_verdict"] == "FAIL"
    assert pid in [s["pid"] for s in details["survivors"]]
    assert pid in [s["pid"] for s in scan(repo)["survivors"]]  # type: ignore[attr-defined]
    assert (repo / "data/raw.csv").read_bytes() == RAW
    status = json.loads((repo / "_runs/r1/STATUS.json").read_text())
    assert status["cmp01"] == "fail" and status["status"] == "failure"


DAEMON = f"""
import os, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    sys.exit(0)
open("../daemon.pid", "w").write(str(os.getpid()))
time.sleep(30)
os.system({LATE!r})
"""


def test_a_double_forked_daemon_cannot_escape(repo: Path) -> None:
    (repo.parent / "daemon.py").write_text(DAEMON)
    code, doc = run(
        repo, f"{sys.executable} ../daemon.py {QUIET}; {_until_pid('daemon')}", "--grace", "0.5"
    )
    pid = pid_of(repo, "daemon")
    assert code == 1 and not alive(pid), doc
    details = doc["details"]
    assert isinstance(details, dict)
    assert pid in [s["pid"] for s in details["survivors"]]
    assert details["status"] == "failure" and details["proof_verdict"] == "FAIL"


# The thread-only `exit` system call (not `exit_group`, which every libc exit uses) by number:
# the leader ends and shows as a zombie while its other thread runs on.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}
ZOMBIE_LEADER = f"""
import ctypes, os, platform, threading, time
if os.fork() == 0:
    def later():
        time.sleep(30)
        os.system({LATE!r})
        os._exit(0)
    threading.Thread(target=later).start()
    open("../zl.pid", "w").write(str(os.getpid()))
    ctypes.CDLL(None).syscall({{SYS_EXIT}}[platform.machine()], 0)
"""


def test_a_zombie_leader_whose_thread_runs_on_cannot_escape(repo: Path) -> None:
    """Walks of the process tree left zombies out, so a process whose main thread alone had
    ended was taken for gone while its other thread went on to write a protected file after
    the run passed. A zombie with a live thread now counts as running: waited for, killed,
    and a survivor that fails the run."""
    (repo.parent / "zl.py").write_text(ZOMBIE_LEADER.replace("{SYS_EXIT}", repr(SYS_EXIT)))
    code, doc = run(
        repo, f"{sys.executable} ../zl.py {QUIET}; {_until_pid('zl')}", "--grace", "0.5"
    )
    pid = pid_of(repo, "zl")
    assert code == 1, doc
    assert pid in [s["pid"] for s in doc["details"]["survivors"]]  # type: ignore[index]
    assert not Path(f"/proc/{pid}/task").exists() or all(
        (t / "stat").read_text().rsplit(") ", 1)[1][0] in "ZX"
        for t in Path(f"/proc/{pid}/task").iterdir()
    )
    assert (repo / "data/raw.csv").read_bytes() == RAW


def test_a_setsid_child_cannot_escape(repo: Path) -> None:
    code, doc = run(
        repo,
        f"setsid -f sh -c 'echo $$ > ../s.pid; sleep 30; {LATE}' {QUIET}; {_until_pid('s')}",
        "--grace",
        "0.5",
    )
    pid = pid_of(repo, "s")
    assert code == 1 and not alive(pid), doc
    assert pid in [s["pid"] for s in doc["details"]["survivors"]]  # type: ignore[index]


def test_a_timeout_also_ends_what_left_the_process_group(repo: Path) -> None:
    code, doc = run(
        repo,
        f"setsid -f sh -c 'echo $$ > ../s.pid; sleep 30' {QUIET}; {_until_pid('s')}; sleep 30",
        "--timeout",
        "1",
        "--grace",
        "0.5",
        "--restore",
    )
    assert code == 1 and doc["details"]["status"] == "timeout", doc  # type: ignore[index]
    assert not alive(pid_of(repo, "s"))


def test_a_command_that_leaves_nothing_behind_still_passes(repo: Path) -> None:
    code, doc = run(repo, "sleep 0.2 & wait; mkdir -p outputs && echo r > outputs/r.txt")
    assert code == 0 and doc["details"]["survivors"] == [], doc  # type: ignore[index]
    assert "survivors" not in scan(repo)


# -- recovery kills only what a run started ----------------------------------------------------


def test_a_planted_journal_cannot_make_recover_kill_a_bystander(repo: Path) -> None:
    """A journal naming some other process group of the user (its pid and start time are
    readable in /proc) must not get it killed: only a process started for that journal is."""
    import subprocess

    from catalytic_hooks.run.journal import process_start

    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        runs = repo / ".git/catalytic/runs"
        runs.mkdir(parents=True)
        (runs / f"run-{'c' * 32}.json").write_text(
            json.dumps(
                {
                    "version": 1,
                    "run_id": "planted",
                    "phase": "command",
                    "command_pgid": bystander.pid,
                    "command_start": process_start(bystander.pid),
                    "roots": {},
                    "pre_manifest": {},
                    "tmp_existed": [],
                    "snapshot": {},
                }
            )
        )
        rec = catalytic("recover", "--json", cwd=repo)
        (run,) = json.loads(rec.stdout)["details"]["runs"]
        assert run["killed_command"] is False, run
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()
