"""The server-side gate (README: "Server-side gate"): `pre-receive` (and `update`, for hosts that
only run per-ref hooks) in a bare repository, and `post-receive`, which records in the server's
chronicle the amendments of the updates that landed.

git runs it inside receive-pack's quarantine: the pushed objects are visible only through
GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES, which every git call here inherits, and
nothing here writes an object or a ref (git's own merge of a merge's parents goes to a scratch
object directory). The default branch is judged with the policy and trust file at its old tip;
every other ref, new or not, by the default branch's (enforce.governing), as CI judges it, so a
ref pointed at an old commit does not bring that commit's policy back; only a repository where no
ref carries a policy yet by the adoption rule. Deleting the branch that carries the policy, or
rewinding it to another policy, is a finding; so is a non-fast-forward update of it that takes
a protected path back to what it was before the commits it drops (checks.rewind_findings): only a
judged commit changes a protected path there. Other refs may be rewound (they can be deleted and
created again): what they bring is judged by the default branch's policy.

Before any history is judged, the refs themselves: a push may create, move or delete refs only in
the namespaces the default branch's policy allows (`ref_namespaces`: branches and tags unless it
says more), never a replace ref (`refs/replace/*` would make git show every reader of this
repository another object in place of the one named: the judged commit or the base's policy
blob), and a ref may only point to a commit (or a tag of one): a tree or a blob carries no history
to judge. A push to a symbolic ref (`refs/heads/master -> refs/heads/main`, left by a rename)
is judged as the update of the ref it names, which is the ref git moves or deletes; the name
pushed must be allowed too. Every git command here reads objects with replacement and grafts
off (git.invoke), so a replace ref or graft that reached the repository some other way changes
nothing judged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.enforce.checks import (
    BundleChecker,
    check_commits,
    judged_from,
    rewind_findings,
)
from catalytic_hooks.enforce.findings import Finding, FindingKind, Reporter
from catalytic_hooks.enforce.governing import Governance, Refs
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.history import first_parent_base, object_type
from catalytic_hooks.git.refs import REPLACE_PREFIX, ref_commits, resolve_aliases
from catalytic_hooks.git.repo import Repo, is_zero_oid
from catalytic_hooks.git.statefiles import SERVER_CHRONICLE, SERVER_PENDING
from catalytic_hooks.git.statefiles import path as state_path


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str


def parse_receive_lines(text: str) -> list[RefUpdate]:
    """`<old> <new> <ref>` per line (pre-receive's stdin)."""
    updates = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = raw.split(" ", 2)
        if len(parts) != 3 or not all(parts):
            raise CatalyticError(ErrorCode.USAGE, f"malformed pre-receive line: {raw!r}")
        updates.append(RefUpdate(*parts))
    return updates


def _has_refs(repo: Repo) -> bool:
    return bool(ref_commits(repo))


def _judge(
    repo: Repo,
    u: RefUpdate,
    bundles: BundleChecker | None,
    governance: Governance,
    reporter: Reporter | None,
) -> list[Finding]:
    if is_zero_oid(u.new):
        return []  # deleting a ref judges no history (Governance.carrier_findings judges the act)
    tip = repo.rev_parse(u.new)
    if tip is None:
        return []  # a tag of a tree or blob carries no commits to judge
    old = None if is_zero_oid(u.old) else repo.rev_parse(u.old)
    base: str | None = old
    exclude = [old] if old else []
    if old is None and (governance.refs.commits or _has_refs(repo)):
        # A new ref: what the repository already has (every ref: the push is not applied yet)
        # was judged when it arrived; the default branch's policy judges the rest.
        exclude = ["--all"]
        base = repo.rev_parse("HEAD") or first_parent_base(repo, tip, exclude)
    itself = old is not None and governance.judges_itself(u.ref)
    judge, exclude, own = judged_from(repo, base, tip, exclude, governance, new_ref=not itself)
    found = own + check_commits(repo, judge, tip, exclude, bundles, reporter=reporter)
    if governance.is_default(u.ref):
        found += rewind_findings(repo, judge, old, tip)
    return found


def _refused(u: RefUpdate, code: ErrorCode, why: str) -> Finding:
    return Finding(u.ref, FindingKind.REF, f"ref refused: {code.value}: {why}", code=code.value)


def ref_findings(repo: Repo, u: RefUpdate, policy: Policy) -> list[Finding]:
    """Whether the ref itself may be written (module docstring), whatever history it carries."""
    verb = "delete" if is_zero_oid(u.new) else "create" if is_zero_oid(u.old) else "move"
    if u.ref.startswith(REPLACE_PREFIX):
        return [
            _refused(
                u,
                ErrorCode.REF_FORBIDDEN,
                f"a push may not {verb} a replace ref: "
                "git would show every reader another object in place of the one it "
                "names",
            )
        ]
    if not any(u.ref.startswith(ns) for ns in policy.ref_namespaces):
        return [
            _refused(
                u,
                ErrorCode.REF_FORBIDDEN,
                f"a push may not {verb} a ref outside "
                f"{', '.join(n + '*' for n in policy.ref_namespaces)} (the policy's "
                "`ref_namespaces`)",
            )
        ]
    if not is_zero_oid(u.new) and repo.rev_parse(u.new) is None:
        kind = object_type(repo, u.new) or "missing object"
        if kind == "tag":
            kind = f"tag of a {object_type(repo, u.new + '^{}') or 'missing object'}"
        return [
            _refused(
                u,
                ErrorCode.REF_NOT_A_COMMIT,
                f"it would point to a {kind}, not to a "
                "commit (or a tag of one): it carries no history that can be judged",
            )
        ]
    return []


def _namespaces_policy(governance: Governance) -> Policy:
    """The policy whose `ref_namespaces` apply: the default branch's as it is before this push
    (nothing pushed is applied yet, so a push cannot widen them for itself); the defaults where
    no policy governs yet or the refs disagree on it (the judging then says so)."""
    try:
        found = governance.default()
    except CatalyticError:
        return Policy()
    return governance.baseline(found.rev).policy if found is not None else Policy()


def judge_receive(
    repo: Repo,
    updates: Sequence[RefUpdate],
    bundles: BundleChecker | None = None,
    *,
    reporter: Reporter | None = None,
) -> list[tuple[RefUpdate, list[Finding]]]:
    """Each update with its findings (the whole push is refused if any blocks): first whether
    the ref may be written at all (ref_findings), then the history it brings; a commit's
    findings go to `reporter` as soon as they are known."""
    governance = Governance(repo, Refs.of_server(repo))
    policy = _namespaces_policy(governance)
    # receive-pack applies an update of a symbolic ref to the ref it names (a deletion deletes
    # the target), and the hooks see only the name pushed: `refs/heads/master -> main`, left by
    # a rename, would otherwise move main past the default-branch guard. So each update is
    # judged as the update of its target; the pushed name must be allowed as well.
    aliases = resolve_aliases(repo, (u.ref for u in updates))
    target = {u: replace(u, ref=aliases.get(u.ref, u.ref)) for u in updates}
    refused = {
        u: ref_findings(repo, u, policy) or ref_findings(repo, target[u], policy) for u in updates
    }
    carriers = governance.carrier_findings(
        [
            (
                target[u].ref,
                None if is_zero_oid(u.old) else repo.rev_parse(u.old),
                None if is_zero_oid(u.new) else repo.rev_parse(u.new),
            )
            for u in updates
            if not refused[u]
        ]
    )
    return [
        (
            u,
            _through(
                u,
                target[u].ref,
                refused[u] or [f for f in carriers if f.path == target[u].ref],
            )
            + ([] if refused[u] else _judge(repo, target[u], bundles, governance, reporter)),
        )
        for u in updates
    ]


def _through(u: RefUpdate, target: str, findings: list[Finding]) -> list[Finding]:
    """A ref finding about an update pushed through an alias, named as pushed and saying why the
    target was judged (the pusher may not know the name is an alias)."""
    if target == u.ref:
        return findings
    return [
        replace(
            f,
            path=u.ref,
            reason=f"{f.reason} ({u.ref} is a symbolic ref to {target}: the push moves {target})",
        )
        for f in findings
    ]


# -- the ledger: what landed, recorded after it landed ------------------------------------------
#
# pre-receive (or update) knows which amendments a push carries but not whether the push will
# land: a site `update` hook may still decline a ref, and of concurrent pushes to one branch only
# one moves it. So the verdict waits in `<git dir>/catalytic/pending-amendments/`, one file per
# (ref, old, new), and post-receive, which git runs with the refs that actually moved, records
# exactly those in the server's chronicle and drops the file. A file left behind by a push that
# did not land is overwritten by the next judgement of the same update and swept after a day.

_STALE_S = 86400


def _pending(repo: Repo, u: RefUpdate) -> Path:
    key = hashlib.sha256(f"{u.ref}\0{u.old}\0{u.new}".encode("utf-8", "surrogateescape"))
    return Path(state_path(str(repo.git_dir), SERVER_PENDING)) / key.hexdigest()


def stash_amendments(repo: Repo, judged: Sequence[tuple[RefUpdate, Sequence[Finding]]]) -> None:
    """An accepted push's amendments, per ref update, until post-receive says it landed."""
    for u, findings in judged:
        path = _pending(repo, u)
        amended = [
            {"commit": f.commit, "path": f.path, "reason": f.reason}
            for f in findings
            if f.kind == FindingKind.AMENDED
        ]
        if not amended:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            path, canonical_bytes({"ref": u.ref, "old": u.old, "new": u.new, "amendments": amended})
        )


def record_landed(repo: Repo, updates: Sequence[RefUpdate]) -> int:
    """post-receive: the stashed amendments of the updates that landed go to the server's own
    chronicle (`<git dir>/catalytic/chronicle.jsonl`: outside any working tree, never an object
    or a ref), each with the ref, its old and its new id. Returns how many were recorded."""
    from catalytic_hooks.provenance.chronicle import append

    count = 0
    for u in updates:
        path = _pending(repo, u)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        stashed = loads_strict(data, what=str(path))
        if (
            not isinstance(stashed, dict)
            or [stashed.get(k) for k in ("ref", "old", "new")] != [u.ref, u.old, u.new]
            or not isinstance(stashed.get("amendments"), list)
        ):
            raise CatalyticError(
                ErrorCode.JSON_INVALID,
                f"{path} is not the verdict of this "
                f"update ({u.ref} {u.old} {u.new}); nothing was recorded",
            )
        for a in stashed["amendments"]:
            append(
                Path(state_path(str(repo.git_dir), SERVER_CHRONICLE)),
                "amendment",
                {**a, "ref": u.ref, "old": u.old, "new": u.new},
            )
            count += 1
        path.unlink(missing_ok=True)
    _sweep(Path(state_path(str(repo.git_dir), SERVER_PENDING)))
    return count


def _sweep(directory: Path) -> None:
    """Verdicts of pushes that never landed."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    cutoff = time.time() - _STALE_S
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
