"""Running the command of `catalytic run` so that no signal skips the undo.

From the moment the run journal exists until the bundle is written, SIGINT, SIGTERM and SIGHUP
are recorded instead of killing catalytic. While the command runs they are forwarded to its
process group (it runs in a session of its own, so a terminal's Ctrl-C reaches only catalytic);
what is still alive after a grace period is killed; then the undo runs and the run is recorded as
`interrupted`, exiting 128 + the signal number as a shell would. During the undo a signal only
prints that the undo will finish. `--timeout` takes the same path (SIGTERM, grace, SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from catalytic_hooks.git.repo import isolated_children

GRACE_SECONDS = 5.0
GUARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failure | timeout | interrupted
    exit_code: int | None
    signal: int | None = None


def _say(text: str) -> None:
    print(f"catalytic: {text}", file=sys.stderr, flush=True)


class Guard:
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
            _say(f"{signal.Signals(signum).name} received: the undo is finishing first and "
                 "cannot be interrupted (if you kill catalytic anyway, run `catalytic recover`)")

    def run(self, command: list[str], cwd: Path, env: dict[str, str], timeout: float | None,
            on_start: Callable[[int], None]) -> Outcome:
        if self.received:
            return Outcome("interrupted", None, self.received[0])
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
        except OSError as exc:
            _say(f"cannot start {command[0]!r}: {exc.strerror}")
            return Outcome("failure", 127)
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
                    return Outcome("success" if code == 0 else "failure", code)
                if self.received:
                    self._stop(proc, None, signal.Signals(self.received[0]).name)
                    return Outcome("interrupted", None, self.received[0])
                if deadline is not None and time.monotonic() > deadline:
                    self._stop(proc, signal.SIGTERM, f"timeout ({timeout} s)")
                    return Outcome("timeout", None)
        finally:
            self.pgid = None

    def _stop(self, proc: subprocess.Popen[bytes], first: int | None, why: str) -> None:
        """The signal already went to the group (or `first` goes now); after the grace period
        whatever remains of the group is killed, then the undo runs."""
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
