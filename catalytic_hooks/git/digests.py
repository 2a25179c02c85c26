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

import os
import subprocess

from catalytic_hooks.core.digest import TreeDigest, check_record_paths
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, Policy, policy_from_sources, read_sources
from catalytic_hooks.core.records import Overlay
from catalytic_hooks.core.version import VERSION
from catalytic_hooks.git.hashing import HashCache, resolve_contents
from catalytic_hooks.git.indexid import identity_of, settled
from catalytic_hooks.git.quickdigest import encode, remember
from catalytic_hooks.git.repo import Repo, WorktreeStatus
from catalytic_hooks.git.runstate import IndexFlags, index_file
from catalytic_hooks.git.snapshot import Snapshot, index_snapshot, snapshot_name
from catalytic_hooks.git.views import View, ViewEntry, ViewKind, disk_entry


def tree_digest(view: View, policy: Policy, cache: HashCache | None = None) -> TreeDigest:
    """The digest of a whole view: every protected entry resolved (cache, disk or object DB)."""
    cache = cache if cache is not None else HashCache(None)
    classify = policy.classifier()
    protected = PathClass.PROTECTED
    chosen = [e for e in view.entries if classify(e.path) is protected]
    values = resolve_contents(view, chosen, cache)
    cache.save()
    return TreeDigest.of(values)


def index_digest(repo: Repo, policy: Policy, cache: HashCache) -> TreeDigest:
    return TreeDigest(Overlay(index_snapshot(repo, policy).records))


def worktree_digest(
    repo: Repo,
    policy: Policy,
    cache: HashCache,
    *,
    ignored: bool = False,
    rehash: IndexFlags | None = None,
    base: Snapshot | None = None,
    status: subprocess.Popen[bytes] | None = None,
) -> TreeDigest:
    """The index snapshot (`base`, else loaded) patched with what `git status` reports.

    `rehash`: index entries whose disk state git status does not report, read from disk
    anyway. Absent from disk, an assume-unchanged entry is deleted; a skip-worktree entry is
    outside the sparse checkout, so it keeps its index value (neither deleted nor read).
    `status`: the caller's `repo.status_start(ignored=...)`, started before other work."""
    # git status runs while the index values load
    status_proc = status or repo.status_start(ignored=ignored)
    snap = base or index_snapshot(repo, policy)
    st = repo.finish_status(status_proc)
    snap, st = _same_index(
        repo,
        policy,
        snap,
        st,
        getattr(status_proc, "started_ns", 0),
        ignored=ignored,
        fixed=base is not None,
    )
    records = snap.records
    flags = rehash or IndexFlags()
    for path in flags.all:
        if os.path.lexists(repo.top / path):
            st.modified.add(path)
        elif path not in flags.sparse:
            st.modified.add(path)
            st.deleted.add(path)
    removed: set[str] = set()
    added: dict[str, str] = {}
    classify = policy.classifier()
    fresh: list[ViewEntry] = []
    for path in sorted(st.modified | st.deleted):
        old = records.get(path)
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
            # A nested repository: by its HEAD, or the null id before its first commit.
            if classify(path.rstrip("/")) is PathClass.PROTECTED:
                added[path.rstrip("/")] = f"gitlink:{repo.nested_id(path.rstrip('/'))}"
            continue
        if classify(path) is PathClass.PROTECTED:
            fresh.append(disk_entry(repo.top, path))
    check_record_paths(e.path for e in fresh)
    if fresh:
        added.update(
            resolve_contents(View(ViewKind.WORKTREE, repo.top, tuple(fresh), repo), fresh, cache)
        )
    cache.save()
    check_record_paths(added)
    return TreeDigest(Overlay(records, frozenset(removed), added))


def _same_index(
    repo: Repo,
    policy: Policy,
    snap: Snapshot,
    st: WorktreeStatus,
    since: int,
    *,
    ignored: bool,
    fixed: bool,
) -> tuple[Snapshot, WorktreeStatus]:
    """`snap` and a `git status` (`st`, started at `since`) that compared the working tree with
    the very index `snap` describes. A `git add` while the first status ran, or just before, may
    have given git another index than the snapshot's: then git is asked again, with the index's
    identity taken before and after, and the snapshot taken again (unless the caller `fixed`
    it: then the digest fails rather than mix two indexes)."""
    index = str(index_file(repo))
    if settled(index, snap.ident, since):
        return snap, st
    for _ in range(3):
        before = identity_of(index)
        if before != snap.ident:
            if fixed:
                break
            snap = index_snapshot(repo, policy)
            if snap.ident != before:
                continue
        st = repo.finish_status(repo.status_start(ignored=ignored))
        if identity_of(index) == before:
            return snap, st
    raise CatalyticError(
        ErrorCode.DIGEST_COMPUTATION_FAILED,
        "the index changed while the working tree was digested (another git "
        "command is running here?); digest again once it is done",
    )


def remember_quick(repo: Repo) -> None:
    """Record what git.quickdigest needs to answer the next plain digest of this repository:
    the roots given by the policy sources' bytes read now (not the ones this digest used, which
    may have changed since: the record binds roots to exactly the bytes they come from)."""
    sources = read_sources(repo.top)
    try:
        policy = policy_from_sources(sources)
    except CatalyticError:
        return
    remember(
        str(repo.git_dir),
        encode(VERSION, str(repo.top), sources, snapshot_name(repo, policy), policy.cache_key()),
    )
