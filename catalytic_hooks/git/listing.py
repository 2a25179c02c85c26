"""A snapshot built from nothing, digested where the files are hashed.

The first digest of a policy reads every protected file. Handing the hashing workers parsed
entries and taking back a result per file left most of the CPU in this process (parsing the
listing, classifying, pickling 100,000 paths out and 100,000 results back), which on two cores
is CPU the workers do not get. Here the workers get raw pieces of `git ls-tree -r -z` output and
send back finished records: this process only cuts the listing at record boundaries and joins
the pieces.

A file's bytes stand for its index entry only when their git blob id is the entry's; anything
else (a modified, unreadable or filtered file, a file missing from a sparse or partial checkout)
comes back as left over and is read from the object database by the caller, as before.
"""

from __future__ import annotations

import itertools
import os
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO

from catalytic_hooks.core.policy import PathClass, Policy
from catalytic_hooks.core.workers import worker_count
from catalytic_hooks.git.hashing import HashPool, hash_disk
from catalytic_hooks.git.repo import MODE_GITLINK, MODE_LINK

# What a worker sends back for one piece: the records of the protected entries whose disk bytes
# are their blob (text, then the starts and key lengths as array("Q") bytes), the entries left
# for the object database as (path, mode, blob id), and a path no record can hold (None: none).
Listed = tuple[bytes, bytes, bytes, list[tuple[str, str, str]], str | None]
Piece = tuple[str, str | None, Policy, bytes]

_PIECE = 1 << 16  # bytes of listing per job: about 700 entries
_POOL_MIN_BYTES = 160_000  # about 2,000 entries: below this a pool costs more than it saves
_AHEAD = 4  # jobs in flight per worker: memory stays bounded at 1,000,000 entries


def digest_piece(job: Piece) -> Listed:
    """The records of one piece of `git ls-tree -r -z` output (`root` ends with a slash)."""
    root, fmt, policy, raw = job
    classify = policy.classifier()
    protected = PathClass.PROTECTED
    # NUL cannot occur (it separates the records); CR and LF are looked for only when present.
    suspicious = b"\n" in raw or b"\r" in raw
    parts: list[str] = []
    starts, klens = array("Q", [0]), array("Q")
    left: list[tuple[str, str, str]] = []
    pos = 0
    for rec in raw.decode("utf-8", "surrogateescape").split("\0"):
        if not rec:
            continue
        tab = rec.index("\t")
        path = rec[tab + 1 :]
        if classify(path) is not protected:
            continue
        if path.isascii():
            klen = len(path)
        else:
            try:
                klen = len(path.encode("utf-8"))
            except UnicodeEncodeError:
                return b"", b"", b"", [], path
        if suspicious and ("\n" in path or "\r" in path):
            return b"", b"", b"", [], path
        mode, oid = rec[:6], rec[rec.rindex(" ", 0, tab) + 1 : tab]
        if mode == MODE_GITLINK:
            value = "gitlink:" + oid
        else:
            try:
                _, sha, got = hash_disk(fmt, root + path)
            except OSError:
                got = None
            if got != oid:
                left.append((path, mode, oid))
                continue
            value = tagged(mode, sha)
        parts.append(f"{path}:{value}\n")
        pos += klen + len(value) + 2
        starts.append(pos)
        klens.append(klen)
    return "".join(parts).encode("utf-8"), starts.tobytes(), klens.tobytes(), left, None


def tagged(mode: str, sha: str) -> str:
    """The record value of a file or symlink entry whose content hashes to `sha`."""
    return "symlink:" + sha if mode == MODE_LINK else sha


def _pieces(stream: IO[bytes]) -> Iterator[bytes]:
    """The listing cut after a record's terminating NUL, about _PIECE bytes at a time."""
    rest = b""
    while data := stream.read(_PIECE):
        buf = rest + data
        cut = buf.rfind(b"\0") + 1
        if cut:
            rest = buf[cut:]
            yield buf[:cut]
        else:
            rest = buf
    if rest:
        yield rest


def digest_listing(
    stream: IO[bytes], root: str, fmt: str | None, policy: Policy, pool: HashPool
) -> Iterator[Listed]:
    """Each piece of the listing on `stream` digested, in order: on `pool`'s workers with a
    bounded number in flight, or in this process for a listing too small to be worth it."""
    root = os.path.join(root, "")
    pieces = _pieces(stream)
    if worker_count() == 1:
        for piece in pieces:
            yield digest_piece((root, fmt, policy, piece))
        return
    first: list[bytes] = []
    size = 0
    for piece in pieces:
        first.append(piece)
        size += len(piece)
        if size >= _POOL_MIN_BYTES:
            break
    else:
        if first:
            yield digest_piece((root, fmt, policy, b"".join(first)))
        return
    ahead = _AHEAD * worker_count()
    pending: deque[Callable[[], Listed]] = deque()
    for piece in itertools.chain(first, pieces):
        job = (root, fmt, policy, piece)
        wait = pool.apply(digest_piece, job)
        # None: no fork on this platform, so the piece is digested here
        pending.append(wait if wait is not None else _done(digest_piece(job)))
        while len(pending) > ahead:
            yield pending.popleft()()
    while pending:
        yield pending.popleft()()


def _done(listed: Listed) -> Callable[[], Listed]:
    return lambda: listed
