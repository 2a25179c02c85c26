"""Whole-file primitives: atomic writes, complete writes and reads, fsync, SHA-256 of an fd."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

CHUNK = 1 << 20
# Streams of a GiB go into the page cache in writes of this size. From 32 KiB up, Linux 6.x
# backs a write with large folios, high-order blocks of free memory; on a virtual machine
# whose balloon reports free memory to its host, those are the blocks handed back, and
# touching them again cost 0.9-2.1 s of system time per GiB here, against 0.4-0.7 s in
# 16 KiB writes, which come from memory the kernel keeps at hand (curl writes 16 KiB too).
# Where no memory was handed back, 1 MiB writes cost 0.3 s per GiB and 16 KiB ones 0.1 s more.
# `python bench/write_slices.py` measures both.
WRITE_SLICE = 16 * 1024


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write may write less than asked (signals, pipes, quotas near full): loop until done."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_sliced(fd: int, data: bytes | memoryview) -> None:
    """`write_all` in WRITE_SLICE pieces, for a stream's large buffers (see WRITE_SLICE)."""
    view = memoryview(data)
    at, end = 0, len(view)
    while at < end:
        at += os.write(fd, view[at : at + WRITE_SLICE])


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Temp file in the same directory + fsync + os.replace: readers see old or new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(16).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot write {path}: {exc}") from exc


def read_fd(fd: int, limit: int | None = None) -> bytes:
    """All bytes from an open file; OSError when it is larger than `limit`."""
    if limit is not None and os.fstat(fd).st_size > limit:
        raise OSError(f"larger than {limit} bytes")
    chunks = []
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
        if limit is not None and sum(map(len, chunks)) > limit:
            raise OSError(f"larger than {limit} bytes")
    return b"".join(chunks)


def feed_fd(fd: int, *hashers: Any) -> int:
    """Feed every byte of an open file (from the current offset) to each hashlib object in one
    read pass; returns the number of bytes read."""
    total = 0
    while chunk := os.read(fd, CHUNK):
        total += len(chunk)
        for h in hashers:
            h.update(chunk)
    return total


def sha256_fd(fd: int) -> str:
    """The one SHA-256-of-an-open-file helper (hex, no prefix)."""
    h = hashlib.sha256()
    feed_fd(fd, h)
    return h.hexdigest()


def sha256_path(path: Path | str) -> str:
    """SHA-256 (hex) of a regular file, never following a final symlink, never blocking on a
    FIFO; OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return sha256_fd(fd)
    finally:
        os.close(fd)
