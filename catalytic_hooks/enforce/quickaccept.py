"""The hooks' quick paths: accept, in a few milliseconds, a staged change (pre-commit) or a pushed
commit (pre-push) that provably has no finding; anything else goes to the full check
(`checks.check_staged`, `checks.check_push`), which decides.

On a repository of 10,000 files git needs 3 ms to compare the index with HEAD, while the full
check pays about 60 ms for the standard library it imports (typing, dataclasses, pathlib,
subprocess, tomllib, ...). This module imports only `os` (and git.earlyspawn: `os`, `select`,
`time`, git.invoke; git.statefiles: `os`, `zlib`), and starts git only through git.earlyspawn's
named commands. It never rejects and never reports: it returns True only when

- the full check recorded, for HEAD's policy sources and trust file exactly as HEAD holds them
  now (same paths, modes and blob ids, compared byte for byte with `git ls-tree`), the roots
  that policy gives (git.statefiles.COMMIT_RECORD, written by the full check);
- no interrupted run is pending, and the hook runs inside a commit (not the pre-commit
  framework's CI mode);
- every staged path is excluded, durable or unprotected by those roots, and none is a policy
  source or the trust file;
- HEAD has nothing under a tmp root and the disk has no file under one.

Those are exactly the conditions under which `check_staged` finds nothing (tests compare the two
on every kind of change); whenever one cannot be shown, the full check runs.

A push is accepted quickly only as one ref moved forward by exactly one commit whose parent is
the remote's old tip (which must be here, in a complete clone), judged by the policy recorded for
the old tip's policy blobs, which must also be the remote's default branch's where any
remote-tracking ref exists (`refs/remotes/<remote>/HEAD`: the full check judges other branches by
the default branch's policy), touching nothing under a run root, the chronicle, the policy or the
trust file, nothing protected or tmp, and leaving nothing under a tmp root in the pushed tree.
"""

from __future__ import annotations

import os

from catalytic_hooks.core.roots import class_of, under_any
from catalytic_hooks.git.earlyspawn import (
    Spawned,
    spawn_changed_names,
    spawn_git_dirs,
    spawn_names_under,
    spawn_new_commits,
    spawn_policy_listing,
    spawn_staged_names,
    spawn_where_head,
)
from catalytic_hooks.git.statefiles import (
    COMMIT_RECORD,
    frame,
    join_list,
    pending,
    read,
    split_list,
    store,
    unframe,
)
from catalytic_hooks.git.statefiles import path as state_path

_MAGIC = "catalytic-commit-check v2"
# core.policy.Policy.cache_roots's keys, in this order (a test pins them); "special": what a push
# check looks at beyond the roots (run roots, the chronicle): never quick
_ROOTS = ("exclusions", "tmp", "durable", "protected", "special")


def encode(listing: bytes, watched: list[str], roots: dict[str, list[str]]) -> bytes:
    """The record (git.statefiles.frame): the listing, the watched paths and the roots."""
    return frame(
        _MAGIC, [listing.hex(), join_list(watched), *(join_list(roots[k]) for k in _ROOTS)]
    )


def _decode(data: bytes) -> tuple[bytes, list[str], list[list[str]]] | None:
    fields = unframe(data, _MAGIC, 2 + len(_ROOTS))
    if fields is None:
        return None
    lists = [split_list(f) for f in fields[1:]]
    try:
        return bytes.fromhex(fields[0]), lists[0], lists[1:]
    except ValueError:
        return None


def remember(git_dir: str, record: bytes) -> None:
    """Store `record` (from `encode`) for the next commit or push (called by the full check)."""
    store(state_path(git_dir, COMMIT_RECORD), record)


def _tmp_on_disk(top: str, tmp: list[str]) -> bool:
    """Whether anything but directories lies under a tmp root (stricter than the full check,
    which ignores special files: then the full check decides)."""
    for root in tmp:
        base = os.path.join(top, root)
        try:
            st = os.lstat(base)
        except FileNotFoundError:
            continue
        if st.st_mode & 0o170000 != 0o040000:  # not a directory (stat.S_ISDIR)
            return True
        stack = [base]
        while stack:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if not e.is_dir(follow_symlinks=False):
                        return True
                    stack.append(e.path)
    return False


def _output(proc: Spawned) -> bytes | None:
    out, _ = proc.communicate()
    return out if proc.returncode == 0 else None


def quick_accept() -> bool:
    """True only when the staged change provably has no finding (see the module docstring);
    anything going wrong (no git, say) is for the full check to report."""
    try:
        return _quick_accept()
    except OSError:
        return False


def _quick_accept() -> bool:
    env = os.environ
    if env.get("PRE_COMMIT") and not env.get("GIT_INDEX_FILE"):
        return False  # maybe the framework outside a commit: the full check decides
    where = spawn_where_head()
    staged = spawn_staged_names("HEAD")
    try:
        return _judge(where, staged)
    finally:
        for proc in (where, staged):
            proc.kill()
            proc.wait()


def _judge(where: Spawned, staged: Spawned) -> bool:
    out = _output(where)
    lines = out.decode("utf-8", "surrogateescape").split("\n") if out else []
    if len(lines) != 4 or lines[3] != "":
        return False
    git_dir, top, head = lines[0], lines[1], lines[2]
    cached = _cached(git_dir)
    if cached is None:
        return False
    listing, watched, roots = cached
    tmp = roots[1]
    probes = [spawn_policy_listing(head, watched)]
    if tmp:
        probes.append(spawn_names_under(head, tmp))
    try:
        if _output(probes[0]) != listing or (tmp and _output(probes[1]) != b""):
            return False
    finally:
        for proc in probes:
            proc.kill()
            proc.wait()
    diff = _output(staged)
    if diff is None or not _clean(diff, watched, cached[2]):
        return False
    return not _tmp_on_disk(top, tmp)


def _clean(diff: bytes, watched: list[str], roots: list[list[str]]) -> bool:
    """Whether no changed path (NUL-separated) is a finding: watched, special, tmp or protected
    (classified as core.policy does: exclusions, then tmp, then durable, then protected)."""
    exclusions, tmp, durable, protected, special = roots
    for raw in diff.split(b"\0"):
        if not raw:
            continue
        path = raw.decode("utf-8", "surrogateescape")
        # A path below a watched one is a policy finding too (baseline.policy_findings).
        if under_any(path, watched) or under_any(path, special):
            return False
        if class_of(path, exclusions, tmp, durable, protected) in ("tmp", "protected"):
            return False
    return True


def _cached(git_dir: str) -> tuple[bytes, list[str], list[list[str]]] | None:
    if pending(git_dir):
        return None  # a run journal: the full check refuses and names it
    data = read(state_path(git_dir, COMMIT_RECORD))
    return _decode(data) if data is not None else None


def quick_push(stdin: bytes, remote: str | None) -> bool:
    """True only when the push to `remote` (the hook's first argument: a name, or a URL)
    provably has no finding (see the module docstring); anything going wrong (no git, say) is
    for the full check to report."""
    try:
        return _quick_push(stdin, remote)
    except OSError:
        return False


def _tracks_remotes(common: str) -> bool:
    """Whether any remote-tracking ref exists (a reftable says nothing cheaply: assume so)."""
    if os.path.lexists(os.path.join(common, "reftable")):
        return True
    for _, _, files in os.walk(os.path.join(common, "refs", "remotes")):
        if files:
            return True
    try:
        with open(os.path.join(common, "packed-refs"), "rb") as fh:
            return b" refs/remotes/" in fh.read()
    except FileNotFoundError:
        return False


def _quick_push(stdin: bytes, remote: str | None) -> bool:
    if os.environ.get("PRE_COMMIT"):
        return False  # the framework's ranges and names: the full check reads them
    lines = stdin.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) != 1:
        return False
    parts = lines[0].rsplit(maxsplit=3)
    if len(parts) != 4:
        return False
    new, old = parts[1], parts[3]
    if (
        not all(c in "0123456789abcdef" for c in new + old)
        or len(new) != len(old)
        or new.strip("0") == ""
        or old.strip("0") == ""
    ):
        return False  # a deletion or a new branch: the full check
    where = spawn_git_dirs()
    commits = spawn_new_commits(new, old, 2)
    changed = spawn_changed_names(old, new)
    procs = [where, commits, changed]
    try:
        out = _output(where)
        dirs = out.decode("utf-8", "surrogateescape").split("\n") if out else []
        if len(dirs) != 3 or _output(commits) != f"{new} {old}\n".encode():
            return False
        # --git-common-dir is relative to the working directory (git's and ours), not to the
        # git directory: joined to the latter, the shallow file and the refs went unseen.
        common = os.path.abspath(dirs[1])
        if os.path.lexists(os.path.join(common, "shallow")):
            return False  # a shallow clone: the full check knows where its history ends
        cached = _cached(dirs[0])
        if cached is None:
            return False
        listing, watched, roots = cached
        tmp = roots[1]
        if "." in tmp:
            return False
        at_old = spawn_policy_listing(old, watched)
        procs.append(at_old)
        # Where the remote's refs are known, a branch other than its default one is judged by
        # the default branch's policy (enforce.governing): both must be the recorded one. With
        # none known, nothing governs from here and the old tip's policy judges.
        at_default = None
        if _tracks_remotes(common):
            if not remote:
                return False
            at_default = spawn_policy_listing(f"refs/remotes/{remote}/HEAD", watched)
            procs.append(at_default)
        under_tmp = spawn_names_under(new, tmp) if tmp else None
        if under_tmp is not None:
            procs.append(under_tmp)
        if (
            _output(at_old) != listing
            or (at_default is not None and _output(at_default) != listing)
            or (under_tmp is not None and _output(under_tmp) != b"")
        ):
            return False
        diff = _output(changed)
        return diff is not None and _clean(diff, watched, roots)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
