"""Content hashing for views: a blob-id → SHA-256 cache, verified disk reads, parallel hashing.

A git blob id fixes the content, so a cache keyed by blob id can never be stale; entries are only
ever added after the bytes read were checked against that blob id, so a racy file or a wrong
listing can never poison it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import CatalyticError, ErrorCode
from .fsio import atomic_write
from .gitrepo import Repo
from .views import Kind, View, ViewEntry

_CACHE_MAGIC = "catalytic-blob-sha256 v1"
_CHUNK = 1 << 20


class HashCache:
    """`<git common dir>/catalytic/blob-sha256`: header line with count and checksum, then
    `<blob id> <sha256>` lines. Anything that does not check out is discarded and rebuilt."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, str] = {}
        self.dirty = False
        if path is not None:
            self.entries = _load_cache(path)

    @classmethod
    def for_repo(cls, repo: Repo) -> HashCache:
        return cls(repo.common_dir / "catalytic" / "blob-sha256")

    def get(self, oid: str) -> str | None:
        return self.entries.get(oid)

    def put(self, oid: str, sha: str) -> None:
        if self.entries.get(oid) != sha:
            self.entries[oid] = sha
            self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        body = "".join(f"{k} {v}\n" for k, v in self.entries.items()).encode()
        header = f"{_CACHE_MAGIC} {len(self.entries)} {hashlib.sha256(body).hexdigest()}\n"
        # A cache we cannot write is only slower, never wrong.
        with contextlib.suppress(CatalyticError, OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, header.encode() + body)
        self.dirty = False


def _load_cache(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    head, sep, body = data.partition(b"\n")
    parts = head.decode("ascii", "replace").rsplit(" ", 2)
    if not sep or len(parts) != 3 or parts[0] != _CACHE_MAGIC:
        return {}
    try:
        count = int(parts[1])
    except ValueError:
        return {}
    if hashlib.sha256(body).hexdigest() != parts[2]:
        return {}
    tokens = body.decode("ascii", "replace").split()
    if len(tokens) != 2 * count:
        return {}
    it = iter(tokens)
    return dict(zip(it, it, strict=True))


@dataclass(frozen=True)
class DiskHash:
    kind: Kind
    sha256: str
    git_oid: str | None  # blob id of the bytes read (None if the file changed while reading)


def hash_disk(repo: Repo | None, abspath: str) -> DiskHash:
    """Hash a file or symlink at `abspath` without following links."""
    st = os.lstat(abspath)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(os.fsencode(abspath))
        oid = repo.blob_oid_hasher(len(target)) if repo else None
        if oid is not None:
            oid.update(target)
        return DiskHash("symlink", hashlib.sha256(target).hexdigest(),
                        oid.hexdigest() if oid is not None else None)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"not a regular file or symlink: {abspath}")
    fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            raise OSError(f"not a regular file: {abspath}")
        h = hashlib.sha256()
        g = repo.blob_oid_hasher(fst.st_size) if repo else None
        total = 0
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            total += len(chunk)
            h.update(chunk)
            if g is not None:
                g.update(chunk)
    finally:
        os.close(fd)
    git_oid = g.hexdigest() if g is not None and total == fst.st_size else None
    return DiskHash("file", h.hexdigest(), git_oid)


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def resolve_contents(view: View, entries: list[ViewEntry], cache: HashCache) -> dict[str, str]:
    """Manifest values for `entries`: 64 hex for files, `symlink:<hex>` for links,
    `gitlink:<commit>` for submodules. Never follows a symlink; fails closed on unreadable data."""
    values: dict[str, str] = {}
    pending: list[ViewEntry] = []
    for e in entries:
        if e.kind == "gitlink":
            values[e.path] = f"gitlink:{e.oid}"
            continue
        cached = cache.get(e.oid) if e.oid else None
        if cached is not None:
            values[e.path] = _tag(e.kind, cached)
        else:
            pending.append(e)
    if not pending:
        return values

    repo = view.repo
    root = os.fspath(view.root)

    def work(e: ViewEntry) -> tuple[ViewEntry, DiskHash | None, BaseException | None]:
        if not view.has_disk:
            return e, None, None
        try:
            return e, hash_disk(repo, os.path.join(root, e.path)), None
        except OSError as exc:
            return e, None, exc

    if len(pending) > 64:
        with ThreadPoolExecutor(_workers()) as pool:
            results = list(pool.map(work, pending, chunksize=64))
    else:
        results = [work(e) for e in pending]

    for e, dh, exc in results:
        if dh is not None and e.oid is not None and dh.git_oid == e.oid:
            cache.put(e.oid, dh.sha256)
            values[e.path] = _tag(e.kind if not e.trust_disk else dh.kind, dh.sha256)
        elif e.trust_disk:
            if dh is None:
                raise CatalyticError(
                    ErrorCode.HASH_FAILED, f"cannot read {e.path}: {exc}", path=e.path,
                )
            values[e.path] = _tag(dh.kind, dh.sha256)
        else:
            if repo is None or e.oid is None:
                raise CatalyticError(ErrorCode.HASH_FAILED, f"no content for {e.path}",
                                     path=e.path)
            data = repo.read_blob(e.oid)
            sha = hashlib.sha256(data).hexdigest()
            cache.put(e.oid, sha)
            values[e.path] = _tag(e.kind, sha)
    return values


def _tag(kind: Kind, sha: str) -> str:
    return f"symlink:{sha}" if kind == "symlink" else sha
