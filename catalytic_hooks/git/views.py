"""Tree views (README: "Concepts"): a revision's tree, the index, the working tree, a plain
directory.

A view is a list of entries naming a path, its kind and, where git knows it, the object id;
contents are resolved later (hashing.py) so a clean file is never re-read.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, NamedTuple

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import MODE_GITLINK, MODE_LINK, Repo

Kind = Literal["file", "symlink", "gitlink"]


class ViewKind(StrEnum):
    REV = "rev"
    INDEX = "index"
    WORKTREE = "worktree"
    DIR = "dir"


class ViewEntry(NamedTuple):
    path: str
    kind: Kind
    # Git object id when git vouches for the content (a cache key), else None.
    oid: str | None
    # True when the bytes on disk at the path *are* the content (worktree/dir views); False when
    # the disk is only a fast candidate that must match `oid` (index/rev views).
    trust_disk: bool


@dataclass(frozen=True)
class View:
    kind: ViewKind
    root: Path  # where disk paths resolve (repository top or the plain directory)
    entries: tuple[ViewEntry, ...]
    repo: Repo | None
    has_disk: bool = True


def _kind_of_mode(mode: str) -> Kind:
    if mode == MODE_LINK:
        return "symlink"
    if mode == MODE_GITLINK:
        return "gitlink"
    return "file"


def rev_view(repo: Repo, rev: str) -> View:
    repo.tree_of(rev)  # clear error for an unknown revision
    entries = tuple(
        ViewEntry(e.path, _kind_of_mode(e.mode), e.oid, False) for e in repo.ls_tree(rev)
    )
    return View(ViewKind.REV, repo.top, entries, repo)


def index_view(repo: Repo) -> View:
    seen: dict[str, ViewEntry] = {}
    for e in repo.ls_index():
        if e.stage not in (0, 2) or (e.path in seen and e.stage != 0):
            continue  # conflicted paths: take "ours" (stage 2) unless resolved (stage 0)
        seen[e.path] = ViewEntry(e.path, _kind_of_mode(e.mode), e.oid, False)
    return View(ViewKind.INDEX, repo.top, tuple(seen.values()), repo)


def worktree_view(repo: Repo, *, ignored: bool = False) -> View:
    """Tracked files plus untracked, not ignored ones (`ignored=True` adds ignored files)."""
    status_proc = repo.status_start(ignored=ignored)
    index_proc = repo.ls_index_start()
    index = repo.parse_index(repo.finish(index_proc))
    st = repo.finish_status(status_proc)
    out: dict[str, ViewEntry] = {}
    touched = st.modified | st.deleted  # usually tiny: the hot loop is one set lookup
    new = tuple.__new__  # a NamedTuple built without its Python-level __new__ (hot loop)
    for mode, oid, stage, path in index:
        if path in touched or stage != 0 or mode in (MODE_LINK, MODE_GITLINK):
            if path in out or path in st.deleted:
                continue
            kind = _kind_of_mode(mode)
            if kind == "gitlink":
                head = repo.submodule_head(path) if path in st.submodule_moved else oid
                out[path] = ViewEntry(path, "gitlink", head or oid, True)
            elif path in st.modified or stage != 0:
                out[path] = disk_entry(repo.top, path)
            else:
                out[path] = ViewEntry(path, kind, oid, True)
        else:
            out[path] = new(ViewEntry, (path, "file", oid, True))
    for path in (*st.untracked, *st.ignored):
        if path.endswith("/"):
            # A nested repository git will not descend into: record it like a submodule.
            sub = path.rstrip("/")
            out[sub] = ViewEntry(sub, "gitlink", repo.nested_id(sub), True)
            continue
        out[path] = disk_entry(repo.top, path)
    return View(ViewKind.WORKTREE, repo.top, tuple(out.values()), repo)


def disk_entry(top: Path, path: str) -> ViewEntry:
    try:
        mode = os.lstat(top / path).st_mode
    except FileNotFoundError:
        # Vanished between git's listing and now: hashing it fails closed (HASH_FAILED).
        return ViewEntry(path, "file", None, True)
    kind: Kind = "symlink" if stat.S_ISLNK(mode) else "file"
    return ViewEntry(path, kind, None, True)


def dir_view(root: Path) -> View:
    """Every regular file and symlink below `root`; `.git` and other file types are skipped."""
    if not root.is_dir():
        raise CatalyticError(ErrorCode.PATH_INVALID, f"{root} is not a directory")
    entries: list[ViewEntry] = []
    stack = [("", os.fspath(root))]
    while stack:
        rel, absdir = stack.pop()
        try:
            it = os.scandir(absdir)
        except OSError as exc:
            raise CatalyticError(
                ErrorCode.DIGEST_COMPUTATION_FAILED,
                f"cannot list {absdir}: {exc}",
                path=rel or ".",
            ) from exc
        with it:
            for de in it:
                if de.name == ".git":
                    continue
                path = f"{rel}/{de.name}" if rel else de.name
                if de.is_symlink():
                    entries.append(ViewEntry(path, "symlink", None, True))
                elif de.is_dir(follow_symlinks=False):
                    stack.append((path, de.path))
                elif de.is_file(follow_symlinks=False):
                    entries.append(ViewEntry(path, "file", None, True))
    return View(ViewKind.DIR, root, tuple(entries), None)


def tmp_residue_on_disk(root: Path, tmp_roots: tuple[str, ...]) -> list[str]:
    """Every file (symlinks included, never followed) under the tmp roots, sorted."""
    found: list[str] = []
    for troot in tmp_roots:
        base = root / troot if troot != "." else root
        try:
            st = os.lstat(base)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            found.append(troot)
            continue
        for e in dir_view(base).entries:
            found.append(f"{troot}/{e.path}" if troot != "." else e.path)
    return sorted(set(found))


def start_unrecorded_listings(repo: Repo) -> list[subprocess.Popen[bytes]]:
    """Start git's listings of what the working tree holds that HEAD's commit does not: untracked
    files not ignored (untracked directories collapsed to `dir/`, empty ones left out) and files
    staged as added since HEAD; each output is NUL-separated paths, collected with
    `Repo.finish`."""
    procs = [
        repo.start(
            "ls-files",
            "-o",
            "-z",
            "--exclude-standard",
            "--directory",
            "--no-empty-directory",
            "--full-name",
        )
    ]
    if repo.head() is not None:
        procs.append(
            repo.start(
                "diff",
                "--cached",
                "--name-only",
                "-z",
                "--no-renames",
                "--diff-filter=A",
                "HEAD",
                "--",
            )
        )
    return procs
