"""The index snapshot: the digest records of every protected index entry, kept under the index's
identity in `<git dir>/catalytic/`, so that a digest of an unchanged index reads no file.

When the index has changed (every commit, `git add`, checkout), the stored snapshot is patched
instead of rebuilt: it also records the tree of the index it describes, written by `git
write-tree` from a copy of the index into a scratch object directory of this tool's own
(`<git dir>/catalytic/trees`, with the repository's objects as alternates, so neither the index nor
the object database of the repository is written). Comparing that tree with the current index's
tree, level by level and only where they differ (`_tree_changes`, what `git diff-tree -r` gives,
with every tree read checked against its name: git does not check a loose tree's bytes, and the
store is writable by a run's command), names exactly the entries that changed; only those are
resolved. At 1,000,000 entries this is the difference between a second or more and tens of
milliseconds.

Without a stored snapshot (first use, a policy change) the index is listed and digested in
chunks, so memory stays proportional to the records, not to 1,000,000 parsed entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_hash
from catalytic_hooks.core.digest import check_record_paths
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, Policy
from catalytic_hooks.core.records import Overlay, Records, encode_path
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.hashing import HashCache, HashPool, Resolution, resolve_contents
from catalytic_hooks.git.listing import Listed, digest_listing, tagged
from catalytic_hooks.git.repo import MODE_GITLINK, MODE_LINK, Repo, scratch_objects_env
from catalytic_hooks.git.runstate import index_file, index_identity
from catalytic_hooks.git.statefiles import SNAPSHOT_PREFIX, SNAPSHOT_RECORDS, TREES
from catalytic_hooks.git.statefiles import path as state_path
from catalytic_hooks.git.views import Kind, View, ViewEntry, ViewKind

CHUNK = 20_000  # index entries resolved at a time by a full build
_SCRATCH_LIMIT = 50_000  # loose trees in the scratch store before it is emptied


@dataclass(frozen=True)
class Snapshot:
    """The digest records of every protected index entry, and the index identity they belong
    to (None: no index file yet)."""

    ident: str | None
    records: Records


def snapshot_name(repo: Repo, policy: Policy) -> str:
    """The snapshot's file name in `<git dir>/catalytic/`: one per object format and roots."""
    roots = policy.cache_key()
    key = canonical_hash(
        [
            repo.object_format,
            roots["protected"],
            roots["exclusions"],
            roots["tmp"],
            roots["durable"],
        ]
    )
    return f"{SNAPSHOT_PREFIX}{key[:32]}"


def _snapshot_file(repo: Repo, policy: Policy) -> Path:
    return Path(state_path(str(repo.git_dir), snapshot_name(repo, policy)))


def _scratch(repo: Repo) -> Path:
    return Path(state_path(str(repo.git_dir), TREES))


def _load(path: Path) -> tuple[dict[str, str], Records] | None:
    try:
        loaded = Records.load(path.read_bytes(), _records_file(path).read_bytes())
    except OSError:
        return None
    if loaded is None:
        return None
    try:
        meta = json.loads(loaded[0])
    except ValueError:
        return None
    return (meta, loaded[1]) if isinstance(meta, dict) else None


def _records_file(path: Path) -> Path:
    return path.with_name(path.name + SNAPSHOT_RECORDS)


def _save(path: Path, ident: str, tree: str | None, records: Records) -> None:
    # A snapshot we cannot write only costs speed; the two files are checked against each
    # other on load, so a crash between the two writes costs a rebuild, never a wrong value.
    with contextlib.suppress(OSError, CatalyticError):
        path.parent.mkdir(parents=True, exist_ok=True)
        index, text = records.dump(json.dumps({"ident": ident, "tree": tree or ""}, sort_keys=True))
        atomic_write(_records_file(path), text)
        atomic_write(path, index)


def index_tree(repo: Repo) -> str | None:
    """The tree of the index as it is now, written to the scratch store from a copy of the
    index (write-tree would otherwise refresh the real index's cache-tree and rewrite it).
    None when git cannot (unmerged entries, a split index it cannot follow, ...).

    git reads a loose tree without checking that its bytes have its name, and whoever can
    write the git directory (a run's command) can write the store. So the trees are written into
    an empty directory with only the repository's objects beside it (none is taken from the
    store because it is already there) and then moved into the store, replacing what was there;
    the store is read after the repository (`_read_env`), and a patch checks every tree it reads
    (`_tree_changes`)."""
    scratch = _scratch(repo)
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        _trim(scratch)
        fresh = Path(tempfile.mkdtemp(prefix="new-", dir=scratch))
    except OSError:
        return None
    try:
        tmp = fresh / "index"
        shutil.copyfile(index_file(repo), tmp)
        env = {**scratch_objects_env(repo, fresh), "GIT_INDEX_FILE": str(tmp)}
        proc = repo.run_env(env, "write-tree")
        tree = proc.stdout.decode().strip()
        if proc.returncode != 0 or not tree:
            return None
        for d in os.scandir(fresh):
            if len(d.name) == 2 and d.is_dir(follow_symlinks=False):
                (scratch / d.name).mkdir(exist_ok=True)
                for f in os.scandir(d.path):
                    os.replace(f.path, scratch / d.name / f.name)
        return tree
    except OSError:
        return None
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _read_env(repo: Repo) -> dict[str, str]:
    """The repository's objects first, then the scratch store (for trees of no commit)."""
    env = repo.env
    extra = [p for p in (env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES"), str(_scratch(repo))) if p]
    return {**env, "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.pathsep.join(extra)}


def _trim(scratch: Path) -> None:
    """Empty the scratch store once it holds many trees (the next patch then rebuilds)."""
    count = 0
    for d in os.scandir(scratch):
        if len(d.name) == 2 and d.is_dir():
            count += len(os.listdir(d.path))
    if count > _SCRATCH_LIMIT:
        for d in os.scandir(scratch):
            if len(d.name) == 2 and d.is_dir():
                shutil.rmtree(d.path, ignore_errors=True)


def _patch(
    repo: Repo, policy: Policy, old: Records, old_tree: str, new_tree: str
) -> Records | None:
    """The old records with exactly the entries that differ between the two trees resolved
    again (None: the trees could not be compared, say the old one was trimmed or is not what
    its name says)."""
    changes = _tree_changes(repo, old_tree, new_tree)
    if changes is None:
        return None
    classify = policy.classifier()
    removed: set[str] = set()
    changed: list[ViewEntry] = []
    for path, new in changes:
        removed.add(path)
        if new is not None and classify(path) is PathClass.PROTECTED:
            changed.append(ViewEntry(path, _kind(new[0]), new[1], False))
    check_record_paths(e.path for e in changed)
    values = resolve_contents(
        View(ViewKind.INDEX, repo.top, tuple(changed), repo), changed, HashCache(None)
    )
    return Overlay(old, frozenset(removed), values).materialize()


_TREE_MODE = "40000"
_MAX_TREES = 20_000  # trees read by one patch; a larger change is built in full


def _tree_changes(
    repo: Repo, old_tree: str, new_tree: str
) -> list[tuple[str, tuple[str, str] | None]] | None:
    """What `git diff-tree -r` of the two trees reports, as (path, (new mode, new id) or None
    when deleted), from trees read level by level and each checked against its name (git
    itself does not check a loose tree's bytes, and the scratch store is writable by anyone
    who can write the git directory). None: a tree is missing, is not what its name says, or
    the difference spans more than _MAX_TREES trees."""
    algo = hashlib.sha256 if repo.object_format == "sha256" else hashlib.sha1
    size = algo().digest_size
    out: list[tuple[str, tuple[str, str] | None]] = []
    level: list[tuple[str, str | None, str | None]] = [("", old_tree, new_tree)]
    read = 0
    while level:
        wanted = sorted({t for _, a, b in level for t in (a, b) if t is not None})
        read += len(wanted)
        if read > _MAX_TREES:
            return None
        trees = _read_trees(repo, wanted, algo, size)
        if trees is None:
            return None
        deeper: list[tuple[str, str | None, str | None]] = []
        for prefix, a, b in level:
            before = trees[a] if a is not None else {}
            after = trees[b] if b is not None else {}
            for name in sorted(before.keys() | after.keys()):
                x, y = before.get(name), after.get(name)
                if x == y:
                    continue
                x_tree = x is not None and x[0] == _TREE_MODE
                y_tree = y is not None and y[0] == _TREE_MODE
                if x_tree or y_tree:
                    deeper.append(
                        (
                            f"{prefix}{name}/",
                            x[1] if x and x_tree else None,
                            y[1] if y and y_tree else None,
                        )
                    )
                if (x is not None and not x_tree) or (y is not None and not y_tree):
                    out.append((prefix + name, y if y is not None and not y_tree else None))
        level = deeper
    return out


def _read_trees(
    repo: Repo, oids: list[str], algo: Callable[..., Any], size: int
) -> dict[str, dict[str, tuple[str, str]]] | None:
    """Each tree's entries (name → (mode, id)), read with `git cat-file --batch` and checked
    against its name; None if any is missing, not a tree, or not what its name says."""
    proc = repo.run_env(
        _read_env(repo), "cat-file", "--batch", input="".join(o + "\n" for o in oids).encode()
    )
    if proc.returncode != 0:
        return None
    data, pos = proc.stdout, 0
    trees: dict[str, dict[str, tuple[str, str]]] = {}
    for oid in oids:
        eol = data.find(b"\n", pos)
        head = data[pos:eol].split(b" ")
        if eol < 0 or len(head) != 3 or head[0].decode() != oid or head[1] != b"tree":
            return None
        n = int(head[2])
        body = data[eol + 1 : eol + 1 + n]
        pos = eol + 2 + n
        if len(body) != n or algo(b"tree %d\0" % n + body).hexdigest() != oid:
            return None
        entries: dict[str, tuple[str, str]] = {}
        i = 0
        while i < n:
            sp = body.index(b" ", i)
            nul = body.index(b"\0", sp)
            entries[body[sp + 1 : nul].decode("utf-8", "surrogateescape")] = (
                body[i:sp].decode(),
                body[nul + 1 : nul + 1 + size].hex(),
            )
            i = nul + 1 + size
        trees[oid] = entries
    return trees


def _kind(mode: str) -> Kind:
    return "symlink" if mode == MODE_LINK else "gitlink" if mode == MODE_GITLINK else "file"


def _index_chunks(repo: Repo) -> Iterator[list[ViewEntry]]:
    """The index's entries CHUNK at a time, in path order, from the index itself (stage 0, or
    stage 2, "ours", for a conflicted path): when it has no tree to list."""
    proc = repo.start("ls-files", "-s", "-z", "--full-name")
    assert proc.stdout is not None
    rest, batch, last = b"", [], None
    while True:
        data = proc.stdout.read(1 << 22)
        recs = (rest + data).split(b"\0")
        rest = recs.pop() if data else b""
        for raw in recs:
            if not raw:
                continue
            rec = raw.decode("utf-8", "surrogateescape")
            tab = rec.index("\t")
            path = rec[tab + 1 :]  # "<mode> <oid> <stage>\t<path>"
            if rec[tab - 1] not in "02" or path == last:
                continue  # conflicted: "ours" unless resolved; stages sort 0 < 1 < 2 < 3
            last = path
            batch.append(ViewEntry(path, _kind(rec[:6]), rec[7 : tab - 2], False))
            if len(batch) >= CHUNK:
                yield batch
                batch = []
        if not data:
            break
    if batch:
        yield batch
    repo.finish(proc)


def _full_from_index(repo: Repo, policy: Policy) -> Records:
    classify = policy.classifier()

    def parts(pool: HashPool) -> Iterator[Records]:
        # One chunk is hashed by the workers while this process lists the next one.
        running: Resolution | None = None
        for chunk in _index_chunks(repo):
            chosen = [e for e in chunk if classify(e.path) is PathClass.PROTECTED]
            check_record_paths(e.path for e in chosen)
            started = Resolution(
                View(ViewKind.INDEX, repo.top, tuple(chosen), repo), chosen, None, pool
            )
            if running is not None:
                yield Records.from_values(running.finish())
            running = started
        if running is not None:
            yield Records.from_values(running.finish())

    with HashPool() as pool:
        return Records.concat(parts(pool))


def _full(repo: Repo, policy: Policy, tree: str | None) -> Records:
    """Every protected entry of the index digested: from the index's tree when there is one (the
    same entries a patch works from, so both give the same records), listed and hashed by the
    workers (git.listing)."""
    if not tree:
        return _full_from_index(repo, policy)
    proc = repo.start_env(_read_env(repo), "ls-tree", "-r", "-z", "--full-tree", tree)
    assert proc.stdout is not None
    try:
        with HashPool() as pool:
            records = Records.concat(
                _resolved(
                    repo,
                    digest_listing(
                        proc.stdout, os.fspath(repo.top), repo.object_format, policy, pool
                    ),
                )
            )
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    repo.finish(proc)
    return records


def _resolved(repo: Repo, listed: Iterator[Listed]) -> Iterator[Records]:
    """Each listed piece as records, its left-over entries read from the object database; about
    CHUNK entries' pieces at a time, so a partial clone fetches what it lacks in few batches."""
    group: list[Listed] = []
    size = 0
    for item in listed:
        if item[4] is not None:
            _refuse(item[4])
        group.append(item)
        size += len(item[2]) // 8 + len(item[3])
        if size >= CHUNK:
            yield from _group_records(repo, group)
            group, size = [], 0
    yield from _group_records(repo, group)


def _group_records(repo: Repo, group: list[Listed]) -> Iterator[Records]:
    left = [oid for item in group for _, _, oid in item[3]]
    if left:
        repo.prefetch(left)
    for text, starts, klens, rest, _ in group:
        part = Records.from_arrays(text, starts, klens)
        if rest:
            values = dict(part.items())
            for path, mode, oid in rest:
                values[path] = tagged(mode, hashlib.sha256(repo.read_blob(oid)).hexdigest())
            part = Records.from_values(values)
        yield part


def _refuse(path: str) -> None:
    """Raise the error for a path no record can hold (a worker found it)."""
    check_record_paths([path])
    encode_path(path)
    raise CatalyticError(ErrorCode.DIGEST_COMPUTATION_FAILED, f"cannot digest {path!r}", path=path)


def index_snapshot(repo: Repo, policy: Policy, *, stored: bool = True) -> Snapshot:
    """Digest records of every protected entry of the index: the stored snapshot when the index
    is unchanged, else the stored one patched by the trees' difference, else built in full (and
    stored). `stored=False` never reads a stored snapshot (a run's POST phase after its command
    changed the index). The blob cache is not consulted: a patch resolves a few entries, and a
    full build is the first digest of a policy."""
    ident = index_identity(repo)
    snap_path = _snapshot_file(repo, policy)
    prev = _load(snap_path) if stored else None
    if prev is not None and ident is not None and prev[0].get("ident") == ident:
        return Snapshot(ident, prev[1])
    tree = index_tree(repo) if ident is not None else None
    records = None
    if prev is not None and tree and prev[0].get("tree"):
        records = _patch(repo, policy, prev[1], prev[0]["tree"], tree)
    if records is None:
        records = _full(repo, policy, tree)
    if ident is not None and ident == index_identity(repo):
        _save(snap_path, ident, tree, records)
    return Snapshot(ident, records)


def current_snapshot(repo: Repo, policy: Policy, known: Snapshot) -> Snapshot:
    """`known` while the index is still the one it was taken from; else the index digested
    afresh, without the stored snapshot (whoever changed the index may have written it)."""
    if known.ident is not None and known.ident == index_identity(repo):
        return known
    return index_snapshot(repo, policy, stored=False)
