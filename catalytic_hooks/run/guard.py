"""Running the command of `catalytic run` so that no signal skips the undo.

From the moment the run journal exists until the bundle is written, SIGINT, SIGTERM and SIGHUP
are recorded instead of killing catalytic. While the command runs they are forwarded to its
process group (it runs in a session of its own, so a terminal's Ctrl-C reaches only catalytic);
what is still alive after a grace period is killed; then the undo runs and the run is recorded as
`interrupted`, exiting 128 + the signal number as a shell would. During the undo a signal only
prints that the undo will finish. `--timeout` takes the same path (SIGTERM, grace, SIGKILL).

A run ends when everything its command started has ended (run.proctree): once the command
exits, whatever it left running (a `&` job, a daemon, a `setsid` child) gets the same grace
period to end on its own; what still runs then is killed, listed as `survivors`, and the run is
not a PASS. Only then does POST look at the tree, so nothing the command started can change it
afterwards. The same sweep follows a signal or a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from catalytic_hooks.git.repo import isolated_children
from catalytic_hooks.run.proctree import (
    Proc,
    can_walk,
    children_now,
    descendants,
    describe,
    kill_tree,
    reap_adopted,
    set_subreaper,
    snapshot,
)

GRACE_SECONDS = 5.0
GUARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failure | timeout | interrupted
    exit_code: int | None
    signal: int | None = None
    # Processes the command started that were still running when the run ended, and were
    # killed: `{pid, command}`, sorted by pid. Any at all fails the run.
    survivors: tuple[dict[str, Any], ...] = ()


def _say(text: str) -> None:
    print(f"catalytic: {text}", file=sys.stderr, flush=True)


class Guard:
    """One guarded command per process at a time (signal handlers live in the main thread):
    everything below this process that was not already running when the command started is
    taken for the command's, so a child another thread starts meanwhile would be too."""

    def __init__(self, grace: float = GRACE_SECONDS):
        self.grace = grace
        self.received: list[int] = []
        self.pgid: int | None = None
        self._old: dict[int, Any] = {}
        self._told = False

    def __enter__(self) -> Guard:
        for s in GUARDED:
            self._old[s] = signal.signal(s, self._handler)
        self._isolation = isolated_children()
        self._isolation.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._isolation.__exit__(None, None, None)
        for s, old in self._old.items():
            signal.signal(s, old)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)
        elif not self._told:
            self._told = True
            _say(
                f"{signal.Signals(signum).name} received: the undo is finishing first and "
                "cannot be interrupted (if you kill catalytic anyway, run `catalytic recover`)"
            )

    def run(
        self,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float | None,
        on_start: Callable[[int], None],
    ) -> Outcome:
        if self.received:
            return Outcome("interrupted", None, self.received[0])
        before = children_now()  # not the command's: left alone by every sweep
        was = set_subreaper(True)
        try:
            try:
                proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
            except OSError as exc:
                _say(f"cannot start {command[0]!r}: {exc.strerror}")
                return Outcome("failure", 127)
            try:
                outcome = self._watch(proc, timeout, on_start, before)
            except BaseException:
                # Nothing started here outlives catalytic's own failure (a journal it could not
                # write, say): the group and what left it are killed before the error goes on.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self._sweep(proc.pid, before)
                raise
            if outcome.status in ("success", "failure"):
                return outcome  # _drain already waited for, or ended, everything else
            # Stopped by a signal or the timeout: the group is dead, not what left it.
            more = self._sweep(proc.pid, before)
            return replace(
                outcome,
                survivors=tuple(sorted((*outcome.survivors, *more), key=lambda d: d["pid"])),
            )
        finally:
            if was is not None:
                set_subreaper(was)

    def _watch(
        self,
        proc: subprocess.Popen[bytes],
        timeout: float | None,
        on_start: Callable[[int], None],
        before: frozenset[int],
    ) -> Outcome:
        self.pgid = proc.pid
        try:
            on_start(proc.pid)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    code = proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    code = None
                if code is not None and not self.received:
                    survivors = self._drain(proc.pid, before)
                    if self.received:  # a signal for catalytic while it waited for them
                        return Outcome("interrupted", code, self.received[0], survivors)
                    return Outcome("success" if code == 0 else "failure", code, survivors=survivors)
                if self.received:
                    self._stop(proc, None, signal.Signals(self.received[0]).name)
                    return Outcome("interrupted", None, self.received[0])
                if deadline is not None and time.monotonic() > deadline:
                    self._stop(proc, signal.SIGTERM, f"timeout ({timeout} s)")
                    return Outcome("timeout", None)
        finally:
            self.pgid = None

    def _left(self, pgid: int, before: frozenset[int]) -> list[Proc]:
        """What the command started that still runs (the command itself has been waited for)."""
        if can_walk():
            procs = snapshot()
            reap_adopted(before, procs)
            return descendants(os.getpid(), before, procs)
        try:
            os.killpg(pgid, 0)  # no /proc: only the command's own process group can be seen
        except (ProcessLookupError, PermissionError):
            return []
        return [Proc(pgid, os.getpid(), "?", "?")]

    def _drain(self, pgid: int, before: frozenset[int]) -> tuple[dict[str, Any], ...]:
        """The command exited: what it left running gets the grace period to end on its own
        (a signal for catalytic cuts it short); whatever still runs then is killed."""
        end = time.monotonic() + self.grace
        left = self._left(pgid, before)
        while left and not self.received and time.monotonic() < end:
            time.sleep(0.05)
            left = self._left(pgid, before)
        if not left:
            return ()
        _say(
            f"the command exited, but {len(left)} process(es) it started still ran "
            f"{self.grace:g} s later: killing them (a run with survivors does not pass)"
        )
        return self._sweep(pgid, before, left)

    def _sweep(
        self, pgid: int, before: frozenset[int], left: list[Proc] | None = None
    ) -> tuple[dict[str, Any], ...]:
        """Kill everything the command started that is still there, and say what it was."""
        found = {
            p.pid: describe(p.pid) for p in (left if left is not None else self._left(pgid, before))
        }
        if can_walk():
            for pid, cmd in kill_tree(os.getpid(), before).items():
                found.setdefault(pid, cmd)
            reap_adopted(before)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return tuple({"pid": pid, "command": cmd} for pid, cmd in sorted(found.items()))

    def _stop(self, proc: subprocess.Popen[bytes], first: int | None, why: str) -> None:
        """The signal already went to the group (or `first` goes now); after the grace period
        whatever remains of the group is killed, then the undo runs (run() then kills what
        left the group)."""
        _say(f"{why}: stopping the command (grace {self.grace:g} s), then undoing its changes")
        pgid = proc.pid
        if first is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=self.grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait()
