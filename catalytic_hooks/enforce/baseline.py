"""What judges a change (SECURITY.md): the policy and the trusted-validators file committed at
its base, read from git objects.

A commit is judged by HEAD's policy, a push by the policy at the remote's old tip, a range by the
policy at `--from-ref`: never by the working tree (an unstaged edit would do) nor by the change
itself (a commit that widens the durable roots would pass its own test). A change to the policy
sources or to the trust file is a finding of its own, whatever the roots say; so is a chronicle
that does not extend the base's byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import (
    CONFIG_FILE,
    DEFAULT_TRUST_FILE,
    POLICY_SOURCES,
    PYPROJECT,
    Policy,
    catalytic_table,
    policy_from_sources,
)
from catalytic_hooks.enforce.findings import Finding, FindingKind
from catalytic_hooks.git.history import Committed, blobs, commits_touching, entries_at
from catalytic_hooks.git.repo import RawChange, Repo, is_zero_oid

if TYPE_CHECKING:
    from catalytic_hooks.bundle.trust import TrustSet

_KIND = {
    "100644": "file",
    "100755": "file",
    "120000": "symlink",
    "160000": "submodule",
    "040000": "directory",
}


@dataclass(frozen=True)
class Baseline:
    rev: str | None  # None: no commit yet, so the empty default policy and nobody trusted
    policy: Policy
    trust_data: bytes | None
    trust_label: str

    def trust(self) -> TrustSet:
        from catalytic_hooks.bundle.trust import trust_from_bytes

        return trust_from_bytes(self.policy, self.trust_data, self.trust_label)

    @property
    def watched(self) -> frozenset[str]:
        """Paths whose change is always a `policy` finding."""
        return frozenset(self.policy.watched())


def _regular(repo: Repo, found: dict[str, Committed], where: str) -> dict[str, bytes | None]:
    for path, entry in found.items():
        if not entry.regular:
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                f"{path}{where} is a {_KIND.get(entry.mode, entry.mode)}, not a regular file",
                file=path,
            )
    data = blobs(repo, (e.oid for e in found.values()))
    return {path: data[e.oid] for path, e in found.items()}


def baseline_at(repo: Repo, rev: str | None) -> Baseline:
    """The policy and trust anchor committed at `rev` (a commit id)."""
    if rev is None:
        return Baseline(
            None, policy_from_sources({}, " (no base commit)"), None, DEFAULT_TRUST_FILE
        )
    where = f" at {rev[:10]}"
    files = _regular(repo, entries_at(repo, rev, (*POLICY_SOURCES, DEFAULT_TRUST_FILE)), where)
    policy = policy_from_sources(files, where)
    trust_path = policy.trust_path
    if trust_path is not None and trust_path not in files:
        files.update(_regular(repo, entries_at(repo, rev, [trust_path]), where))
    return Baseline(rev, policy, files.get(trust_path or ""), f"{trust_path}{where}")


def _table_changed(repo: Repo, change: RawChange) -> bool:
    """Whether a change to pyproject.toml changes its `[tool.catalytic]` table (anything else in
    the file is ordinary content). Unreadable on either side counts as changed."""
    sides = [
        (m, o)
        for m, o in ((change.old_mode, change.old_oid), (change.new_mode, change.new_oid))
        if not is_zero_oid(o)
    ]
    if any(m not in ("100644", "100755") for m, _ in sides):
        return True
    data = blobs(repo, (o for _, o in sides))
    try:
        tables = [
            catalytic_table(data[o]) if not is_zero_oid(o) else None
            for o in (change.old_oid, change.new_oid)
        ]
    except CatalyticError:
        return True
    return tables[0] != tables[1]


def policy_findings(repo: Repo, base: Baseline, changes: Sequence[RawChange]) -> list[Finding]:
    out = []
    trust_path = base.policy.trust_path
    for ch in changes:
        if ch.path not in base.watched:
            # A path under a watched one makes the policy source a directory: every later read
            # of the policy at that tip fails (CONFIG_INVALID), locking the repository out.
            # Only a judged change may do that, like any other change of the policy sources.
            watched = next((w for w in sorted(base.watched) if ch.path.startswith(w + "/")), None)
            if watched is None:
                continue
            out.append(
                Finding(
                    ch.path,
                    FindingKind.POLICY,
                    f"policy changed ({ch.path} would make {watched} a directory): the base's "
                    "policy judges this change; a policy or trust change is never accepted "
                    "from the change itself",
                )
            )
            continue
        if ch.path == trust_path:
            reason = "trusted-validators file changed"
        elif ch.path == PYPROJECT:
            if not _table_changed(repo, ch):
                continue
            reason = "policy changed (pyproject.toml [tool.catalytic])"
        else:
            reason = f"policy changed ({CONFIG_FILE})"
        out.append(
            Finding(
                ch.path,
                FindingKind.POLICY,
                reason + ": the base's policy judges this change; "
                "a policy or trust change is never accepted from the change itself",
            )
        )
    return out


def chronicle_problem(
    old: Committed | None, new: Committed | None, data: dict[str, bytes]
) -> str | None:
    """Why `new` is not an append-only extension of `old` (None: it is)."""
    from catalytic_hooks.provenance.chronicle import parse_chain

    if new is None:
        return "chronicle deleted" if old is not None else None
    if not new.regular:
        return f"chronicle is a {_KIND.get(new.mode, new.mode)}, not a regular file"
    before = data[old.oid] if old is not None and old.regular else b""
    after = data[new.oid]
    if not after.startswith(before):
        return (
            "chronicle rewritten: it does not extend the base's chronicle byte for byte "
            "(records dropped, edited or re-chained)"
        )
    try:
        parse_chain(after)
    except CatalyticError as exc:
        return f"chronicle broken: {exc.message}"
    return None


def chronicle_findings(
    repo: Repo, path: str, old_rev: str | None, new_rev: str, what: str
) -> list[Finding]:
    old = entries_at(repo, old_rev, [path]).get(path) if old_rev else None
    new = entries_at(repo, new_rev, [path]).get(path)
    if old == new:
        return []
    data = blobs(repo, (e.oid for e in (old, new) if e is not None and e.regular))
    problem = chronicle_problem(old, new, data)
    return [Finding(path, FindingKind.CHRONICLE, f"{problem} ({what})")] if problem else []


# -- adoption: where a history without any base starts to be judged --------------------------


def find_adoption(repo: Repo, tip: str) -> str | None:
    """The adoption commit on `tip`'s first-parent line: the oldest commit whose committed policy
    names its own first parent as `baseline` (what `catalytic adopt` writes). Only the oldest
    counts: a later commit cannot move the baseline forward without a policy change that the
    adoption's policy judges."""
    # Path-limited, so `--parents` would name rewritten parents: the real one is asked for.
    for oid in commits_touching(repo, tip, POLICY_SOURCES):
        try:
            policy = baseline_at(repo, oid).policy
        except CatalyticError:
            continue
        if policy.baseline is not None and policy.baseline == repo.rev_parse(oid + "^1"):
            return oid
    return None


def adoption_findings(repo: Repo, adoption: str, base: Baseline) -> list[Finding]:
    """The adoption commit may only add the policy and the trust file to its baseline."""
    parent = repo.rev_parse(adoption + "^1")
    if parent is None:
        return []
    allowed = base.watched
    return [
        Finding(
            c.path,
            FindingKind.ADOPTION,
            "the adoption commit may change only the policy and the trust file",
        )
        for c in repo.diff_raw(parent, adoption)
        if c.path not in allowed
    ]
