"""Bundle verification at push time: every run bundle added or changed by the pushed commits is
verified from the commit that last changed it (its own commit tree, not the working tree), and
its validator must be trusted."""

from __future__ import annotations

from catalytic_hooks.bundle.model import ARTIFACTS
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.enforce.checks import BUNDLE, Finding
from catalytic_hooks.git.repo import Repo


def changed_run_dirs(repo: Repo, policy: Policy, commits: list[str]) -> dict[str, str]:
    """run directory path → the newest pushed commit that changed something inside it."""
    last: dict[str, str] = {}
    for oid in commits:  # oldest first, so later commits win
        out = repo.git("diff-tree", "-r", "-z", "--name-only", "--no-commit-id", "--root", "-m",
                       "--ignore-submodules=none",
                       oid, "--", *policy.run_roots)
        for path in out.decode("utf-8", "surrogateescape").split("\0"):
            for root in policy.run_roots:
                prefix = root + "/" if root != "." else ""
                if path.startswith(prefix):
                    run_id = path[len(prefix):].split("/", 1)[0]
                    if run_id and not run_id.startswith("."):
                        last[prefix + run_id] = oid
    return last


def check_bundles(repo: Repo, policy: Policy, tip: str, commits: list[str]) -> list[Finding]:
    from catalytic_hooks.bundle.model import GitSource
    from catalytic_hooks.bundle.trust import TrustPolicy, load_trust
    from catalytic_hooks.bundle.verify import verify_bundle

    findings: list[Finding] = []
    dirs = changed_run_dirs(repo, policy, commits)
    if not dirs:
        return findings
    trust = TrustPolicy(load_trust(policy, repo.top))
    for run_path, commit in sorted(dirs.items()):
        src = GitSource(repo, commit, run_path)
        names = src.entries()
        if not names:
            continue  # the bundle was deleted: nothing to verify
        if not any(n in names for n in ARTIFACTS):
            continue
        subject = repo.commit_subject(commit)
        try:
            v = verify_bundle(src)
        except CatalyticError as exc:
            findings.append(Finding(run_path, BUNDLE, f"run bundle rejected: {exc.code.value}: "
                                    f"{exc.message}", commit, subject, exc.code.value))
            continue
        decision = trust.decide(v.validator_id)
        if not decision.accepted:
            findings.append(Finding(run_path, BUNDLE, "run bundle is valid but untrusted: "
                                    f"{decision.reason}", commit, subject, "UNTRUSTED"))
    return findings
