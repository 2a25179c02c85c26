"""Refs and how commits relate, as the gate reads them: which refs exist (peeled to commits),
where a symbolic ref such as HEAD points, merge bases and ancestry, and files at many commits in
one process.

On a server these run inside receive-pack's quarantine before any ref of the push has moved, so
the refs they list are the repository as it was before the push.

The few refs this tool writes (a run's snapshot pin) or puts back (replace refs a run's command
created) are written here too. `refs/replace/*` are listed only to be watched and undone:
git.invoke turns replacement off for every git command of this tool, so no replace ref changes
what the tool reads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, literal

REPLACE_PREFIX = "refs/replace/"


def has_refs(repo: Repo, prefix: str = "") -> bool:
    """Whether any ref exists (under `prefix`, a `for-each-ref` pattern, when given)."""
    args = ["for-each-ref", "--count=1", "--format=%(refname)"]
    return bool(repo.git(*args, *([prefix] if prefix else [])).strip())


def refs_under(repo: Repo, *prefixes: str) -> dict[str, str]:
    """Ref name → object id of every ref under `prefixes` (loose and packed alike)."""
    out = repo.git("for-each-ref", "--format=%(objectname) %(refname)", *prefixes)
    found: dict[str, str] = {}
    for line in os.fsdecode(out).splitlines():
        oid, _, name = line.partition(" ")
        if name:
            found[name] = oid
    return found


def replace_prefixes() -> list[str]:
    """Where git looks for replace refs: `refs/replace/`, or GIT_REPLACE_REF_BASE when the
    caller's environment names another namespace (a user's own git would honour it)."""
    base = os.environ.get("GIT_REPLACE_REF_BASE")
    prefixes = [REPLACE_PREFIX]
    if base and base.startswith("refs/"):
        prefixes.append(base if base.endswith("/") else base + "/")
    return sorted(set(prefixes))


def replace_refs(repo: Repo) -> dict[str, str]:
    """Every replace ref (name → the object it substitutes with) git would honour."""
    return refs_under(repo, *replace_prefixes())


def put_back_replace_refs(repo: Repo, before: dict[str, str]) -> list[str]:
    """Make the replace refs what they were (`before`, from `replace_refs`): a ref created since
    is deleted, one moved or deleted is set back. The refs changed, sorted."""
    now = replace_refs(repo)
    changed = sorted(r for r in now.keys() | before.keys() if now.get(r) != before.get(r))
    for ref in changed:
        if ref in before:
            set_ref(repo, ref, before[ref])
        else:
            delete_ref(repo, ref)
    return changed


def set_ref(repo: Repo, ref: str, oid: str) -> None:
    repo.git("update-ref", "--no-deref", ref, oid)


def delete_ref(repo: Repo, ref: str) -> bool:
    """Delete `ref` (True: it is gone)."""
    return repo.git_ok("update-ref", "--no-deref", "-d", ref)


def ref_commits(
    repo: Repo, patterns: Sequence[str] = (), *, aliases: bool = True
) -> dict[str, str]:
    """Every ref (or those under `patterns`, e.g. `refs/remotes/origin/`) that leads to a commit,
    with that commit; a tag is peeled, a ref to a tree or a blob is left out. aliases=False leaves
    out symbolic refs: an alias carries nothing of its own, and a decision that counted it would
    still see its target's old commit there after a push that moved the target."""
    out = repo.git(
        "for-each-ref",
        "--format=%(objecttype) %(objectname) %(*objecttype) %(*objectname) %(refname) %(symref)",
        *patterns,
    )
    found: dict[str, str] = {}
    nested: list[str] = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        typ, oid, ptyp, poid, ref, symref = line.split(" ", 5)
        if symref and not aliases:
            continue
        if typ == "commit":
            found[ref] = oid
        elif typ == "tag" and ptyp == "commit":
            found[ref] = poid
        elif typ == "tag" and ptyp == "tag":
            nested.append(ref)  # a tag of a tag: peeled all the way below
    for ref in nested:
        commit = repo.rev_parse(ref)
        if commit is not None:
            found[ref] = commit
    return found


def symbolic_target(repo: Repo, name: str = "HEAD") -> str | None:
    """The ref a symbolic ref names (`refs/heads/main` for HEAD), whether or not that ref
    exists; None for a detached or absent one."""
    proc = repo.git_proc("symbolic-ref", "-q", name)
    target = proc.stdout.decode("utf-8", "surrogateescape").strip()
    return target if proc.returncode == 0 and target else None


def resolve_aliases(repo: Repo, refs: Iterable[str]) -> dict[str, str]:
    """Each of `refs` that is a symbolic ref, with the ref it finally names (git follows a chain),
    whether or not that ref exists. receive-pack applies a push to a symbolic ref to its target,
    so the gate must judge the target (enforce.server.judge_receive)."""
    found = {}
    for ref in sorted(set(refs)):
        target = symbolic_target(repo, ref)
        if target is not None and target != ref:
            found[ref] = target
    return found


def is_ancestor(repo: Repo, ancestor: str, descendant: str) -> bool:
    return repo.git_ok("merge-base", "--is-ancestor", ancestor, descendant)


def merge_base(repo: Repo, a: str, b: str) -> str | None:
    """The best common ancestor of two commits (None: unrelated histories)."""
    proc = repo.git_proc("merge-base", a, b)
    out = proc.stdout.decode().split()
    return out[0] if proc.returncode == 0 and out else None


def merge_bases(repo: Repo, a: str, b: str) -> list[str]:
    """Every best common ancestor of two commits (several after criss-cross merges; none:
    unrelated histories)."""
    proc = repo.git_proc("merge-base", "--all", a, b)
    return proc.stdout.decode().split() if proc.returncode == 0 else []


def independent(repo: Repo, commits: Iterable[str]) -> list[str]:
    """The commits of `commits` that no other one of them contains (sorted)."""
    wanted = sorted(set(commits))
    if len(wanted) < 2:
        return wanted
    return sorted(repo.git("merge-base", "--independent", *wanted).decode().split())


def first_parent_touching(repo: Repo, tip: str, paths: Iterable[str]) -> list[str]:
    """The commits of `tip`'s first-parent line that change any of `paths` against their first
    parent (a merge included), newest first."""
    out = repo.git("rev-list", "--first-parent", tip, "--", *literal(sorted(set(paths))))
    return out.decode().split()


def files_at(repo: Repo, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes | None]:
    """The contents of (commit, path) pairs in one `git cat-file --batch` (None: no such path;
    whatever object is there, a tree included, is given as it is)."""
    keys = sorted(set(wanted))
    if not keys:
        return {}
    for commit, path in keys:
        if "\n" in path or not commit.isalnum():
            raise CatalyticError(ErrorCode.GIT_FAILED, f"cannot ask git for {commit}:{path!r}")
    out = repo.git("cat-file", "--batch", input="".join(f"{c}:{p}\n" for c, p in keys).encode())
    found: dict[tuple[str, str], bytes | None] = {}
    pos = 0
    for key in keys:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode("utf-8", "surrogateescape")
        if header.endswith(" missing") or header.endswith(" ambiguous"):
            found[key] = None
            pos = nl + 1
            continue
        size = int(header.rsplit(" ", 1)[1])
        found[key] = out[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size + 1
    return found
