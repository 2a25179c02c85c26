"""`git status` started at the first instruction of `catalytic digest --worktree`.

A warm working-tree digest is mostly git's own `git status`; Python's start-up and imports (tens of
milliseconds) would otherwise come before it. This module imports nothing but `os`, `select`,
`time` and git.invoke (itself only `os`; not even contextlib, 2 ms), so the console entry point
can start git before loading anything else. The process is handed to the digest, which uses it
only for the repository it was started in (the current directory's, with git's environment as
is: exactly what `Repo.discover()` sees), or killed. The hooks' quick paths (enforce/quickaccept.py)
start their git commands with the named functions below, built as git.invoke builds every git
command of the tool.
"""

from __future__ import annotations

import os
import select
import time  # built in: no file to load
from collections.abc import Sequence

from catalytic_hooks.git.invoke import DIFF_FLAGS, git_argv, git_env

# "normal" untracked mode, the one git's untracked cache serves (-uall walks every directory
# again): it shows an untracked directory as "dir/", and omits one standing where a deleted
# tracked file was; the digest lists both kinds itself (git.digests.expand_untracked).
STATUS_ARGS = (
    "--no-optional-locks",
    "status",
    "--porcelain=v2",
    "-z",
    "--no-renames",
    "--ignore-submodules=none",
)


def status_args(ignored: bool) -> list[str]:
    # "traditional" with -uall lists every file inside an ignored directory.
    if ignored:
        return [*STATUS_ARGS, "--untracked-files=all", "--ignored=traditional"]
    return [*STATUS_ARGS, "--untracked-files=normal"]


class Spawned:
    """A child started with posix_spawn, with the part of Popen's interface `Repo.finish`
    uses (`communicate`, `returncode`, `args`) and `kill`/`wait`."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.args = args
        self.returncode: int | None = None
        # Before the child exists: what it reads of the index, it read after this instant
        # (git.indexid.settled).
        self.started_ns = time.time_ns()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawnp(
                args[0],
                args,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                    (os.POSIX_SPAWN_CLOSE, out_r),
                    (os.POSIX_SPAWN_CLOSE, err_r),
                ],
            )
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
    """`git ARGS` in the current directory with git's environment as is (and git.invoke's
    decisions), started now."""
    return Spawned(git_argv(args), git_env(os.environ))


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
        return spawn_git(*status_args("--ignored" in argv))
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


# -- the hooks' quick paths (enforce.quick): each command named, built here -----------------------


def literal(paths: Sequence[str]) -> list[str]:
    return [f":(literal){p}" for p in paths]


def policy_listing_args(rev: str, watched: Sequence[str]) -> list[str]:
    """The git command whose output fingerprints the policy sources and trust file at `rev`
    (the full check records its output, the quick paths compare it byte for byte)."""
    return ["ls-tree", "-z", "--full-tree", rev, "--", *literal(watched)]


def untracked_args(dirs: Sequence[str]) -> list[str]:
    """Every untracked, not ignored path below `dirs` (a nested repository as `dir/`)."""
    return ["ls-files", "-o", "-z", "--exclude-standard", "--full-name", "--", *literal(dirs)]


def spawn_where_head() -> Spawned:
    """The git directory, the top of the working tree and HEAD, one per line."""
    return spawn_git("rev-parse", "--absolute-git-dir", "--show-toplevel", "HEAD")


def spawn_git_dirs() -> Spawned:
    """The git directory and the common git directory, one per line."""
    return spawn_git("rev-parse", "--absolute-git-dir", "--git-common-dir")


def spawn_staged_names(rev: str) -> Spawned:
    """The paths the index changes against `rev` (NUL-separated), as the full commit check
    diffs them (git.repo.Repo.staged_start)."""
    return spawn_git("diff-index", "--cached", "--name-only", *DIFF_FLAGS, rev)


def spawn_changed_names(old: str, new: str) -> Spawned:
    """The paths that differ between two commits' trees (NUL-separated)."""
    return spawn_git("diff-tree", "--name-only", *DIFF_FLAGS, old, new, "--")


def spawn_new_commits(new: str, old: str, limit: int) -> Spawned:
    """At most `limit` commits of `new` that `old` lacks, each with its parents."""
    return spawn_git("rev-list", "--parents", "-n", str(limit), new, "--not", old, "--")


def spawn_policy_listing(rev: str, watched: Sequence[str]) -> Spawned:
    return spawn_git(*policy_listing_args(rev, watched))


def spawn_names_under(rev: str, roots: Sequence[str]) -> Spawned:
    """Every path of `rev`'s tree under `roots` (NUL-separated)."""
    return spawn_git(
        "ls-tree", "-r", "-z", "--full-tree", "--name-only", rev, "--", *literal(roots)
    )


def spawn_untracked_under(top: str, dirs: Sequence[str]) -> Spawned:
    return spawn_git("-C", top, *untracked_args(dirs))
