"""Commit and push enforcement (README: "What the hooks check"): pure decisions over git's object
ids.

Nothing here hashes file contents: git's raw diffs already say which paths changed, and the
hooks never modify the index, the working tree, HEAD or any ref.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, Policy
from catalytic_hooks.git.repo import RawChange, Repo, is_zero_oid, literal
from catalytic_hooks.git.views import tmp_residue_on_disk

MUTATION = "mutation"
TMP_RESIDUE = "tmp-residue"
BUNDLE = "bundle"

_VERBS = {"A": "added", "D": "removed", "M": "changed", "T": "type changed"}


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    reason: str
    commit: str | None = None
    subject: str | None = None
    code: str | None = None

    def line(self) -> str:
        where = f' (commit {self.commit[:10]} "{self.subject}")' if self.commit else ""
        return f"{self.path}: {self.reason}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(set(findings), key=lambda f: (f.path, f.kind, f.commit or "", f.reason))


def mutation_findings(changes: Iterable[RawChange], policy: Policy,
                      commit: str | None = None, subject: str | None = None) -> list[Finding]:
    out = []
    for ch in changes:
        if policy.classify(ch.path) is PathClass.PROTECTED:
            verb = _VERBS.get(ch.status, "changed")
            out.append(Finding(ch.path, MUTATION,
                               f"protected path {verb} outside durable roots", commit, subject))
    return out


# -- pre-commit -------------------------------------------------------------------------------

def check_staged(repo: Repo, policy: Policy) -> list[Finding]:
    """HEAD (or the empty tree) against the index, plus tmp residue in the index and on disk."""
    base = repo.head() or repo.empty_tree()
    findings = mutation_findings(repo.diff_raw(base, None), policy)
    if policy.tmp_roots:
        staged = {e.path for e in repo.ls_index(policy.tmp_roots)
                  if policy.classify(e.path) is PathClass.TMP}
        for path in staged:
            findings.append(Finding(path, TMP_RESIDUE, "tmp residue staged in the index"))
        for path in tmp_residue_on_disk(repo.top, policy.tmp_roots):
            if path not in staged:
                findings.append(Finding(path, TMP_RESIDUE, "tmp residue left on disk"))
    return sort_findings(findings)


# -- pre-push and ranges -----------------------------------------------------------------------

BundleChecker = Callable[[Repo, Policy, str, list[str]], list[Finding]]


@dataclass(frozen=True)
class PushLine:
    local_ref: str
    local_oid: str
    remote_ref: str
    remote_oid: str


def parse_push_lines(text: str) -> list[PushLine]:
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = raw.rsplit(maxsplit=3)
        if len(parts) != 4:
            raise CatalyticError(ErrorCode.USAGE, f"malformed pre-push line: {raw!r}")
        lines.append(PushLine(*parts))
    return lines


def _commits(repo: Repo, tip: str, exclude: Sequence[str]) -> list[tuple[str, list[str]]]:
    out = repo.git("rev-list", "--parents", "--topo-order", "--reverse", tip, "--not", *exclude,
                   "--").decode()
    result = []
    for line in out.splitlines():
        oids = line.split()
        result.append((oids[0], oids[1:]))
    return result


def _commit_findings(repo: Repo, policy: Policy, oid: str, parents: list[str]) -> list[Finding]:
    if not parents:
        changes = repo.diff_raw(repo.empty_tree(), oid)
    else:
        per_parent = [repo.diff_raw(p, oid) for p in parents]
        # A merge is judged only on paths that differ from every parent: what the merge itself
        # introduced, not what one side already brought in (and was checked there).
        common = set.intersection(*({c.path for c in d} for d in per_parent))
        changes = [c for c in per_parent[0] if c.path in common]
    found = mutation_findings(changes, policy, oid)
    if not found:
        return []
    subject = repo.commit_subject(oid)
    return [Finding(f.path, f.kind, f.reason, oid, subject) for f in found]


def _tip_findings(repo: Repo, policy: Policy, tip: str) -> list[Finding]:
    if not policy.tmp_roots:
        return []
    specs = [] if "." in policy.tmp_roots else literal(policy.tmp_roots)
    entries = repo.ls_tree(tip, specs)
    subject = repo.commit_subject(tip) if entries else ""
    return [Finding(e.path, TMP_RESIDUE, "tmp residue in the pushed tree", tip, subject)
            for e in entries if policy.classify(e.path) is PathClass.TMP]


def check_commits(repo: Repo, policy: Policy, tip: str, exclude: Sequence[str],
                  bundles: BundleChecker | None = None) -> list[Finding]:
    findings: list[Finding] = []
    commits = _commits(repo, tip, exclude)
    for oid, parents in commits:
        findings += _commit_findings(repo, policy, oid, parents)
    findings += _tip_findings(repo, policy, tip)
    if bundles is not None and commits:
        findings += bundles(repo, policy, tip, [c for c, _ in commits])
    return findings


def _remote_exclusions(repo: Repo, remote: str | None) -> list[str]:
    """What the remote already has, for a new branch: that remote's tracking refs; for a push by
    URL (or to a remote never fetched), every remote-tracking ref, since what is on any remote was
    checked when it got there. With none at all, the whole history is new (bootstrapping)."""
    def has_refs(pattern: str) -> bool:
        return bool(repo.git("for-each-ref", "--count=1", "--format=%(refname)", pattern).strip())

    if remote and repo.config_get(f"remote.{remote}.url") is not None \
            and has_refs(f"refs/remotes/{remote}/"):
        return [f"--remotes={remote}"]
    return ["--remotes"] if has_refs("refs/remotes/") else []


def _exists(repo: Repo, oid: str) -> bool:
    return repo.git_ok("cat-file", "-e", f"{oid}^{{commit}}")


def check_push(repo: Repo, policy: Policy, lines: Sequence[PushLine], remote: str | None,
               bundles: BundleChecker | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for pl in lines:
        if is_zero_oid(pl.local_oid):
            continue  # deleting a remote ref is always allowed
        if not is_zero_oid(pl.remote_oid) and _exists(repo, pl.remote_oid):
            exclude = [pl.remote_oid]
        else:
            # New branch (or a remote tip we do not have): whatever no remote-tracking ref of
            # this remote already reaches is new to the remote.
            exclude = _remote_exclusions(repo, remote)
        findings += check_commits(repo, policy, pl.local_oid, exclude, bundles)
    return sort_findings(findings)


def check_range(repo: Repo, policy: Policy, from_ref: str, to_ref: str,
                bundles: BundleChecker | None = None) -> list[Finding]:
    tip = repo.rev_parse(to_ref)
    if tip is None:
        raise CatalyticError(ErrorCode.GIT_FAILED, f"unknown revision {to_ref!r}", rev=to_ref)
    exclude = []
    if from_ref and not is_zero_oid(from_ref):
        base = repo.rev_parse(from_ref)
        if base is None:
            raise CatalyticError(ErrorCode.GIT_FAILED, f"unknown revision {from_ref!r}",
                                 rev=from_ref)
        exclude = [base]
    return sort_findings(check_commits(repo, policy, tip, exclude, bundles))


def framework_range() -> tuple[str, str] | None:
    """The range the pre-commit framework gives (PRE_COMMIT_FROM_REF / _TO_REF)."""
    frm, to = os.environ.get("PRE_COMMIT_FROM_REF"), os.environ.get("PRE_COMMIT_TO_REF")
    if frm and to:
        return frm, to
    return None


def framework_root_push(repo: Repo) -> list[PushLine] | None:
    """The framework runs a push that includes a root commit with no range, only names."""
    local = os.environ.get("PRE_COMMIT_LOCAL_BRANCH")
    if not local:
        return None
    oid = repo.rev_parse(local)
    if oid is None:
        return None
    zero = "0" * len(oid)
    return [PushLine(local, oid, os.environ.get("PRE_COMMIT_REMOTE_BRANCH", ""), zero)]


def summary(findings: Sequence[Finding], what: str, inspect: str) -> str:
    n = len(findings)
    return (f"catalytic: {n} finding{'s' if n != 1 else ''} block{'s' if n == 1 else ''} this "
            f"{what}; inspect with `{inspect}`")
