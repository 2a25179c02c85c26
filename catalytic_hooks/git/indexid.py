"""The identity of an index file, with nothing but `os` imported: the digest's quick path
(git.quickdigest) and the index snapshot (git.snapshot, through git.runstate) must compute the
same string for the same file."""

from __future__ import annotations

import os

# How long before a git command started the index must have been written for that command to
# have read it: file times come from the kernel's coarse clock, up to one tick (1-10 ms) behind
# the clock `time.time_ns()` reads, and git writes an index by renaming a new file into place.
SETTLE_NS = 50_000_000


def identity_of(path: str) -> str | None:
    """Path, size, inode, mtime, ctime and trailing checksum of the index file at `path` (None:
    no index yet, or one without a checksum). The ctime is the field no writer can set back: a
    command that rewrites entries in place, keeping the size, the old checksum (git does not
    check it when it reads) and the mtime, still moves it."""
    return _identity(path)[0]


def _identity(path: str) -> tuple[str | None, int | None]:
    """(identity_of's value, the file's ctime in ns; None: no file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        st = os.fstat(fd)
        if st.st_size < 64:
            return None, st.st_ctime_ns
        tail = os.pread(fd, 32, st.st_size - 32)
    except OSError:
        return None, None
    finally:
        os.close(fd)
    if tail.count(0) == len(tail):
        # index.skipHash: no checksum, so nothing ties a snapshot to this content
        return None, st.st_ctime_ns
    ident = f"{path}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{st.st_ctime_ns}|{tail.hex()}"
    return ident, st.st_ctime_ns


def settled(path: str, ident: str | None, since_ns: int) -> bool:
    """Whether a git command started at `since_ns` (`time.time_ns()`) or later read the very
    index a snapshot of identity `ident` describes: the file is that one now, and nothing
    changed it (git replaces it; any write sets the ctime, which nobody can set back) since
    shortly before `since_ns`. False when that cannot be shown (say a `git add` ran meanwhile,
    or just before): the caller asks git again."""
    now, ctime = _identity(path)
    if ctime is None:
        return ident is None  # no index file now: a snapshot of none
    return ident is not None and now == ident and ctime < since_ns - SETTLE_NS
