"""Digests of views: any view in full (`tree_digest`), and fast index and working-tree digests
from a per-index snapshot of digest values.

The index file ends with a checksum of its whole content, so an unchanged checksum means the same
entries with the same blob ids. The digest values of every protected index entry are kept under
that checksum (and the policy's roots) in `<git dir>/catalytic/`; the working-tree digest is then
those values patched with exactly what `git status` reports as modified, deleted or untracked. The
result is identical to digesting the full views (the tests compare both), without re-parsing and
re-classifying 100,000 index entries on every run.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.core.canonical import canonical_hash
from catalytic_hooks.core.digest import TreeDigest, check_record_paths, manifest_digest, text_digest
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import PathClass, Policy
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.hashing import HashCache, resolve_contents
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.state import IndexFlags
from catalytic_hooks.git.views import View, ViewEntry, ViewKind, disk_entry, index_view

_MAGIC = b"catalytic-index-digest v1\n"


def tree_digest(view: View, policy: Policy, cache: HashCache | None = None) -> TreeDigest:
    """The digest of a whole view: every protected entry resolved (cache, disk or object DB)."""
    cache = cache if cache is not None else HashCache(None)
    classify = policy.classifier()
    protected = PathClass.PROTECTED
    chosen = [e for e in view.entries if classify(e.path) is protected]
    values = resolve_contents(view, chosen, cache)
    cache.save()
    return TreeDigest(manifest_digest(values), dict(sorted(values.items())))


def _index_file(repo: Repo) -> Path:
    env = repo.env.get("GIT_INDEX_FILE")
    if env:
        p = Path(env)
        return p if p.is_absolute() else repo.top / p
    return repo.git_dir / "index"


def _identity(repo: Repo) -> str | None:
    """Size, inode, mtime and trailing checksum of the index file (None: no index yet)."""
    path = _index_file(repo)
    try:
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size < 64:
                return None
            fh.seek(-32, os.SEEK_END)
            tail = fh.read(32)
    except OSError:
        return None
    return f"{path}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{tail.hex()}"


def _snapshot_file(repo: Repo, policy: Policy) -> Path:
    key = canonical_hash([repo.object_format, list(policy.protected_roots),
                          list(policy.exclusions), list(policy.tmp_roots),
                          list(policy.effective_durable)])
    return repo.git_dir / "catalytic" / f"index-digest-{key[:32]}"


@dataclass(frozen=True)
class IndexDigest:
    """Sorted keys, their values, and the rendered `path:value` records (one per key)."""

    digest: str
    keys: list[str]
    vals: list[str]
    records: list[str]

    def tree_digest(self) -> TreeDigest:
        return TreeDigest(self.digest, dict(zip(self.keys, self.vals, strict=True)))


def _load(path: Path, ident: str) -> IndexDigest | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 32:
        return None
    body = data[len(_MAGIC) + 32:]
    if hashlib.sha256(body).digest() != data[len(_MAGIC):len(_MAGIC) + 32]:
        return None  # corrupt: never trusted, rebuilt below
    try:
        # NUL never occurs in a git path nor in a value, "\n" never in a digested path.
        stored_ident, digest, keys, vals, text = body.decode("utf-8", "surrogateescape").split(
            "\0\0")
    except ValueError:
        return None
    if stored_ident != ident:
        return None
    if not keys:
        return IndexDigest(digest, [], [], [])
    snap = IndexDigest(digest, keys.split("\0"), vals.split("\0"), text.split("\n")[:-1])
    if not len(snap.keys) == len(snap.vals) == len(snap.records):
        return None
    return snap


def _save(path: Path, ident: str, snap: IndexDigest) -> None:
    text = "".join(r + "\n" for r in snap.records)
    body = "\0\0".join([ident, snap.digest, "\0".join(snap.keys), "\0".join(snap.vals),
                        text]).encode("utf-8", "surrogateescape")
    # A snapshot we cannot write only costs speed.
    with contextlib.suppress(OSError, CatalyticError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, _MAGIC + hashlib.sha256(body).digest() + body)


def _build(values: dict[str, str]) -> IndexDigest:
    keys = sorted(values)
    vals = [values[k] for k in keys]
    records = list(map("{}:{}".format, keys, vals))
    text = "".join(r + "\n" for r in records)
    check_record_paths(keys)
    return IndexDigest(text_digest(text), keys, vals, records)


def index_snapshot(repo: Repo, policy: Policy, cache: HashCache) -> IndexDigest:
    """Digest values of every protected entry of the index, from the snapshot when the index is
    unchanged, else computed (and the snapshot refreshed)."""
    ident = _identity(repo)
    snap_path = _snapshot_file(repo, policy)
    if ident is not None:
        hit = _load(snap_path, ident)
        if hit is not None:
            return hit
    view = index_view(repo)
    classify = policy.classifier()
    chosen = [e for e in view.entries if classify(e.path) is PathClass.PROTECTED]
    check_record_paths(e.path for e in chosen)
    snap = _build(resolve_contents(view, chosen, cache))
    if ident is not None and ident == _identity(repo):
        _save(snap_path, ident, snap)
    return snap


def index_digest(repo: Repo, policy: Policy, cache: HashCache) -> TreeDigest:
    td = index_snapshot(repo, policy, cache).tree_digest()
    cache.save()
    return td


def worktree_digest(repo: Repo, policy: Policy, cache: HashCache, *, ignored: bool = False,
                    rehash: IndexFlags | None = None) -> TreeDigest:
    """`rehash`: index entries whose disk state git status does not report, read from disk
    anyway. Absent from disk, an assume-unchanged entry is deleted; a skip-worktree entry is
    outside the sparse checkout, so it keeps its index value (neither deleted nor read)."""
    status_proc = repo.status_start(ignored=ignored)  # runs while the index values load
    base = index_snapshot(repo, policy, cache)
    st = repo.finish_status(status_proc)
    flags = rehash or IndexFlags()
    for path in flags.all:
        if os.path.lexists(repo.top / path):
            st.modified.add(path)
        elif path not in flags.sparse:
            st.modified.add(path)
            st.deleted.add(path)
    if not (st.modified or st.deleted or st.untracked or st.ignored):
        return base.tree_digest()  # a clean working tree is exactly the index
    removed: set[str] = set()
    added: dict[str, str] = {}
    classify = policy.classifier()
    fresh: list[ViewEntry] = []
    for path in sorted(st.modified | st.deleted):
        i = bisect.bisect_left(base.keys, path)
        old = base.vals[i] if i < len(base.keys) and base.keys[i] == path else None
        if old is not None:
            removed.add(path)
        if path in st.deleted or classify(path) is not PathClass.PROTECTED:
            continue
        if old is not None and old.startswith("gitlink:"):
            head = repo.submodule_head(path) if path in st.submodule_moved else None
            added[path] = f"gitlink:{head}" if head else old
        else:
            fresh.append(disk_entry(repo.top, path))
    for path in (*st.untracked, *st.ignored):
        if path.endswith("/"):
            head = repo.submodule_head(path.rstrip("/"))
            if head and classify(path.rstrip("/")) is PathClass.PROTECTED:
                added[path.rstrip("/")] = f"gitlink:{head}"
            continue
        if classify(path) is PathClass.PROTECTED:
            fresh.append(disk_entry(repo.top, path))
    check_record_paths(e.path for e in fresh)
    if fresh:
        added.update(resolve_contents(View(ViewKind.WORKTREE, repo.top, tuple(fresh), repo),
                                      fresh, cache))
    cache.save()
    return _patched(base, removed, added)


def _patched(base: IndexDigest, removed: set[str], added: dict[str, str]) -> TreeDigest:
    """The base (sorted) with a few paths removed or replaced and a few added, spliced into the
    sorted lists instead of re-sorting and re-rendering 100,000 records."""
    keys, vals, records = list(base.keys), list(base.vals), list(base.records)
    for k in sorted(removed | set(added), reverse=True):
        i = bisect.bisect_left(keys, k)
        if i < len(keys) and keys[i] == k:
            del keys[i], vals[i], records[i]
    for k in sorted(added):
        i = bisect.bisect_left(keys, k)
        keys.insert(i, k)
        vals.insert(i, added[k])
        records.insert(i, f"{k}:{added[k]}")
    check_record_paths(added)
    text = "\n".join(records) + ("\n" if records else "")
    return TreeDigest(text_digest(text), dict(zip(keys, vals, strict=True)))
