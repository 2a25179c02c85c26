"""Reading committed state straight from git objects: files at a revision, blobs, and where a
new branch leaves the history a remote already has.

The hooks judge a change by what is committed at its base, never by the working tree (which the
change under judgement, or whoever stages it, controls). Everything here uses the git CLI, so
the hooks do not pay pygit2's import.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, literal

MODE_REGULAR = ("100644", "100755")


class Committed(NamedTuple):
    mode: str
    oid: str

    @property
    def regular(self) -> bool:
        return self.mode in MODE_REGULAR


def entries_at(repo: Repo, rev: str, paths: Iterable[str]) -> dict[str, Committed]:
    """The tree entries of `rev` at exactly these paths (absent paths are left out)."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    out = repo.git("ls-tree", "-z", "--full-tree", rev, "--", *literal(wanted))
    found: dict[str, Committed] = {}
    for rec in out.decode("utf-8", "surrogateescape").split("\0"):
        if rec:
            meta, path = rec.split("\t", 1)
            mode, _typ, oid = meta.split(" ")
            if path in wanted:
                found[path] = Committed(mode, oid)
    return found


def blobs(repo: Repo, oids: Iterable[str]) -> dict[str, bytes]:
    """Contents of blobs by id, in one `cat-file --batch` (a missing object is an error)."""
    wanted = sorted(set(oids))
    if not wanted:
        return {}
    out = repo.git("cat-file", "--batch", input="".join(o + "\n" for o in wanted).encode())
    found: dict[str, bytes] = {}
    pos = 0
    for oid in wanted:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode().split(" ")
        if len(header) != 3 or header[1] != "blob":
            raise CatalyticError(ErrorCode.GIT_FAILED, f"object {oid} is not a readable blob")
        size = int(header[2])
        found[oid] = out[nl + 1:nl + 1 + size]
        pos = nl + 1 + size + 1
    return found


def first_parent_base(repo: Repo, tip: str, exclude: Sequence[str]) -> str | None:
    """Where the first-parent line of `tip` reaches history the exclusions already have: the
    base a new branch was started from (None: the whole line is new, down to a root)."""
    out = repo.git("rev-list", "--first-parent", "--parents", tip, "--not", *exclude, "--")
    lines = out.decode().split("\n")
    lines = [ln for ln in lines if ln]
    if not lines:
        return tip  # nothing new: the tip itself is already there
    oldest = lines[-1].split()
    return oldest[1] if len(oldest) > 1 else None
