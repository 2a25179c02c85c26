"""Commit and push enforcement (README: "What the hooks check"): pure decisions over git's object
ids, judged by the policy committed at the base (enforce.baseline).

Nothing here hashes file contents: git's raw diffs already say which paths changed, and the
hooks never modify the index, the working tree, HEAD or any ref.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import PathClass, Policy
from catalytic_hooks.enforce.baseline import (
    Baseline,
    adoption_findings,
    baseline_at,
    chronicle_findings,
    find_adoption,
    policy_findings,
)
from catalytic_hooks.enforce.findings import Finding, FindingKind, Reporter, sort_findings
from catalytic_hooks.enforce.governing import Governance, Refs
from catalytic_hooks.git.history import (
    commit_exists,
    first_parent_base,
    policy_listing,
)
from catalytic_hooks.git.rangediff import RangeDiffer, range_commits
from catalytic_hooks.git.refs import has_refs, is_ancestor, merge_bases
from catalytic_hooks.git.repo import MODE_GITLINK, RawChange, Repo, is_zero_oid, literal
from catalytic_hooks.git.statefiles import refuse_if_pending
from catalytic_hooks.git.views import tmp_residue_on_disk

_VERBS = {"A": "added", "D": "removed", "M": "changed", "T": "type changed"}


def mutation_findings(
    changes: Iterable[RawChange], policy: Policy, against: str = "", conflicted: Iterable[str] = ()
) -> list[Finding]:
    out = []
    classify = policy.classifier()
    skip = set(conflicted)
    for ch in changes:
        if ch.path not in skip and classify(ch.path) is PathClass.PROTECTED:
            verb = _VERBS.get(ch.status, "changed")
            out.append(
                Finding(
                    ch.path,
                    FindingKind.MUTATION,
                    f"protected path {verb} outside durable roots{against}",
                )
            )
    for path in sorted(skip):
        if classify(path) is PathClass.PROTECTED:
            out.append(
                Finding(
                    path,
                    FindingKind.MUTATION,
                    "protected path conflicted in git's merge of the parents",
                )
            )
    return out


# -- pre-commit -------------------------------------------------------------------------------


def check_staged(repo: Repo, base: Baseline | None = None) -> list[Finding]:
    """HEAD (or the empty tree) against the index, judged by HEAD's committed policy, plus tmp
    residue in the index and on disk."""
    refuse_if_pending(repo.git_dir, "the commit check")
    head = repo.head()
    staged = repo.staged_start(head or repo.empty_tree())  # runs while the policy is read
    try:
        if base is None:
            base = baseline_at(repo, head)
            _remember(repo, base)
    finally:
        changes = repo.staged_finish(staged)
    policy = base.policy
    findings = mutation_findings(changes, policy) + policy_findings(repo, base, changes)
    if policy.tmp_roots:
        in_index = _tmp_in_index(repo, head, changes, policy)
        for path in in_index:
            findings.append(
                Finding(path, FindingKind.TMP_RESIDUE, "tmp residue staged in the index")
            )
        for path in tmp_residue_on_disk(repo.top, policy.tmp_roots):
            if path not in in_index:
                findings.append(Finding(path, FindingKind.TMP_RESIDUE, "tmp residue left on disk"))
    return sort_findings(findings)


def _remember(repo: Repo, base: Baseline) -> None:
    """What the hook's quick path (enforce.quickaccept.py) needs to recognise this base's policy
    without parsing it: HEAD's policy sources and trust file as `git ls-tree` lists them, and
    what the policy decides by (Policy.cache_key). A cache we cannot write costs speed."""
    from catalytic_hooks.enforce.quickaccept import encode, remember

    if base.rev is None or base.policy.source == "defaults":
        return  # no policy committed: a push may be judged by an adoption commit instead
    key = base.policy.cache_key()
    watched = key.pop("watched")
    with contextlib.suppress(CatalyticError):
        remember(str(repo.git_dir), encode(policy_listing(repo, base.rev, watched), watched, key))


def _tmp_in_index(
    repo: Repo, head: str | None, changes: list[RawChange], policy: Policy
) -> set[str]:
    """Index entries under the tmp roots, without reading the index a second time: HEAD's
    entries there (from its trees) as the staged changes leave them."""
    present = {e.path for e in repo.ls_tree(head, literal(policy.tmp_roots))} if head else set()
    for ch in changes:
        if ch.status == "D":
            present.discard(ch.path)
        else:
            present.add(ch.path)
    return {p for p in present if policy.classify(p) is PathClass.TMP}


# -- pre-push and ranges -----------------------------------------------------------------------

# (repo, base, tip, {changed path under a run root: newest commit changing it}) -> findings
BundleChecker = Callable[[Repo, Baseline, str, dict[str, str]], list[Finding]]


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


def _judge_commit(
    repo: Repo,
    differ: RangeDiffer,
    base: Baseline,
    oid: str,
    parents: list[str],
    changes: list[RawChange],
    conflicted: frozenset[str],
    against: str,
) -> list[Finding]:
    found = mutation_findings(changes, base.policy, against, conflicted)
    found += policy_findings(repo, base, changes)
    chronicle = base.policy.chronicle
    if any(c.path == chronicle for c in changes) or (
        len(parents) > 1 and differ.entry(oid, chronicle) != differ.entry(parents[0], chronicle)
    ):
        found += chronicle_findings(
            repo, chronicle, parents[0] if parents else None, oid, "vs the commit's first parent"
        )
    if not found:
        return []
    from catalytic_hooks.enforce.amend import TRAILER

    subject, trailer = differ.describe(oid, TRAILER)
    if trailer is not None:
        found = _amended(repo, base, oid, found)
    return [f.at(oid, subject) for f in found]


def _amended(repo: Repo, base: Baseline, oid: str, found: list[Finding]) -> list[Finding]:
    """Mutation and policy findings of a signed amendment the base's trust file accepts become
    reports; a refused amendment says why on each finding."""
    amendable = [f for f in found if f.kind in (FindingKind.MUTATION, FindingKind.POLICY)]
    if not amendable:
        return found
    from catalytic_hooks.enforce.amend import verify_amendment

    verdict = verify_amendment(repo, oid, base)
    if verdict is None:
        return found
    out = [f for f in found if f.kind not in (FindingKind.MUTATION, FindingKind.POLICY)]
    for f in amendable:
        if verdict.accepted:
            out.append(
                replace(
                    f,
                    kind=FindingKind.AMENDED,
                    blocking=False,
                    reason=f"accepted amendment by {verdict.signer} ({f.reason}): {verdict.reason}",
                )
            )
        else:
            out.append(replace(f, reason=f"{f.reason}; {verdict.reason}"))
    return out


def _tip_findings(repo: Repo, base: Baseline, tip: str) -> list[Finding]:
    policy = base.policy
    found = chronicle_findings(repo, policy.chronicle, base.rev, tip, "pushed tip vs its base")
    if policy.tmp_roots:
        specs = [] if "." in policy.tmp_roots else literal(policy.tmp_roots)
        found += [
            Finding(e.path, FindingKind.TMP_RESIDUE, "tmp residue in the pushed tree")
            for e in repo.ls_tree(tip, specs)
            if policy.classify(e.path) is PathClass.TMP
        ]
    if not found:
        return []
    subject = repo.commit_subject(tip)
    return [f.at(tip, subject) for f in found]


def _refuse_shallow_boundary(repo: Repo, commits: list[tuple[str, str, list[str]]]) -> None:
    """A commit at the edge of a shallow clone has parents this clone lacks: judged against the
    empty tree it would look like it added every file. Say how to deepen instead."""
    try:
        cut = set((repo.common_dir / "shallow").read_text().split())
    except OSError:
        return
    for oid, _, _ in commits:
        if oid in cut:
            raise CatalyticError(
                ErrorCode.HISTORY_INCOMPLETE,
                f"commit {oid[:12]} is at the edge of this shallow clone: its parents are not "
                "here, so what it changed cannot be judged; deepen the clone (`git fetch "
                "--deepen=100`, or `git fetch --unshallow`; in CI: `fetch-depth: 0`) and retry",
                commit=oid,
            )


def check_commits(
    repo: Repo,
    base: Baseline,
    tip: str,
    exclude: Sequence[str],
    bundles: BundleChecker | None = None,
    *,
    reporter: Reporter | None = None,
) -> list[Finding]:
    """Every commit reachable from `tip` and not from `exclude`, judged by `base`: one batch
    engine (git.rangediff), one commit's diff in memory at a time; each commit's findings go to
    `reporter` as soon as they are known."""
    findings: list[Finding] = []
    commits = range_commits(repo, tip, exclude)
    _refuse_shallow_boundary(repo, commits)
    progress = _Progress(len(commits))
    run_roots = base.policy.run_roots
    touched: dict[str, str] = {}
    with RangeDiffer(repo) as differ:
        for n, (oid, parents, changes, conflicted, against) in enumerate(
            differ.diff_all(commits, _unjudged_roots(base)), 1
        ):
            judged = _judge_commit(repo, differ, base, oid, parents, changes, conflicted, against)
            judged += _submodule_runs(repo, oid, changes, run_roots)
            if reporter is not None:
                reporter.found(judged)
            findings += judged
            for c in changes:
                if any(r == "." or c.path.startswith(r + "/") for r in run_roots):
                    # re-inserted, not updated: the dict's order is then the order of each
                    # path's last change, which changed_run_dirs relies on
                    touched.pop(c.path, None)
                    touched[c.path] = oid
            progress.step(n)
    progress.done()
    findings += _tip_findings(repo, base, tip)
    if bundles is not None and touched:
        findings += bundles(repo, base, tip, touched)
    return findings


def _submodule_runs(
    repo: Repo, oid: str, changes: list[RawChange], run_roots: Sequence[str]
) -> list[Finding]:
    """A gitlink at, under or above a run root: what it points to is a commit of another repository,
    whose bundle no check here can read, and whoever checks it out gets an unverified run."""
    found = [
        Finding(
            c.path,
            FindingKind.BUNDLE,
            "a submodule (gitlink) at, under or above a run root: the run it holds is in "
            "another repository and is never verified here",
        )
        for c in changes
        if c.new_mode == MODE_GITLINK
        and any(
            r == "." or c.path == r or c.path.startswith(r + "/") or r.startswith(c.path + "/")
            for r in run_roots
        )
    ]
    if not found:
        return []
    subject = repo.commit_subject(oid)
    return [f.at(oid, subject) for f in found]


def rewind_findings(repo: Repo, base: Baseline, old: str | None, new: str) -> list[Finding]:
    """What an update of the default branch from `old` to `new` changes without a judged
    commit: nothing when it moves forward (or `old` is None: nothing to move from).

    The commits it drops (on `old`'s side of the fork) took each path they changed to what `old`
    holds; moving the ref to `new` undoes that wherever `new` holds what a fork point held, and
    no commit says so: a rewind would undo a signed amendment unsigned. A path the commits on
    `new`'s side changed since every fork point (criss-cross merges leave several, and one of
    them may already hold what is being undone) was judged with them. Unrelated histories fork
    at the empty tree. Roots no rule looks at are left out of the diffs, as a range's are."""
    if old is None or is_ancestor(repo, old, new):
        return []
    skip = _unjudged_roots(base)
    spec = [".", *(f":(exclude,literal){r}" for r in skip)] if skip else []
    moved = repo.diff_raw(old, new, spec)
    if not moved:
        return []
    since: set[str] | None = None  # changed on the way from every fork point to `new`
    for fork in merge_bases(repo, old, new) or [repo.empty_tree()]:
        changed = {c.path for c in repo.diff_raw(fork, new, spec)}
        since = changed if since is None else since & changed
    undone = {c.path for c in moved} - (since or set())
    found = mutation_findings(
        (c for c in moved if c.path in undone),
        base.policy,
        f" by a non-fast-forward update from {old[:12]}, which drops the commits that made it "
        "(revert it in a new commit, signed as an amendment, instead)",
    )
    if not found:
        return []
    subject = repo.commit_subject(new)
    return [f.at(new, subject) for f in found]


def _unjudged_roots(base: Baseline) -> list[str]:
    """Roots whose changes no rule looks at (durable, tmp, excluded), minus any that holds
    something a rule does look at (a run root, the chronicle, a policy source, the trust file)
    or lies inside one: git leaves them out of the diffs."""
    p = base.policy
    watched = [*p.run_roots, p.chronicle, *base.watched]
    return sorted(
        r
        for r in {*p.durable_roots, *p.tmp_roots, *p.exclusions}
        if r != "."
        and not any(w == r or w.startswith(r + "/") for w in watched)
        # Below a run root, a bundle there is still verified (a durable or excluded root inside
        # `_runs` must not hide a forged one); below a policy source, a change makes the source
        # a directory, a finding.
        and not any(r.startswith(w + "/") for w in watched)
    )


class _Progress:
    """`judged N/M commits` on a terminal, for long ranges only."""

    def __init__(self, total: int):
        self.total = total
        self.show = total >= 500 and sys.stderr.isatty()

    def step(self, n: int) -> None:
        if self.show and (n % 250 == 0 or n == self.total):
            print(
                f"\rcatalytic: judged {n}/{self.total} commits", end="", file=sys.stderr, flush=True
            )

    def done(self) -> None:
        if self.show:
            print(file=sys.stderr)


def _remote_exclusions(repo: Repo, remote: str | None) -> list[str]:
    """What the remote already has, for a new branch: that remote's tracking refs; for a push by
    URL (or to a remote never fetched), every remote-tracking ref, since what is on any remote was
    checked when it got there. With none at all, the whole history is new (bootstrapping)."""
    if (
        remote
        and repo.config_get(f"remote.{remote}.url") is not None
        and has_refs(repo, f"refs/remotes/{remote}/")
    ):
        return [f"--remotes={remote}"]
    return ["--remotes"] if has_refs(repo, "refs/remotes/") else []


def judged_from(
    repo: Repo,
    base: str | None,
    tip: str,
    exclude: list[str],
    governance: Governance | None = None,
    *,
    new_ref: bool = False,
) -> tuple[Baseline, list[str], list[Finding]]:
    """The baseline that judges `tip --not exclude`, the final exclusions, and findings of its
    own.

    In a governed repository (`governance` finds a policy on some ref: enforce.governing) a new
    ref, and a ref whose base carries no policy, are judged by the default branch's policy
    (`base` still gives the chronicle the tip must extend); the adoption rule never applies
    there, so nobody chooses the policy that judges them. Only where no ref carries a policy
    (an empty remote, a new mirror, a remote that predates adoption) does a base without any
    policy give way to the adoption commit `catalytic adopt` made on the tip's first-parent line:
    everything reachable from it predates the policy and is not judged, it may only add the
    policy and the trust file, and its policy judges what follows. With no adoption either, the
    empty default policy judges everything, down to the root."""
    judge: Baseline | None = None
    if governance is None or not new_ref:
        judge = baseline_at(repo, base)
        if judge.policy.source != "defaults":
            return judge, exclude, []
    governing = governance.default() if governance is not None else None
    if governance is not None and governing is not None:
        return (
            replace(
                governance.baseline(governing.rev), rev=base if base is not None else governing.rev
            ),
            exclude,
            [],
        )
    if judge is None:
        judge = baseline_at(repo, base)
    adoption = find_adoption(repo, tip)
    if adoption is None or (base is not None and not is_ancestor(repo, base, adoption)):
        return judge, exclude, []
    judge = baseline_at(repo, adoption)
    found = adoption_findings(repo, adoption, judge)
    subject = repo.commit_subject(adoption) if found else ""
    return judge, [*exclude, adoption], [f.at(adoption, subject) for f in found]


def check_push(
    repo: Repo,
    lines: Sequence[PushLine],
    remote: str | None,
    bundles: BundleChecker | None = None,
    *,
    reporter: Reporter | None = None,
) -> list[Finding]:
    """Each pushed ref, judged by the policy at the remote's old tip; a new branch, or one whose
    remote tip carries no policy, by the remote's default branch's policy once the remote is
    governed (enforce.governing, from its tracking refs), as the server gate will."""
    findings: list[Finding] = []
    governance = Governance(repo, Refs.of_remote(repo, remote))
    for pl in lines:
        if is_zero_oid(pl.local_oid):
            continue  # deleting a remote ref: the server decides (enforce.server)
        base: str | None
        old = None
        if not is_zero_oid(pl.remote_oid) and commit_exists(repo, pl.remote_oid):
            old = pl.remote_oid
            exclude, base = [old], old
            new_ref = not governance.judges_itself(_tracking(remote, pl.remote_ref))
        else:
            # New branch (or a remote tip we do not have): whatever no remote-tracking ref of
            # this remote already reaches is new to the remote.
            exclude = _remote_exclusions(repo, remote)
            base = first_parent_base(repo, pl.local_oid, exclude) if exclude else None
            new_ref = True
        judge, exclude, own = judged_from(
            repo, base, pl.local_oid, exclude, governance, new_ref=new_ref
        )
        findings += own + check_commits(
            repo, judge, pl.local_oid, exclude, bundles, reporter=reporter
        )
        if old is not None and governance.is_default(_tracking(remote, pl.remote_ref)):
            findings += rewind_findings(repo, judge, old, pl.local_oid)
    return sort_findings(findings)


def _tracking(remote: str | None, ref: str) -> str:
    """The remote-tracking name of a branch of `remote` (enforce.governing names the default
    branch by it); a tag, or a push by URL, has none and is never the default branch."""
    if remote and ref.startswith("refs/heads/"):
        return f"refs/remotes/{remote}/{ref.removeprefix('refs/heads/')}"
    return ref


def check_range(
    repo: Repo,
    from_ref: str,
    to_ref: str,
    bundles: BundleChecker | None = None,
    *,
    policy_ref: str = "",
    governance: Governance | None = None,
    reporter: Reporter | None = None,
    rewind: bool = False,
) -> list[Finding]:
    """CI mode: the commits of `to_ref` that `from_ref` lacks, judged by `from_ref`'s policy, or
    by `policy_ref`'s where given (CI judges a branch other than the default one by the default
    branch's policy) unless that carries none. An empty or all-zero `from_ref`: everything after
    the adoption commit, judged by its policy (without one, the whole history by the empty
    default policy), unless `governance` finds a policy on another ref (enforce.governing).
    `rewind`: the range is one update of the default branch (CI's push event: its tip before
    and after), so a `from_ref` that is not an ancestor of `to_ref` is a force push, judged for
    what it undoes (rewind_findings); any other range is only the commits it brings."""
    tip = repo.rev_parse(to_ref)
    if tip is None:
        raise CatalyticError(ErrorCode.GIT_FAILED, f"unknown revision {to_ref!r}", rev=to_ref)
    base: str | None = None
    if from_ref and not is_zero_oid(from_ref):
        base = repo.rev_parse(from_ref)
        if base is None:
            raise CatalyticError(
                ErrorCode.GIT_FAILED, f"unknown revision {from_ref!r}", rev=from_ref
            )
    exclude = [base] if base else []
    if policy_ref:
        policy = repo.rev_parse(policy_ref)
        if policy is None:
            raise CatalyticError(
                ErrorCode.GIT_FAILED, f"unknown revision {policy_ref!r}", rev=policy_ref
            )
        judge = replace(baseline_at(repo, policy), rev=base)
        if judge.policy.source != "defaults":
            found = check_commits(repo, judge, tip, exclude, bundles, reporter=reporter)
            if rewind:
                found += rewind_findings(repo, judge, base, tip)
            return sort_findings(found)
        # The default branch carries no policy yet: nothing governs; the adoption rule may.
    judge, exclude, own = judged_from(
        repo, base, tip, exclude, governance, new_ref=governance is not None
    )
    found = own + check_commits(repo, judge, tip, exclude, bundles, reporter=reporter)
    if rewind:
        found += rewind_findings(repo, judge, base, tip)
    return sort_findings(found)


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
