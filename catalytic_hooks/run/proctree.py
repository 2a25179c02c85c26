"""The process tree a run's command started, found and ended (SECURITY.md "Process trees").

A command can leave processes behind that outlive it: a `&` job, a daemon that forks twice, a
`setsid` child in a session of its own. Signalling the command's process group reaches none of
the last two. On Linux the runner makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER)
before it starts the command: an orphan anywhere below it is then re-parented to the runner,
never to init, so every process the command started and that still runs is a descendant of the
runner, found by walking /proc's parent links, whatever group or session it moved to. A
process started on the command's behalf by something outside the tree (a service manager, `at`,
an ssh login to this machine, another user's daemon) is not a descendant and is not contained.

Elsewhere (no prctl, no /proc) only the command's process group is seen.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_PROC = "/proc"


def _prctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def set_subreaper(on: bool) -> bool | None:
    """Make this process a child subreaper (or stop); returns the previous setting, None where
    the kernel or platform has none."""
    prctl = _prctl()
    if prctl is None:
        return None
    was = ctypes.c_int(0)
    if prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0) != 0:
        return None
    if prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        return None
    return bool(was.value)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    start: str  # the kernel's start time: with the pid, an identity pid reuse cannot fake


def _fields(path: str) -> list[str] | None:
    """The fields of a /proc `stat` file after the command name (state first), or None."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _stat(pid: int) -> Proc | None:
    fields = _fields(f"{_PROC}/{pid}/stat")
    return None if fields is None else Proc(pid, int(fields[1]), fields[0], fields[19])


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (a zombie has stopped running)."""
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        fields = _fields(f"{_PROC}/{name}/stat")
        if fields and int(fields[2]) == pgid and (fields[0] != "Z" or threads_alive(int(name))):
            return True
    return False


def threads_alive(pid: int) -> bool:
    """Whether a process shown as a zombie still has a running thread: a leader that ended
    with the thread-only `exit` (not `exit_group`) is `Z` while its other threads go on, and
    a signal to its pid still reaches them."""
    try:
        tids = os.listdir(f"{_PROC}/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        fields = _fields(f"{_PROC}/{pid}/task/{tid}/stat")
        if fields and fields[0] not in ("Z", "X"):
            return True
    return False


def can_walk() -> bool:
    return os.path.isdir(f"{_PROC}/self/task")


def snapshot() -> list[Proc]:
    """Every process in /proc, once."""
    found = []
    for name in os.listdir(_PROC):
        if name.isdigit():
            p = _stat(int(name))
            if p is not None:
                found.append(p)
    return found


def descendants(
    root: int, exclude: frozenset[int] = frozenset(), procs: list[Proc] | None = None
) -> list[Proc]:
    """Every live process below `root` (zombies left out, unless a thread of one still runs:
    `threads_alive`), except the subtrees of `exclude`."""
    children: dict[int, list[Proc]] = {}
    for p in procs if procs is not None else snapshot():
        children.setdefault(p.ppid, []).append(p)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for p in children.get(todo.pop(), []):
            if p.pid in exclude:
                continue
            todo.append(p.pid)
            if p.state != "Z" or threads_alive(p.pid):
                found.append(p)
    return found


def describe(pid: int) -> str:
    """A survivor's command line, as the kernel shows it (short)."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as fh:
            args = fh.read(4096).split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode("utf-8", "replace") for a in args if a)[:200] or "?"


def signal_proc(p: Proc, sig: int) -> None:
    """Signal `p` only if its pid still names the process that was found (start time checked on
    a pidfd where there is one, so the pid cannot be reused in between)."""
    fd = None
    with contextlib.suppress(OSError, AttributeError):
        fd = os.pidfd_open(p.pid)
    try:
        now = _stat(p.pid)
        if now is None or now.start != p.start:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(p.pid, sig)
    finally:
        if fd is not None:
            os.close(fd)


def reap_adopted(exclude: frozenset[int], procs: list[Proc] | None = None) -> None:
    """Collect the exit status of every child this process adopted that has ended (the
    orphans re-parented here). Only children found dead are waited for, by pid: a child
    started elsewhere in this process keeps its status for its own owner."""
    me = os.getpid()
    for p in procs if procs is not None else snapshot():
        if p.ppid == me and p.state == "Z" and p.pid not in exclude:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)


def kill_tree(root: int, exclude: frozenset[int]) -> dict[int, str]:
    """SIGKILL every process below `root`. Each is stopped first, until a walk finds nothing
    new: a stopped process cannot fork, so a process forking as fast as it can cannot outrun the
    walk. Returns what was found: pid → command line (read before it was killed)."""
    seen: dict[int, Proc] = {}
    told: dict[int, str] = {}
    for _ in range(1000):
        new = [p for p in descendants(root, exclude) if p.pid not in seen]
        if not new:
            break
        for p in new:
            seen[p.pid] = p
            told[p.pid] = describe(p.pid)
            signal_proc(p, signal.SIGSTOP)
    for p in seen.values():
        signal_proc(p, signal.SIGKILL)
        signal_proc(p, signal.SIGCONT)
    return told


def children_now() -> frozenset[int]:
    """This process's children at this moment (so that a later walk leaves them alone)."""
    if not can_walk():
        return frozenset()
    me = os.getpid()
    return frozenset(p.pid for p in snapshot() if p.ppid == me)
