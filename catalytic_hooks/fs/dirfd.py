"""Directory-fd-relative operations that never follow a symlink: a path from a bundle or a
target is walked one component at a time with O_NOFOLLOW, so a symlink anywhere on the way fails
instead of redirecting, and an fd keeps pointing at the directory it opened even if the path is
swapped for a symlink later."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

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
    """rm -r below a directory fd without following symlinks."""
    st = lstat_at(dfd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
    try:
        for entry in os.listdir(sub):
            remove_tree_at(sub, entry)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=dfd)


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
        key = "/".join(parts)
        fd = self.fds.get(key)
        if fd is None and self.limit is not None and len(self.fds) >= self.limit:
            self.close()
        if fd is None:
            parent = self.get(parts[:-1])
            if self.create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[-1], 0o777, dir_fd=parent)
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
            self.fds[key] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> DirFds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
