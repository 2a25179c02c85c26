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
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.workers import worker_count
from catalytic_hooks.fs.files import CHUNK, atomic_write, feed_fd
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.statefiles import BLOB_CACHE
from catalytic_hooks.git.statefiles import path as state_path
from catalytic_hooks.git.views import Kind, View, ViewEntry

_CACHE_MAGIC = "catalytic-blob-sha256 v1"
_J = TypeVar("_J")
_R = TypeVar("_R")


class HashCache:
    """`<git common dir>/catalytic/blob-sha256`: header line with count and checksum, then
    `<blob id> <sha256>` lines. Anything that does not check out is discarded and rebuilt."""

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, str] | None = None if path is not None else {}
        self.dirty = False

    @property
    def entries(self) -> dict[str, str]:
        # Loaded on first use: a digest answered from the index snapshot never needs it.
        if self._entries is None:
            self._entries = _load_cache(self.path) if self.path is not None else {}
        return self._entries

    @classmethod
    def for_repo(cls, repo: Repo) -> HashCache:
        return cls(Path(state_path(str(repo.common_dir), BLOB_CACHE)))

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


class DiskHash(NamedTuple):
    kind: Kind
    sha256: str
    git_oid: str | None  # blob id of the bytes read (None if the file changed while reading)


def _oid_hasher(fmt: str | None, size: int) -> Any:
    if fmt is None:
        return None
    h = hashlib.sha256() if fmt == "sha256" else hashlib.sha1()
    h.update(b"blob %d\x00" % size)
    return h


def hash_disk(fmt: str | None, abspath: str) -> DiskHash:
    """Hash a file or symlink at `abspath` without following links; with `fmt` (the
    repository's object format) also compute the git blob id of exactly the bytes read."""
    # lstat before opening: opening a device node can do something (a tape rewinds, a line
    # hangs up), and a working tree is not trusted to hold only files and links.
    st = os.lstat(abspath)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(os.fsencode(abspath))
        g = _oid_hasher(fmt, len(target))
        if g is not None:
            g.update(target)
        return DiskHash(
            "symlink", hashlib.sha256(target).hexdigest(), g.hexdigest() if g is not None else None
        )
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"not a regular file or symlink: {abspath}")
    fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode):
            raise OSError(f"not a regular file or symlink: {abspath}")
        size = fst.st_size
        # One read of the size announced plus one byte (not a 1 MiB buffer per small file);
        # the loop still reads to the end, so a file that grew or shrank is noticed.
        data = os.read(fd, size + 1 if size < CHUNK else CHUNK)
        h = hashlib.sha256(data)
        g = _oid_hasher(fmt, size)
        total = len(data)
        if g is not None:
            g.update(data)
        if data:
            total += feed_fd(fd, *(x for x in (h, g) if x is not None))
    finally:
        os.close(fd)
    git_oid = g.hexdigest() if g is not None and total == size else None
    return DiskHash("file", h.hexdigest(), git_oid)


# What a worker sends back for each path: a DiskHash's fields as a plain tuple, because
# pickling anything richer dominated getting results back (docs/decisions/0005), or
# (None, the error, None).
_Result = tuple[Kind | None, str, str | None]


def _hash_batch(job: tuple[str, str | None, list[str]]) -> list[_Result]:
    root, fmt, paths = job
    out: list[_Result] = []
    for p in paths:
        try:
            kind, sha, oid = hash_disk(fmt, os.path.join(root, p))
            out.append((kind, sha, oid))
        except OSError as exc:
            out.append((None, str(exc), None))
    return out


# Below this many files a pool costs more (fork, pickling) than it saves.
_POOL_MIN_FILES = 2000
_BATCH = 256


class HashPool:
    """Worker processes for hashing, started on first use and shared by every call made
    inside the `with` block (a build digesting 1,000,000 files in chunks forks once)."""

    def __init__(self) -> None:
        self._pool: Any = None

    def __enter__(self) -> HashPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def _started(self) -> Any:
        """The worker pool, started now if need be (None: no fork on this platform)."""
        if self._pool is None:
            import multiprocessing

            try:
                ctx = multiprocessing.get_context("fork")
            except ValueError:
                return None
            self._pool = ctx.Pool(worker_count())
        return self._pool

    def apply(self, fn: Callable[[_J], _R], job: _J) -> Callable[[], _R] | None:
        """Start `fn(job)` in a worker; returns what waits for its result (None: no pool on
        this platform, the caller runs it in-process)."""
        pool = self._started()
        if pool is None:
            return None
        waiter: Callable[[], _R] = pool.apply_async(fn, (job,)).get
        return waiter

    def submit(
        self, jobs: list[tuple[str, str | None, list[str]]]
    ) -> Callable[[], list[list[_Result]]] | None:
        """Start hashing `jobs`; returns what waits for the results (None: no pool on this
        platform, the caller hashes in-process)."""
        pool = self._started()
        if pool is None:
            return None
        pending = pool.map_async(_hash_batch, jobs, chunksize=1)

        def wait() -> list[list[_Result]]:
            result: list[list[_Result]] = pending.get()
            return result

        return wait


def start_hashing(
    root: str, fmt: str | None, paths: list[str], pool: HashPool | None = None
) -> Callable[[], list[_Result]]:
    """Hash many files on all cores; returns what waits for the results, in order. Processes,
    not threads: per-file work is mostly Python bytecode holding the GIL, so threads measured
    barely faster than one core. Without a `pool` the hashing is done before returning."""
    if len(paths) < _POOL_MIN_FILES or worker_count() == 1:
        done = _hash_batch((root, fmt, paths))
        return lambda: done
    jobs = [(root, fmt, paths[i : i + _BATCH]) for i in range(0, len(paths), _BATCH)]
    with contextlib.ExitStack() as stack:
        own = pool is None
        if pool is None:
            pool = stack.enter_context(HashPool())
        wait = pool.submit(jobs)
        if wait is None:
            done = _hash_batch((root, fmt, paths))
            return lambda: done
        if own:
            batches = wait()
            return lambda: [r for batch in batches for r in batch]
    return lambda: [r for batch in wait() for r in batch]


class Resolution:
    """`resolve_contents` in two halves: the constructor answers what the cache knows and starts
    hashing the rest (on `pool`, without waiting), `finish` waits and resolves what is left,
    so a caller can prepare its next chunk while the workers hash this one."""

    def __init__(
        self,
        view: View,
        entries: list[ViewEntry],
        cache: HashCache | None,
        pool: HashPool | None = None,
    ):
        """`cache` None: neither consulted nor filled (a snapshot built from nothing, whose
        entries are looked up once)."""
        self.view, self.cache = view, cache
        self.values: dict[str, str] = {}
        self.pending: list[ViewEntry] = []
        empty: dict[str, str] = {}
        get = (cache.entries if cache is not None and any(e.oid for e in entries) else empty).get
        for e in entries:
            if e.kind == "gitlink":
                self.values[e.path] = f"gitlink:{e.oid}"
                continue
            cached = get(e.oid) if e.oid else None
            if cached is not None:
                self.values[e.path] = f"symlink:{cached}" if e.kind == "symlink" else cached
            else:
                self.pending.append(e)
        repo = view.repo
        fmt = repo.object_format if repo is not None else None
        no_disk: list[_Result] = [(None, "no working tree", None)] * len(self.pending)
        self._results = (
            start_hashing(os.fspath(view.root), fmt, [e.path for e in self.pending], pool)
            if self.pending and view.has_disk
            else lambda: no_disk
        )

    def finish(self) -> dict[str, str]:
        if not self.pending:
            return self.values
        results = self._results()
        repo, cache, values = self.view.repo, self.cache, self.values
        from_db = [
            e.oid
            for e, (kind, _, oid) in zip(self.pending, results, strict=True)
            if e.oid is not None and not e.trust_disk and (kind is None or oid != e.oid)
        ]
        if from_db and repo is not None:
            repo.prefetch(from_db)
        for e, (kind, sha, oid) in zip(self.pending, results, strict=True):
            if kind is not None and e.oid is not None and oid == e.oid:
                if cache is not None:
                    cache.put(e.oid, sha)
                values[e.path] = _tag(e.kind if not e.trust_disk else kind, sha)
            elif e.trust_disk:
                if kind is None:
                    raise CatalyticError(
                        ErrorCode.HASH_FAILED,
                        f"cannot read {e.path}: {sha}",
                        path=e.path,
                    )
                values[e.path] = _tag(kind, sha)
            else:
                if repo is None or e.oid is None:
                    raise CatalyticError(
                        ErrorCode.HASH_FAILED, f"no content for {e.path}", path=e.path
                    )
                sha = hashlib.sha256(repo.read_blob(e.oid)).hexdigest()
                if cache is not None:
                    cache.put(e.oid, sha)
                values[e.path] = _tag(e.kind, sha)
        return values


def resolve_contents(
    view: View, entries: list[ViewEntry], cache: HashCache, pool: HashPool | None = None
) -> dict[str, str]:
    """Manifest values for `entries`: 64 hex for files, `symlink:<hex>` for links,
    `gitlink:<commit>` for submodules. Never follows a symlink; fails closed on unreadable data."""
    return Resolution(view, entries, cache, pool).finish()


def _tag(kind: Kind, sha: str) -> str:
    return f"symlink:{sha}" if kind == "symlink" else sha
