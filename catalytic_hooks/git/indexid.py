"""The identity of an index file, with nothing but `os` imported: the digest's quick path
(git.quickdigest) and the index snapshot (git.snapshot, through git.state) must compute the
same string for the same file."""

from __future__ import annotations

import os


def identity_of(path: str) -> str | None:
    """Path, size, inode, mtime and trailing checksum of the index file at `path` (None: no
    index yet, or one without a checksum)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_size < 64:
            return None
        tail = os.pread(fd, 32, st.st_size - 32)
    except OSError:
        return None
    finally:
        os.close(fd)
    if tail.count(0) == len(tail):
        return None  # index.skipHash: no checksum, so nothing ties a snapshot to this content
    return f"{path}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{tail.hex()}"
