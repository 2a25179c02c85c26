"""Bundle verification at push time: every run bundle added or changed by the pushed commits is
verified from the commit that last changed it (its own commit tree, not the working tree), and
its validator must be in the trust file committed at the push's base.

A bundle is any directory under a run root that holds a bundle artifact, however deep and
whatever its name (dot-directories included): exactly what `verify` and `restore` would accept
when pointed at it.
"""

from __future__ import annotations

from collections import defaultdict

from catalytic_hooks.bundle.model import ARTIFACTS
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.enforce.baseline import Baseline
from catalytic_hooks.enforce.findings import Finding, FindingKind
from catalytic_hooks.git.history import entries_at
from catalytic_hooks.git.repo import Repo


def _candidates(path: str, roots: tuple[str, ...]) -> list[str]:
    """Every directory between a run root (included) and the changed path (excluded)."""
    out = []
    for root in roots:
        prefix = "" if root == "." else root + "/"
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")[:-1]
        base = root if root != "." else ""
        out.append(root)
        for part in parts:
            base = f"{base}/{part}" if base else part
            out.append(base)
    return out


def changed_run_dirs(repo: Repo, policy: Policy, touched: dict[str, str]) -> dict[str, str]:
    """bundle directory → the newest pushed commit that changed something inside it, from the
    paths under the run roots that the range's commits changed (path → newest commit), given
    in the order of each path's last change (range order, oldest first). Read in that order,
    the last commit seen for a directory is the newest that touched it: the bundle as it lands.
    (In the order paths were first changed, a file touched only by an early commit overrode
    a later one, and a bundle re-signed by an untrusted key after it was verified was
    accepted.)"""
    last: dict[str, str] = {}
    for path, oid in touched.items():
        for d in _candidates(path, policy.run_roots):
            last[d] = oid
    by_commit: dict[str, list[str]] = defaultdict(list)
    for d, oid in last.items():
        by_commit[oid].append(d)
    bundles: dict[str, str] = {}
    for oid, dirs in by_commit.items():
        probes = [f"{d}/{name}" if d != "." else name for d in dirs for name in ARTIFACTS]
        for path in entries_at(repo, oid, probes):
            d = path.rsplit("/", 1)[0] if "/" in path else "."
            bundles[d] = oid
    return bundles


def check_bundles(repo: Repo, base: Baseline, tip: str, touched: dict[str, str]) -> list[Finding]:
    from catalytic_hooks.bundle.model import GitSource
    from catalytic_hooks.bundle.trust import TrustPolicy
    from catalytic_hooks.bundle.verify import verify_bundle

    findings: list[Finding] = []
    dirs = changed_run_dirs(repo, base.policy, touched)
    if not dirs:
        return findings
    trust = TrustPolicy(base.trust())
    for run_path, commit in sorted(dirs.items()):
        src = GitSource(repo, commit, run_path)
        subject = repo.commit_subject(commit)
        try:
            v = verify_bundle(src)
        except CatalyticError as exc:
            findings.append(
                Finding(
                    run_path,
                    FindingKind.BUNDLE,
                    f"run bundle rejected: {exc.code.value}: {exc.message}",
                    commit,
                    subject,
                    exc.code.value,
                )
            )
            continue
        decision = trust.decide(v.validator_id)
        if not decision.accepted:
            findings.append(
                Finding(
                    run_path,
                    FindingKind.BUNDLE,
                    f"run bundle is valid but untrusted: {decision.reason}",
                    commit,
                    subject,
                    "UNTRUSTED",
                )
            )
    return findings
