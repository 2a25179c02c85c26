"""Directory-fd-relative operations that never follow a symlink: a path from a bundle or a
target is walked one component at a time with O_NOFOLLOW, so a symlink anywhere on the way fails
instead of redirecting, and an fd keeps pointing at the directory it opened even if the path is
swapped for a symlink later."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from catalytic_hooks.core.paths import is_git_name

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted where a file is expected must not hang the process.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


def open_dir_chain(root_fd: int, parts: list[str], *, create: bool) -> int:
    """Walk (and optionally create) `parts` below `root_fd`. Returns a new fd."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)  # the umask decides
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular_at(dfd: int, name: str) -> int:
    """Open `name` in `dfd` for reading only if it is a regular file (checked on the open fd,
    so nothing can be swapped in between); OSError otherwise."""
    fd = os.open(name, FILE_FLAGS, dir_fd=dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{name} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(root: Path, rel: str, *, create: bool) -> tuple[int, str]:
    """(fd of the directory holding `rel` below `root`, the last component), walked with
    O_NOFOLLOW (missing directories created when `create`). The caller closes the fd."""
    parts = rel.split("/")
    rfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_dir_chain(rfd, parts[:-1], create=create), parts[-1]
    finally:
        os.close(rfd)


def open_beneath(root: Path, rel: str) -> int:
    """Open regular file `rel` below `root`: neither the file nor any directory on the way may
    be a symlink, and the file must be regular. Raises OSError otherwise."""
    dfd, name = open_parent(root, rel, create=False)
    try:
        return open_regular_at(dfd, name)
    finally:
        os.close(dfd)


def remove_tree_at(dfd: int, name: str) -> None:
    """rm -r below a directory fd without following symlinks, at any depth with two fds open:
    it walks down by fd and back up by `..`, checked to be the directory it came from (a
    directory moved meanwhile stops it with an OSError rather than lead it elsewhere)."""
    st = lstat_at(dfd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    cur = _open_same(dfd, name, st)
    # One level per directory entered: (its name, identity, entries not yet removed).
    levels: list[tuple[str, tuple[int, int], list[str]]] = [
        (name, (st.st_dev, st.st_ino), os.listdir(cur))
    ]
    try:
        while levels:
            here, _, left = levels[-1]
            while left:
                entry = left.pop()
                est = lstat_at(cur, entry)
                if est is None:
                    continue
                if stat.S_ISDIR(est.st_mode):
                    sub = _open_same(cur, entry, est)
                    os.close(cur)
                    cur = sub
                    levels.append((entry, (est.st_dev, est.st_ino), os.listdir(cur)))
                    break
                os.unlink(entry, dir_fd=cur)
            else:
                levels.pop()
                if not levels:
                    break
                parent = os.open("..", DIR_FLAGS, dir_fd=cur)
                now = os.fstat(parent)
                if (now.st_dev, now.st_ino) != levels[-1][1]:
                    os.close(parent)
                    raise OSError(errno.ESTALE, "moved while it was being removed", here)
                os.close(cur)
                cur = parent
                os.rmdir(here, dir_fd=cur)
    finally:
        os.close(cur)
    os.rmdir(name, dir_fd=dfd)


def _open_same(dfd: int, name: str, st: os.stat_result) -> int:
    """`name` opened as the directory `st` describes (never a link, never one swapped in)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise OSError(errno.ESTALE, "replaced while it was being removed", name)
    return fd


def remove_tree(path: Path) -> None:
    """Remove a directory this tool created, by fd, never following a symlink in it."""
    with contextlib.suppress(FileNotFoundError):
        pfd = os.open(path.parent, DIR_FLAGS)
        try:
            remove_tree_at(pfd, path.name)
        finally:
            os.close(pfd)


# Deeper than this, a tree under a tmp root is left in place (and reported) rather than walked:
# one fd and one stack frame per level.
MAX_EMPTY_DEPTH = 256


@dataclass
class Emptied:
    """What emptying a directory did: `removed` files and links (paths with the caller's
    prefix), `kept` what it deliberately left (`{path, reason}`), `failed` what it could not
    remove (`{path, reason}`)."""

    removed: list[str] = field(default_factory=list)
    kept: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def repository_reason(dfd: int) -> str | None:
    """Why the directory open at `dfd` belongs to git and must not be emptied, or None: a work
    tree's top (a `.git` entry in any spelling: a nested repository, a linked worktree, a
    submodule), or a git directory itself (HEAD beside objects or refs, a bare repository; HEAD
    beside commondir or gitdir, a linked worktree's administrative directory)."""
    names = os.listdir(dfd)
    if any(is_git_name(n) for n in names):
        return "a git work tree (it holds .git): not descended"
    have = set(names)
    if "HEAD" in have and have & {"objects", "refs", "commondir", "gitdir"}:
        return "a git directory: not descended"
    return None


def empty_dir_at(dfd: int, prefix: str, out: Emptied, depth: int = 0) -> bool:
    """Remove everything inside the directory open at `dfd` (paths reported as `prefix/name`),
    walking by directory fd: a link is removed, never followed; a directory that belongs to git
    (repository_reason) or lies on another filesystem is left whole. True when it is now
    empty."""
    dev = os.fstat(dfd).st_dev
    empty = True
    for name in sorted(os.listdir(dfd)):
        path = f"{prefix}/{name}"
        st = lstat_at(dfd, name)
        if st is None:
            continue
        try:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dfd)
                out.removed.append(path)
            elif _empty_subdir(dfd, name, st, dev, path, out, depth + 1):
                os.rmdir(name, dir_fd=dfd)
            else:
                empty = False
        except OSError as exc:
            out.failed.append({"path": path, "reason": exc.strerror or str(exc)})
            empty = False
    return empty


def _empty_subdir(
    dfd: int, name: str, st: os.stat_result, dev: int, path: str, out: Emptied, depth: int
) -> bool:
    why = None
    if st.st_dev != dev:
        why = "another filesystem is mounted here: not descended"
    elif depth > MAX_EMPTY_DEPTH:
        why = f"deeper than {MAX_EMPTY_DEPTH} directories: not descended"
    if why is not None:
        out.kept.append({"path": path, "reason": why})
        return False
    sub = os.open(name, DIR_FLAGS, dir_fd=dfd)  # O_NOFOLLOW: a link swapped in fails here
    try:
        now = os.fstat(sub)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(f"{path} was replaced while it was being emptied")
        why = repository_reason(sub)
        if why is not None:
            out.kept.append({"path": path, "reason": why})
            return False
        return empty_dir_at(sub, path, out, depth)
    finally:
        os.close(sub)


class DirFds:
    """Directory fds below a root, opened once each, component by component with O_NOFOLLOW;
    a write through one can never land outside the root."""

    def __init__(self, root_fd: int, *, create: bool, limit: int | None = None):
        self.root_fd = root_fd
        self.create = create
        self.limit = limit  # at most this many cached fds (then all are closed and reopened)
        self.fds: dict[str, int] = {}

    def get(self, parts: list[str]) -> int:
        if not parts:
            return self.root_fd
        fd = self.fds.get("/".join(parts))
        if fd is not None:
            return fd
        if self.limit is not None and len(self.fds) >= self.limit:
            self.close()
        # From the deepest directory already open, down one component at a time (a loop, not
        # a recursion: a path's depth is the archive's to choose).
        have = len(parts) - 1
        while have and "/".join(parts[:have]) not in self.fds:
            have -= 1
        fd = self.fds["/".join(parts[:have])] if have else self.root_fd
        for i in range(have, len(parts)):
            if self.create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[i], 0o777, dir_fd=fd)
            fd = os.open(parts[i], DIR_FLAGS, dir_fd=fd)
            self.fds["/".join(parts[: i + 1])] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> DirFds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
