"""The safe reader: the one way to read a file that someone else chose (an artifact of a bundle,
an attestation envelope, a file a TASK_SPEC names).

Such a file may be a FIFO (an open or a read that never returns), a device (`/dev/zero`: a read
that never ends; opening some devices acts), a symbolic link (to a secret whose hash would leak,
or to anything above), or simply huge. So: the path rules of core/paths.py first (for a path the
file itself named), then an lstat that must show a regular file before anything is opened, an
open that follows no link and never blocks, a check on the open fd that it is the file the lstat
saw, and a size cap enforced while reading. Every refusal is an OSError (`Refused`, or `Missing`,
a FileNotFoundError, when nothing is there) whose `str()` says why in words; callers turn it into
their own stable code.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import open_parent

MAX_DOCUMENT = 64 * 1024 * 1024  # a JSON artifact or envelope larger than this is refused
_CHUNK = 1 << 20
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Refused(OSError):
    """A file the safe reader will not read; `str()` is the reason in words."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class Missing(FileNotFoundError):
    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _refuse(what: str, why: str) -> Refused:
    return Refused(errno.EINVAL, f"{what} {why}")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link (never followed)"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _open_at(dfd: int | None, name: str, what: str) -> int:
    """lstat, then open without following or blocking, then check it is the same regular
    file (nothing swapped in between)."""
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        raise Missing(errno.ENOENT, f"{what} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(what, f"is {_kind(st.st_mode)}, not a regular file")
    try:
        fd = os.open(name, _FLAGS, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(what, "is a symbolic link (never followed)") from None
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise _refuse(what, "changed while it was being opened")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def rel_problem(rel: str) -> str | None:
    """Why a relative path that a bundle or a TASK_SPEC names may not be read below a root
    (core/paths.py's rules, and never git's own directory), or None."""
    problem = relpath_problem(rel)
    if problem is None and has_git_component(rel):
        return "names git's own directory (.git)"
    return problem


def open_beneath(root: Path, rel: str) -> int:
    """An fd of regular file `rel` below `root`: `rel` obeys the path rules, and no component
    of it is a link. The caller closes it."""
    problem = rel_problem(rel)
    if problem is not None:
        raise _refuse(repr(rel), f"is not a safe relative path: {problem}")
    try:
        dfd, name = open_parent(root, rel, create=False)
    except FileNotFoundError:
        raise Missing(errno.ENOENT, f"{rel} does not exist") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(
                rel, "has a component that is a symbolic link or not a directory"
            ) from None
        raise
    try:
        return _open_at(dfd, name, rel)
    finally:
        os.close(dfd)


def open_named(path: Path) -> int:
    """An fd of the regular file at `path`, a path the user typed: its directories are the
    user's choice, the file itself is not followed if it is a link."""
    return _open_at(None, os.fspath(path), str(path))


def read_capped(fd: int, what: str, limit: int = MAX_DOCUMENT) -> bytes:
    """Every byte of an open file, refused once it grows past `limit` (the size fstat reports is
    checked first, and the read stops one chunk after the cap: a file that grows while it is read
    cannot exhaust memory either)."""
    if os.fstat(fd).st_size > limit:
        raise _refuse(what, f"is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _refuse(what, f"is larger than {limit} bytes")
    return b"".join(chunks)


def read_beneath(root: Path, rel: str, limit: int = MAX_DOCUMENT) -> bytes:
    fd = open_beneath(root, rel)
    try:
        return read_capped(fd, rel, limit)
    finally:
        os.close(fd)


def read_named(path: Path, limit: int = MAX_DOCUMENT) -> bytes:
    fd = open_named(path)
    try:
        return read_capped(fd, str(path), limit)
    finally:
        os.close(fd)


def sha256_beneath(root: Path, rel: str) -> str:
    """SHA-256 (hex) of regular file `rel` below `root`, streamed (no size cap: nothing is held
    in memory), under the same rules as `read_beneath`."""
    fd = open_beneath(root, rel)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)
