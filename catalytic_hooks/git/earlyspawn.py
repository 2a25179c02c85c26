"""`git status` started at the first instruction of `catalytic digest --worktree`.

A warm working-tree digest is mostly git's own `git status`; Python's start-up and imports (tens of
milliseconds) would otherwise come before it. This module imports nothing but `os`, `select` and
`time` (not even contextlib, 2 ms), so the console entry point can start git before loading anything
else. The process is handed to the digest, which uses it only for the repository it was started
in (the current directory's, with git's environment as is: exactly what `Repo.discover()` sees),
or killed. The hooks' quick paths (enforce/quickaccept.py) start their git commands with it too.
"""

from __future__ import annotations

import os
import select
import time  # built in: no file to load

# "normal" untracked mode, the one git's untracked cache serves (-uall walks every directory
# again): it shows an untracked directory as "dir/", and omits one standing where a deleted
# tracked file was; the digest lists both kinds itself (git.digests.expand_untracked).
STATUS_ARGS = ("--no-optional-locks", "status", "--porcelain=v2", "-z", "--no-renames",
               "--ignore-submodules=none")


def status_args(ignored: bool) -> list[str]:
    # "traditional" with -uall lists every file inside an ignored directory.
    if ignored:
        return [*STATUS_ARGS, "--untracked-files=all", "--ignored=traditional"]
    return [*STATUS_ARGS, "--untracked-files=normal"]


class Spawned:
    """A child started with posix_spawn, with the part of Popen's interface `Repo.finish`
    uses (`communicate`, `returncode`, `args`) and `kill`/`wait`."""

    def __init__(self, args: list[str]):
        self.args = args
        self.returncode: int | None = None
        # Before the child exists: what it reads of the index, it read after this instant
        # (git.indexid.settled).
        self.started_ns = time.time_ns()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawnp(args[0], args, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
                (os.POSIX_SPAWN_CLOSE, out_r), (os.POSIX_SPAWN_CLOSE, err_r)])
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self._fds = {out_r: bytearray(), err_r: bytearray()}
        self._out, self._err = out_r, err_r
        self._open = {out_r, err_r}  # closed exactly once: a closed number may be reused

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def communicate(self) -> tuple[bytes, bytes]:
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        while self._open:
            for fd, _ in poller.poll():
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    self._fds[fd] += chunk
                else:
                    poller.unregister(fd)
                    self._close(fd)
        self.wait()
        return bytes(self._fds[self._out]), bytes(self._fds[self._err])

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            _kill(self.pid)
        for fd in (self._out, self._err):
            self._close(fd)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:  # already gone (and not yet reaped: the pid is still ours)
        return


def spawn_git(*args: str) -> Spawned:
    """`git ARGS` in the current directory with git's environment as is, started now."""
    return Spawned(["git", *args])


def early_status(argv: list[str]) -> Spawned | None:
    """For `digest` arguments naming the current repository's working tree only: its `git
    status`, started now. None otherwise, or when git cannot be started (the normal path then
    reports why)."""
    if "--worktree" not in argv:
        return None
    other = ("--repo", "--repo-root", "--dir", "--rev", "--index", "--help")
    if any(a.partition("=")[0] in other for a in argv):
        return None
    try:
        return Spawned(["git", *status_args("--ignored" in argv)])
    except OSError:
        return None


# The digest arguments git.quickdigest may answer.
QUICK_DIGEST = (["--worktree"], ["--index"])
WHERE_ARGS = ("rev-parse", "--absolute-git-dir", "--show-toplevel")


def early_where(argv: list[str]) -> Spawned | None:
    """For arguments git.quickdigest may answer: where the repository is, asked now."""
    if argv not in QUICK_DIGEST:
        return None
    try:
        return spawn_git(*WHERE_ARGS)
    except OSError:
        return None
