"""`catalytic digest --worktree` and `--index`, answered without loading the rest of the tool.

A warm working-tree digest is git's `git status` plus the stored index snapshot patched with what
it reports. The full path also imports the policy parser, the repository layer and the receipt
code (typing, dataclasses, pathlib, tomllib, json, subprocess: about 80 ms of CPU) while `git
status` already keeps both cores of a small machine busy, so the digest ended 60-100 ms after
git did. This module imports `os`, `hashlib`, the records and git.statefiles; it answers only when

- the last full digest of this repository (the plain command, run from inside it) recorded its
  roots here (git.statefiles.DIGEST_RECORD), for policy sources whose bytes on disk still
  hash the same, under this version of the tool and the same top directory;
- the stored index snapshot belongs to the index file as it is now (git.snapshot), and no
  interrupted run is pending;
- that index file was in place since before `git status` started (git.indexid.settled), so
  git compared the working tree with the index the snapshot describes;
- `git status` reports only plain entries: no submodule, no nested repository, no unmerged
  entry, no special file, no name a digest cannot hold, and at most `_MAX_FRESH` files to read.

Anything else returns None and the full path decides, with the same `git status` output
(tests/test_quick_digest.py compares both paths on every kind of change).
"""

from __future__ import annotations

import hashlib
import os
import stat

from catalytic_hooks.core.records import Overlay, Records
from catalytic_hooks.core.roots import class_of
from catalytic_hooks.git.earlyspawn import QUICK_DIGEST, Spawned, spawn_untracked_under
from catalytic_hooks.git.indexid import identity_of, settled
from catalytic_hooks.git.statefiles import (
    DIGEST_GUESS,
    DIGEST_RECORD,
    frame,
    is_snapshot_name,
    join_list,
    pending,
    read,
    split_list,
    store,
    unframe,
)
from catalytic_hooks.git.statefiles import path as state_path

_MAGIC = "catalytic-digest-quick v1"
# core.policy.POLICY_SOURCES, in that order (not imported: tomllib comes with it; a test pins it)
SOURCES = ("pyproject.toml", ".catalytic.toml")
# core.policy.Policy.cache_roots's keys this digest classifies by (a test pins them)
ROOTS = ("exclusions", "tmp", "durable", "protected")
_FIELDS = 3 + len(SOURCES) + len(ROOTS)
_MAX_FRESH = 1000  # files read here; the full path hashes more on all cores


def fingerprint(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def encode(
    version: str,
    top: str,
    sources: dict[str, bytes | None],
    snapshot: str,
    roots: dict[str, list[str]],
) -> bytes:
    """The record (git.statefiles.frame): version, top, the sources' fingerprints, the
    snapshot's file name and the roots."""
    return frame(
        _MAGIC,
        [
            version,
            top,
            *(fingerprint(sources.get(n)) for n in SOURCES),
            snapshot,
            *(join_list(roots[k]) for k in ROOTS),
        ],
    )


def remember(git_dir: str, record: bytes) -> None:
    """Store `record` (from `encode`) for the next plain digest (called by the full path)."""
    store(state_path(git_dir, DIGEST_RECORD), record)


def quick_digest(argv: list[str], status: Spawned | None, where: Spawned | None) -> str | None:
    """The line `catalytic digest` prints for `argv`, or None: the full path decides (and reads
    `status`, which this only ever waits for). `where`: git.earlyspawn.early_where's process."""
    if argv not in QUICK_DIGEST or where is None or os.environ.get("GIT_INDEX_FILE"):
        return None
    worktree = argv == ["--worktree"]
    if worktree and status is None:
        return None
    try:
        return _quick(worktree, status, where)
    except (OSError, ValueError):  # UnicodeError included: the full path names the problem
        return None
    finally:
        where.kill()
        where.wait()


def _quick(worktree: bool, status: Spawned | None, where: Spawned) -> str | None:
    out, _ = where.communicate()
    lines = out.decode("utf-8", "surrogateescape").split("\n")
    if where.returncode != 0 or len(lines) != 3 or lines[2] or not lines[1]:
        return None
    git_dir, top = lines[0], lines[1]
    fields = _record(git_dir, top)
    if fields is None:
        return None
    name = fields[2 + len(SOURCES)]
    if not is_snapshot_name(name):
        return None  # only ever a snapshot of git.snapshot's naming, in that directory
    snap = state_path(git_dir, name)
    index = os.path.join(git_dir, "index")
    found = _snapshot(snap, index)
    if found is None:
        return None
    ident, records = found
    if not worktree:
        return _line(records.digest, len(records), "index")
    assert status is not None
    roots = [split_list(f) for f in fields[-len(ROOTS) :]]
    guess = _guess(git_dir, top, records)  # while git status runs
    out, _ = status.communicate()
    if not settled(index, ident, status.started_ns):
        return None  # git status may have read another index (a `git add` meanwhile)
    changed = _changed(top, out, records, roots) if status.returncode == 0 else None
    if changed is None:
        return None
    removed, fresh = changed
    if guess is not None and guess[0] == removed and guess[1] == fresh:
        return _line(guess[2], guess[3], "worktree")
    added: dict[str, str] = {}
    for path in sorted(fresh):
        value = _hash(os.path.join(top, path))
        if value is None:
            return None
        added[path] = value
    overlay = Overlay(records, removed, added)
    _remember_guess(git_dir, removed, fresh)
    return _line(overlay.digest(), len(overlay), "worktree")


def _line(digest: str, count: int, kind: str) -> str:
    return f"{digest}  ({count} files, {kind} view)"


def _record(git_dir: str, top: str) -> list[str] | None:
    """The record's fields when it applies here (version, top and policy sources as they are
    now, no pending run); else None."""
    from catalytic_hooks.core.version import VERSION

    if pending(git_dir):
        return None  # an interrupted run: the full path refuses and names it
    raw = read(state_path(git_dir, DIGEST_RECORD))
    fields = unframe(raw, _MAGIC, _FIELDS) if raw is not None else None
    if fields is None or fields[0] != VERSION or fields[1] != top:
        return None
    for name, want in zip(SOURCES, fields[2:], strict=False):
        try:
            with open(os.path.join(top, name), "rb") as fh:
                data: bytes | None = fh.read()
        except FileNotFoundError:
            data = None
        if fingerprint(data) != want:
            return None
    return fields


def _snapshot(path: str, index: str) -> tuple[str, Records] | None:
    """The index file's identity and the stored snapshot's records, if they belong to the index
    file as it is now."""
    import json

    ident = identity_of(index)
    if ident is None:
        return None
    with open(path, "rb") as fh:
        head = fh.read()
    with open(path + ".records", "rb") as fh:
        text = fh.read()
    loaded = Records.load(head, text)
    if loaded is None:
        return None
    meta = json.loads(loaded[0])
    return (ident, loaded[1]) if isinstance(meta, dict) and meta.get("ident") == ident else None


def _protected(path: str, roots: list[list[str]]) -> bool:
    return class_of(path, *roots) == "protected"


def _changes(out: bytes) -> tuple[set[str], set[str], list[str]] | None:
    """(modified, deleted, untracked) from `git status --porcelain=v2 -z`, as
    git.repo.Repo.parse_status reads them; None for any entry this path leaves to the full one
    (unmerged, submodule, ignored, a name that is not UTF-8: a ValueError)."""
    modified: set[str] = set()
    deleted: set[str] = set()
    untracked: list[str] = []
    for rec in out.split(b"\0"):
        if not rec:
            continue
        if rec[:2] == b"1 ":
            fields = rec.split(b" ", 8)
            if len(fields) != 9 or fields[2] != b"N...":
                return None
            path, y = fields[8].decode(), fields[1][1:2]
            if y != b".":
                modified.add(path)
            if y == b"D":
                deleted.add(path)
        elif rec[:2] == b"? ":
            untracked.append(rec[2:].decode())
        else:
            return None
    return modified, deleted, untracked


def _expand(top: str, deleted: set[str], untracked: list[str]) -> list[str] | None:
    """git.repo.Repo._expand_untracked: the files inside a collapsed untracked directory and in a
    directory standing where a deleted tracked file was, from one `git ls-files -o`. None: a
    nested repository (the full path records it as a gitlink)."""
    hidden = [p for p in deleted if os.path.lexists(os.path.join(top, p))]
    collapsed = [p for p in untracked if p.endswith("/")]
    if not (hidden or collapsed):
        return untracked
    if any(os.path.lexists(os.path.join(top, p, ".git")) for p in collapsed):
        return None
    if any(
        not os.path.isdir(os.path.join(top, p)) or os.path.islink(os.path.join(top, p))
        for p in hidden
    ):
        return None
    lister = spawn_untracked_under(top, [*collapsed, *(p + "/" for p in hidden)])
    out, _ = lister.communicate()
    if lister.returncode != 0:
        return None
    listed = [p.decode() for p in out.split(b"\0") if p]
    if any(p.endswith("/") for p in listed):
        return None
    gone = set(collapsed)
    return sorted({*(p for p in untracked if p not in gone), *listed})


def _changed(
    top: str, out: bytes, records: Records, roots: list[list[str]]
) -> tuple[frozenset[str], frozenset[str]] | None:
    """The overlay's paths for git.digests.worktree_digest: (removed: index entries git status
    reports changed, fresh: protected files to read from disk), or None."""
    changes = _changes(out)
    if changes is None:
        return None
    modified, deleted, untracked = changes
    listed = _expand(top, deleted, untracked)
    if listed is None:
        return None
    removed: set[str] = set()
    fresh: set[str] = set()
    for path in modified | deleted:
        old = records.get(path)
        if old is not None:
            if old.startswith("gitlink:"):
                return None
            removed.add(path)
        if path not in deleted and _protected(path, roots):
            fresh.add(path)
    fresh.update(p for p in listed if _protected(p, roots))
    if len(fresh) > _MAX_FRESH or any("\n" in p or "\r" in p for p in fresh):
        return None
    return frozenset(removed), frozenset(fresh)


# The paths of the last answer (git.statefiles.DIGEST_GUESS), re-read while the next `git
# status` runs: in a working tree that keeps the same changes, the digest is then ready when git
# is done. Only a guess: used when git status names exactly these paths, every value read from
# disk here, so whatever the file says cannot change an answer (and it is not one of the caches
# a run must drop).


def _guess(
    git_dir: str, top: str, records: Records
) -> tuple[frozenset[str], frozenset[str], str, int] | None:
    """(removed, fresh, digest, count) of the overlay the last answer's paths give now."""
    data = read(state_path(git_dir, DIGEST_GUESS))
    try:
        parts = data.decode().split("\0\0") if data is not None else []
    except ValueError:
        return None
    if len(parts) != 2:
        return None
    removed, fresh = (frozenset(p for p in part.split("\0") if p) for part in parts)
    if len(fresh) > _MAX_FRESH or not all(map(_plain, fresh)):
        return None
    added: dict[str, str] = {}
    for path in sorted(fresh):
        try:
            value = _hash(os.path.join(top, path))
        except OSError:
            return None
        if value is None:
            return None
        added[path] = value
    overlay = Overlay(records, removed, added)
    return removed, fresh, overlay.digest(), len(overlay)


def _plain(path: str) -> bool:
    """A path git status could name: relative, no `.`/`..`/empty component, no CR or LF."""
    parts = path.split("/")
    return not ("\n" in path or "\r" in path or "" in parts or "." in parts or ".." in parts)


def _remember_guess(git_dir: str, removed: frozenset[str], fresh: frozenset[str]) -> None:
    data = ("\0".join(sorted(removed)) + "\0\0" + "\0".join(sorted(fresh))).encode()
    store(state_path(git_dir, DIGEST_GUESS), data)


def _hash(abspath: str) -> str | None:
    """git.hashing.hash_disk's value: SHA-256 of a regular file's bytes, `symlink:` and the
    SHA-256 of a link's target; None for anything else (the full path reports it)."""
    st = os.lstat(abspath)
    if stat.S_ISLNK(st.st_mode):
        return "symlink:" + hashlib.sha256(os.readlink(os.fsencode(abspath))).hexdigest()
    if not stat.S_ISREG(st.st_mode):
        return None
    fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()
