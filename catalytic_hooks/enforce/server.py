"""The server-side gate (README: "Server-side gate"): `pre-receive` (and `update`, for hosts that
only run per-ref hooks) in a bare repository.

git runs it inside receive-pack's quarantine: the pushed objects are visible only through
GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES, which every git call here inherits, and
nothing here writes an object or a ref (git's own merge of a merge's parents goes to a scratch
object directory). Each ref is judged with the policy and trust file at its old tip; a new ref,
or one whose old tip carries no policy, by the default branch's (enforce.governing); only a
repository where no ref carries a policy yet by the adoption rule. Deleting or rewinding the
branch that carries the policy is a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.enforce.checks import BundleChecker, check_commits, judged_from
from catalytic_hooks.enforce.findings import Finding, sort_findings
from catalytic_hooks.enforce.governing import Governance, Refs
from catalytic_hooks.git.history import first_parent_base
from catalytic_hooks.git.repo import Repo, is_zero_oid
from catalytic_hooks.git.statefiles import SERVER_CHRONICLE
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


def _judge(repo: Repo, u: RefUpdate, bundles: BundleChecker | None, governance: Governance
           ) -> list[Finding]:
    if is_zero_oid(u.new):
        return []  # deleting a ref judges no history (Governance.carrier_findings judges the act)
    tip = repo.rev_parse(u.new)
    if tip is None:
        return []  # a tag of a tree or blob carries no commits to judge
    old = None if is_zero_oid(u.old) else repo.rev_parse(u.old)
    base: str | None = old
    exclude = [old] if old else []
    if old is None and governance.refs.commits:
        # A new ref: what the repository already has (every ref: the push is not applied yet)
        # was judged when it arrived; the default branch's policy judges the rest.
        exclude = ["--all"]
        base = repo.rev_parse("HEAD") or first_parent_base(repo, tip, exclude)
    judge, exclude, own = judged_from(repo, base, tip, exclude, governance,
                                      new_ref=old is None)
    return own + check_commits(repo, judge, tip, exclude, bundles)


def check_receive(repo: Repo, updates: Sequence[RefUpdate],
                  bundles: BundleChecker | None = None) -> list[Finding]:
    governance = Governance(repo, Refs.of_server(repo))
    findings = governance.carrier_findings([
        (u.ref, None if is_zero_oid(u.old) else repo.rev_parse(u.old),
         None if is_zero_oid(u.new) else repo.rev_parse(u.new)) for u in updates])
    for u in updates:
        findings += _judge(repo, u, bundles, governance)
    return sort_findings(findings)


def log_amendments(repo: Repo, findings: Sequence[Finding]) -> None:
    """Accepted amendments of an accepted push go to the server's own chronicle
    (`<git dir>/catalytic/chronicle.jsonl`: outside any working tree, never an object or a ref)."""
    from catalytic_hooks.enforce.findings import AMENDED
    from catalytic_hooks.provenance.chronicle import append

    for f in findings:
        if f.kind == AMENDED:
            append(Path(state_path(str(repo.git_dir), SERVER_CHRONICLE)), "amendment",
                   {"commit": f.commit, "path": f.path, "reason": f.reason})
