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
from catalytic_hooks.git.earlyspawn import policy_listing_args
from catalytic_hooks.git.invoke import ssh_verifier
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


def children_at(repo: Repo, rev: str, directory: str) -> dict[str, Committed]:
    """The entries directly inside `directory` of `rev`'s tree, by name (not recursive)."""
    out = repo.git("ls-tree", "-z", "--full-tree", rev, "--", *literal([directory + "/"]))
    found: dict[str, Committed] = {}
    for rec in out.decode("utf-8", "surrogateescape").split("\0"):
        if rec:
            meta, path = rec.split("\t", 1)
            mode, _typ, oid = meta.split(" ")
            found[path.rsplit("/", 1)[-1]] = Committed(mode, oid)
    return found


def policy_listing(repo: Repo, rev: str, watched: Sequence[str]) -> bytes:
    """`git ls-tree` of the policy sources and trust file at `rev`, byte for byte as the hooks'
    quick paths list them (git.earlyspawn.policy_listing_args)."""
    return repo.git(*policy_listing_args(rev, watched))


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
        found[oid] = out[nl + 1 : nl + 1 + size]
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


def commits_touching(repo: Repo, tip: str, paths: Sequence[str]) -> list[str]:
    """The commits of `tip`'s first-parent line that change one of `paths`, oldest first."""
    out = repo.git("rev-list", "--first-parent", "--reverse", tip, "--", *paths)
    return out.decode().split()


def commits_between(repo: Repo, old: str, new: str) -> set[str]:
    """The commits reachable from `new` and not from `old`."""
    return set(repo.git("rev-list", new, "--not", old, "--").decode().split())


def object_type(repo: Repo, oid: str) -> str | None:
    """`commit`, `tree`, `blob` or `tag` (None: no such object)."""
    proc = repo.git_proc("cat-file", "-t", oid)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def commit_exists(repo: Repo, oid: str) -> bool:
    """Whether `oid` names a commit this repository has (a tag is peeled to its commit)."""
    return repo.git_ok("cat-file", "-e", f"{oid}^{{commit}}")


def upstream_exists(repo: Repo) -> bool:
    """Whether the current branch has an upstream branch that resolves."""
    proc = repo.git_proc("rev-parse", "--verify", "--quiet", "@{upstream}")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def trailer_values(repo: Repo, commit: str, key: str) -> list[str]:
    """The values of the `key` trailers of `commit`'s message, stripped, empty ones left out."""
    out = (
        repo.git("log", "-1", f"--format=%(trailers:key={key},valueonly,separator=%x1f)", commit)
        .decode("utf-8", "replace")
        .strip()
    )
    return [r.strip() for r in out.split("\x1f") if r.strip()]


class SignatureCheck(NamedTuple):
    status: str  # git's %G? (G: good and trusted; N: none; B, U, X, Y, R, E)
    principal: str  # %GS: the allowed-signers principal that matched ("" when none)
    fingerprint: str  # %GF: the fingerprint of the key that signed ("" when none)


def ssh_signature(repo: Repo, commit: str, allowed_signers: str) -> SignatureCheck:
    """git's own verdict on `commit`'s SSH signature against the allowed-signers file
    `allowed_signers`, checked as git.invoke's `ssh_verifier` forces it."""
    out = repo.git(
        *ssh_verifier(allowed_signers),
        "log",
        "-1",
        "--format=%G?%x00%GS%x00%GF",
        commit,
    ).decode("utf-8", "replace")
    status, principal, fingerprint = [*out.strip().split("\0"), "", ""][:3]
    return SignatureCheck(status, principal, fingerprint)
