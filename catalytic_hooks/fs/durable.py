"""Durability barriers: one syncfs(2) for a whole phase instead of an fsync per file."""

from __future__ import annotations

import os
from typing import Any

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
    """Make every write to the filesystem holding `fd` durable with one syncfs(2)
    (docs/decisions/0004). Returns False where syncfs is unavailable, so the caller fsyncs file
    by file."""
    fn = _syncfs()
    if fn is None:
        return False
    import ctypes

    if fn(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return True


def durable(fd: int) -> None:
    """Everything written so far on `fd`'s filesystem is on disk (syncfs, else fsync of fd)."""
    if not sync_filesystem(fd):
        os.fsync(fd)
