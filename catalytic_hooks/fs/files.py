"""Filesystem primitives: atomic writes, fsync, and dirfd-relative operations that never
follow a symlink."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Temp file in the same directory + fsync + os.replace: readers see old or new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data) if len(data) < (1 << 30) else _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot write {path}: {exc}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_all(fd: int, data: bytes) -> None:
    _write_all(fd, data)


def open_dir_chain(root_fd: int, parts: list[str], *, create: bool) -> int:
    """Walk (and optionally create) `parts` below `root_fd` one component at a time with
    O_NOFOLLOW, so a symlink anywhere on the way fails instead of redirecting. Returns a new fd."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_fd(fd: int, limit: int | None = None) -> bytes:
    """All bytes from an open file; OSError when it is larger than `limit`."""
    if limit is not None and os.fstat(fd).st_size > limit:
        raise OSError(f"larger than {limit} bytes")
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


_SYNCFS: Any = None
_SYNCFS_LOADED = False


def _syncfs() -> Any:
    """libc's syncfs, loaded on first use (ctypes is not free at start-up); None if absent."""
    global _SYNCFS, _SYNCFS_LOADED
    if not _SYNCFS_LOADED:
        _SYNCFS_LOADED = True
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.syncfs
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            _SYNCFS = fn
        except (OSError, AttributeError):
            _SYNCFS = None
    return _SYNCFS


def have_syncfs() -> bool:
    return _syncfs() is not None


def sync_filesystem(fd: int) -> bool:
    """Make every write to the filesystem holding `fd` durable with one syncfs(2): one barrier
    instead of an fsync per file (measured: 20,000 fsyncs cost 10 s here, one syncfs ~50 ms).
    Returns False where syncfs is unavailable, so the caller fsyncs file by file."""
    fn = _syncfs()
    if fn is None:
        return False
    import ctypes

    if fn(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return True


class DirFds:
    """Directory fds below a root, opened once each, component by component with O_NOFOLLOW.
    An fd keeps pointing at the directory it opened even if the path is swapped for a symlink
    later, so a write through it can never land outside the root."""

    def __init__(self, root_fd: int, *, create: bool):
        self.root_fd = root_fd
        self.create = create
        self.fds: dict[str, int] = {}

    def get(self, parts: list[str]) -> int:
        if not parts:
            return self.root_fd
        key = "/".join(parts)
        fd = self.fds.get(key)
        if fd is None:
            parent = self.get(parts[:-1])
            if self.create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(parts[-1], 0o755, dir_fd=parent)
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
