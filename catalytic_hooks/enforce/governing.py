"""Which policy judges a ref that brings no trusted base of its own (SECURITY.md: "Adoption is
bootstrap only").

A repository is *governed* once any of its refs carries a policy (`.catalytic.toml`, or a
`[tool.catalytic]` table in pyproject.toml). From then on the adoption rule
(enforce.checks.judged_from) never applies: a new ref, a re-created one, or one whose old tip
carries no policy is judged by the *default branch's* policy, so nobody can push history with an
adoption commit of their own and be judged by the policy they wrote.

The default branch is the ref HEAD names (on a client: `refs/remotes/<remote>/HEAD`). Where that
does not lead to a commit carrying a policy (`git init --bare` leaves HEAD on `master` while the
team pushes `main`), the **newest governed policy** is used: among the refs whose tips carry a
policy, take the tips no other such tip contains (`git merge-base --independent`); if they all
carry the same policy and trust file, that one; otherwise each tip's *policy point* is the newest
commit on its first-parent line whose policy or trust file (as parsed, not as bytes) differs from
its first parent's, and the newest policy is the one whose policy point contains every other
one's. Commit dates, ref names and branch lengths play no part: a pusher can make a branch look
new, but cannot make a policy change without it being judged. Where no policy point contains the
others, the refs disagree and nothing is chosen (NO_GOVERNING_POLICY).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import (
    CONFIG_FILE,
    DEFAULT_TRUST_FILE,
    POLICY_SOURCES,
    PYPROJECT,
    Policy,
    catalytic_table,
)
from catalytic_hooks.enforce.baseline import Baseline, baseline_at
from catalytic_hooks.enforce.findings import Finding, FindingKind
from catalytic_hooks.git.refs import (
    files_at,
    first_parent_touching,
    independent,
    is_ancestor,
    ref_commits,
    symbolic_target,
)
from catalytic_hooks.git.repo import Repo

HEAD_FIX = "git symbolic-ref HEAD refs/heads/main"


@dataclass(frozen=True)
class Refs:
    """The refs a decision may lean on, as they were before the change being judged: each ref's
    commit, and the ref the default-branch pointer names (None: it names none)."""

    commits: dict[str, str]
    head: str | None
    pointer: str  # "HEAD", or "refs/remotes/origin/HEAD" on a client
    fix: str = HEAD_FIX  # how to point it at the branch that carries the policy

    @classmethod
    def of_server(cls, repo: Repo) -> Refs:
        """Branches and tags: the refs a policy is carried on (not notes, replace refs or any
        namespace a host keeps for itself), and not symbolic refs: a push through an alias is
        judged as an update of its target (enforce.server.judge_receive)."""
        return cls(
            ref_commits(repo, ["refs/heads/", "refs/tags/"], aliases=False),
            symbolic_target(repo, "HEAD"),
            "HEAD",
        )

    @classmethod
    def of_remote(cls, repo: Repo, remote: str | None) -> Refs:
        """What a client knows of a remote: its tracking refs (for a push by URL, or to a remote
        never fetched: every remote-tracking ref, with no default branch known)."""
        if remote:
            own = ref_commits(repo, [f"refs/remotes/{remote}/"])
            if own:
                pointer = f"refs/remotes/{remote}/HEAD"
                own.pop(pointer, None)
                return cls(
                    own,
                    symbolic_target(repo, pointer),
                    pointer,
                    f"git remote set-head {remote} --auto",
                )
        every = {
            r: c for r, c in ref_commits(repo, ["refs/remotes/"]).items() if not r.endswith("/HEAD")
        }
        return cls(every, None, "the remote's HEAD", "push to a named remote, fetched first")


@dataclass(frozen=True)
class Governing:
    rev: str  # the commit whose committed policy and trust file judge
    ref: str  # the ref it was found at
    why: str


PolicyKey = tuple[Policy, bytes | None]


class Governance:
    """One decision's view of a repository's governance (one push, one CI job): answers are
    computed when first asked and kept."""

    def __init__(self, repo: Repo, refs: Refs):
        self.repo = repo
        self.refs = refs
        self._governed: dict[str, bool] = {}
        self._baselines: dict[str, Baseline] = {}
        self._default: list[Governing | None] = []

    # -- what a commit carries -----------------------------------------------------------------
    def baseline(self, commit: str) -> Baseline:
        if commit not in self._baselines:
            self._baselines[commit] = baseline_at(self.repo, commit)
        return self._baselines[commit]

    def key(self, commit: str) -> PolicyKey:
        """What judges with this commit's policy: the parsed policy (not where it was read) and
        the trust file's bytes."""
        b = self.baseline(commit)
        return replace(b.policy, source=""), b.trust_data

    def governed(self, *commits: str) -> dict[str, bool]:
        """Whether each commit carries a policy, for many commits in one git process. A
        `.catalytic.toml` counts whatever it holds (an invalid one fails closed when read); a
        pyproject.toml counts when it has a `[tool.catalytic]` table."""
        todo = sorted({c for c in commits if c not in self._governed})
        if todo:
            found = files_at(self.repo, [(c, p) for c in todo for p in POLICY_SOURCES])
            for c in todo:
                dotfile, pyproject = found[(c, CONFIG_FILE)], found[(c, PYPROJECT)]
                self._governed[c] = dotfile is not None or _configures(pyproject)
        return {c: self._governed[c] for c in commits}

    def is_governed(self, commit: str) -> bool:
        return self.governed(commit)[commit]

    # -- the default branch's policy -----------------------------------------------------------
    def default(self) -> Governing | None:
        """The policy that judges new, re-created and pre-adoption refs; None: no ref carries a
        policy (the repository is not governed yet, and the adoption rule bootstraps it)."""
        if not self._default:
            self._default.append(self._find(self.refs.commits))
        return self._default[0]

    def is_default(self, ref: str) -> bool:
        """Whether `ref` is the default branch (or, where HEAD leads to no policy, the ref the
        newest governed policy was found at)."""
        found = self.default()
        return found is not None and found.ref == ref

    def judges_itself(self, ref: str) -> bool:
        """Whether an update of the existing `ref` is judged by the policy at its own old tip:
        only the default branch's is (and any ref's while nothing governs yet). Every other ref
        is judged by the default branch's policy, as CI judges it, so nobody can point a ref at
        an old commit and push onto it under the policy or trust file of then."""
        return self.default() is None or self.is_default(ref)

    def _find(self, commits: dict[str, str]) -> Governing | None:
        head = self.refs.head
        if head is not None and head in commits and self.is_governed(commits[head]):
            return Governing(
                commits[head], head, f"the default branch ({self.refs.pointer} -> {head})"
            )
        flags = self.governed(*commits.values())
        carrying = {ref: c for ref, c in commits.items() if flags[c]}
        if not carrying:
            return None
        return self._newest(carrying)

    def _newest(self, carrying: dict[str, str]) -> Governing:
        tips = independent(self.repo, carrying.values())
        winners = set(tips)
        if len({self.key(t) for t in tips}) > 1:
            points = {t: self._policy_point(t) for t in tips}
            top = independent(self.repo, points.values())
            if len(top) != 1:
                refs = sorted(r for r, c in carrying.items() if c in tips)
                raise CatalyticError(
                    ErrorCode.NO_GOVERNING_POLICY,
                    f"{self._pointer_problem()}, and the refs carrying a policy disagree on it "
                    f"({', '.join(refs)}): no policy can judge this ref; point HEAD at the "
                    f"branch that carries the policy (`{self.refs.fix}`)",
                    refs=refs,
                )
            winners = {t for t in tips if points[t] == top[0]}
        ref = min(r for r, c in carrying.items() if c in winners)
        return Governing(
            carrying[ref], ref, f"the newest governed policy ({ref}): {self._pointer_problem()}"
        )

    def _pointer_problem(self) -> str:
        head = self.refs.head
        if head is None:
            return f"{self.refs.pointer} names no branch"
        if head not in self.refs.commits:
            return f"{self.refs.pointer} names {head}, which does not exist"
        return f"{self.refs.pointer} names {head}, which carries no policy"

    def _policy_point(self, tip: str) -> str:
        """The newest commit on `tip`'s first-parent line where the policy or trust file it
        carries came to be what it is at `tip`."""
        trust = self.baseline(tip).policy.trust_path
        paths = {*POLICY_SOURCES, DEFAULT_TRUST_FILE, *([trust] if trust else [])}
        for commit in first_parent_touching(self.repo, tip, paths):
            parent = self.repo.rev_parse(commit + "^1")
            if parent is None:
                return commit
            try:
                if self.key(commit) != self.key(parent):
                    return commit
            except CatalyticError:
                return commit  # an unreadable policy on either side is a change too
        return tip

    # -- deleting or rewinding what carries the policy -----------------------------------------
    def carrier_findings(
        self, updates: Sequence[tuple[str, str | None, str | None]]
    ) -> list[Finding]:
        """Findings for ref updates (ref, old commit, new commit; None: absent) that would
        change the policy judging new refs without a judged commit: deleting the default branch,
        or moving it, other than forward, to a tip with another policy; where HEAD leads to no
        policy, deleting or rewinding refs so that the newest governed policy changes."""
        head = self.refs.head
        commits = self.refs.commits
        if head is not None and head in commits and self.is_governed(commits[head]):
            out = []
            for ref, old, new in updates:
                problem = self._default_moved(old, new) if ref == head and old else None
                if problem:
                    out.append(Finding(ref, FindingKind.POLICY, problem))
            return out
        out = self._head_created(updates)
        moved = [
            (ref, old, new)
            for ref, old, new in updates
            if old is not None
            and ref in commits
            and self.is_governed(old)
            and (new is None or not is_ancestor(self.repo, old, new))
        ]
        if not moved:
            return out
        before = self.default()
        after = dict(commits)
        for ref, _, new in moved:
            if new is None:
                after.pop(ref)
            else:
                after[ref] = new
        try:
            then = self._find(after)
        except CatalyticError:
            then = None
        if before is None or (then is not None and self.key(then.rev) == self.key(before.rev)):
            return out
        return out + [
            Finding(
                ref,
                FindingKind.POLICY,
                f"{self._pointer_problem()}, so the newest governed policy "
                f"({before.ref}) judges new refs; this update would change or remove "
                f"it without a judged commit (point HEAD at the policy branch: "
                f"`{self.refs.fix}`)",
            )
            for ref, _, _ in moved
        ]

    def _head_created(self, updates: Sequence[tuple[str, str | None, str | None]]) -> list[Finding]:
        """Where HEAD names a branch that leads to no policy, pointing that branch at a commit
        with a policy makes it the default branch, whose policy judges every other ref: only
        from the newest governed tip forward (an old commit would bring its policy back)."""
        head = self.refs.head
        newest = self.default() if head is not None else None
        out = []
        for ref, _, new in updates:
            if (
                ref == head
                and newest is not None
                and new is not None
                and self.is_governed(new)
                and not is_ancestor(self.repo, newest.rev, new)
            ):
                out.append(
                    Finding(
                        ref,
                        FindingKind.POLICY,
                        f"{self.refs.pointer} names {ref}: with a policy it becomes the default "
                        f"branch, whose policy judges every other ref, so it must contain the "
                        f"newest governed tip ({newest.ref})",
                    )
                )
        return out

    def _default_moved(self, old: str, new: str | None) -> str | None:
        if new is None:
            return (
                "the default branch carries the policy that judges new and re-created "
                "refs: deleting it is refused"
            )
        if is_ancestor(self.repo, old, new):
            return None  # forward: every policy change on the way was judged
        if self.key(new) != self.key(old):
            return (
                "a non-fast-forward update of the default branch that changes its policy "
                "or trust file (only a judged commit may change them)"
            )
        return None


def _configures(pyproject: bytes | None) -> bool:
    if pyproject is None:
        return False
    try:
        return catalytic_table(pyproject) is not None
    except CatalyticError:
        return False  # not TOML at all: it carries no readable policy
