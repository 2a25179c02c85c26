"""Which range a CI job is checking (README: "CI mode"), and making sure the clone holds it.

`pre-commit run --all-files` in CI stages nothing, so the commit check would compare HEAD with an
identical index and pass whatever the branch did. Outside a commit, the range proposed for
merging is checked instead, found in this order: the framework's PRE_COMMIT_FROM_REF/TO_REF; the
pull or merge request base (GitHub Actions' event payload or GITHUB_BASE_REF, GitLab's
CI_MERGE_REQUEST_DIFF_BASE_SHA), the pushed range (GitHub's `before`, GitLab's
CI_COMMIT_BEFORE_SHA); the upstream branch; HEAD's first parent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.enforce.checks import BundleChecker, check_range
from catalytic_hooks.enforce.findings import Finding, Reporter
from catalytic_hooks.enforce.governing import Governance, Refs
from catalytic_hooks.git.history import commits_between, upstream_exists
from catalytic_hooks.git.refs import merge_base
from catalytic_hooks.git.repo import Repo, is_zero_oid


@dataclass(frozen=True)
class CiRange:
    from_ref: str  # "" when there is no base at all (the adoption rule may apply)
    to_ref: str
    why: str
    # The ref whose committed policy judges ("": from_ref's own). A branch other than the
    # default one is judged by the default branch's policy, never by its own earlier tip.
    policy_ref: str = ""
    # from_ref names the default branch: the range starts at its merge base with to_ref.
    merge_base: bool = False
    # No base at all (the first push of the default branch, whose tracking ref this names):
    # the adoption rule applies only while no other branch of origin carries a policy.
    bootstrap: str = ""
    # One update of the default branch (a push event's before and after): a base that is not an
    # ancestor of the tip is a force push, judged for what it undoes.
    rewind: bool = False


@dataclass(frozen=True)
class _Event:
    """What a CI provider says about the change: the branch it goes to (a pull request's
    target, a pushed branch; None for a tag), the base it names, the default branch."""

    provider: str
    kind: str  # "pull request", "merge request", "push"
    target: str | None
    base: str | None
    base_label: str
    default: str | None
    default_hint: str


def _load_event(path: str | None) -> dict[str, object]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = json.load(fh)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _text(obj: object, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def _github(env: Mapping[str, str]) -> _Event | None:
    if not env.get("GITHUB_EVENT_PATH") and env.get("GITHUB_ACTIONS") != "true":
        return None
    event = _load_event(env.get("GITHUB_EVENT_PATH"))
    default = _text(event.get("repository"), "default_branch")
    hint = "the event payload's repository.default_branch (GITHUB_EVENT_PATH)"
    pr = event.get("pull_request")
    if isinstance(pr, dict):
        return _Event(
            "GitHub",
            "pull request",
            _text(pr.get("base"), "ref"),
            _text(pr.get("base"), "sha"),
            "event payload pull_request.base.sha",
            default,
            hint,
        )
    ref = _text(event, "ref") or env.get("GITHUB_REF", "")
    branch = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None
    return _Event(
        "GitHub", "push", branch, _text(event, "before"), "event payload 'before'", default, hint
    )


def _gitlab(env: Mapping[str, str]) -> _Event | None:
    if (
        env.get("GITLAB_CI") != "true"
        and not env.get("CI_DEFAULT_BRANCH")
        and not env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA")
    ):
        return None
    default = env.get("CI_DEFAULT_BRANCH") or None
    hint = "CI_DEFAULT_BRANCH"
    if env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or env.get("CI_MERGE_REQUEST_IID"):
        return _Event(
            "GitLab",
            "merge request",
            env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME") or None,
            env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or None,
            "CI_MERGE_REQUEST_DIFF_BASE_SHA",
            default,
            hint,
        )
    return _Event(
        "GitLab",
        "push",
        env.get("CI_COMMIT_BRANCH") or None,
        env.get("CI_COMMIT_BEFORE_SHA") or None,
        "CI_COMMIT_BEFORE_SHA",
        default,
        hint,
    )


def _no_base(why: str) -> CatalyticError:
    return CatalyticError(
        ErrorCode.CI_BASE_MISSING,
        f"{why}: there is no trusted base to judge this change from, and a guessed one (the "
        "branch's own earlier tip, HEAD's parent) would let the change choose its judge; name "
        "the range (`catalytic check --from-ref BASE --to-ref HEAD`, or PRE_COMMIT_FROM_REF/"
        "PRE_COMMIT_TO_REF)",
    )


def _decide(ev: _Event) -> CiRange:
    """Only the default branch is a trusted base: a change to it is judged from the base the
    provider names (its own earlier tip, or the pull request's base on it); any other branch,
    tag or pull request from its merge base with the default branch, by that branch's policy."""
    what = f"{ev.provider} {ev.kind}"
    if ev.default is None:
        raise _no_base(f"{what}: the default branch is unknown ({ev.default_hint} is not set)")
    if ev.target == ev.default:
        if ev.base and not is_zero_oid(ev.base):
            return CiRange(
                ev.base,
                "HEAD",
                f"{what} to the default branch {ev.default} ({ev.base_label})",
                rewind=ev.kind == "push",
            )
        if ev.kind == "push" and ev.base is not None:
            return CiRange(
                "",
                "HEAD",
                f"{what}: the first push of the default branch "
                f"{ev.default} (no base: the adoption rule, unless another branch of "
                "origin carries a policy)",
                bootstrap=f"refs/remotes/origin/{ev.default}",
            )
        raise _no_base(f"{what} to the default branch {ev.default} names no base ({ev.base_label})")
    default = f"origin/{ev.default}"
    onto = (
        f"of {ev.target}"
        if ev.kind == "push" and ev.target
        else (f"to {ev.target}" if ev.target else "of a tag")
    )
    return CiRange(
        default,
        "HEAD",
        f"{what} {onto}, not the default branch: judged from its "
        f"merge base with {default}, by {default}'s policy",
        policy_ref=default,
        merge_base=True,
    )


def detect(repo: Repo, env: Mapping[str, str] | None = None) -> CiRange:
    env = os.environ if env is None else env
    frm, to = env.get("PRE_COMMIT_FROM_REF"), env.get("PRE_COMMIT_TO_REF")
    if frm and to:
        return CiRange(frm, to, "PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF")
    event = _github(env) or _gitlab(env)
    if event is not None:
        return _decide(event)
    if env.get("CI"):
        raise _no_base(
            "a CI job this tool does not recognise (CI is set, but neither GitHub "
            "Actions' nor GitLab's variables)"
        )
    if upstream_exists(repo):
        return CiRange("@{upstream}", "HEAD", "the upstream branch")
    raise _no_base("no CI variables and no upstream branch")


def _shallow_in_range(repo: Repo, frm: str, to: str) -> bool:
    shallow = repo.git_dir / "shallow"
    try:
        cut = set(shallow.read_text().split())
    except OSError:
        return False
    return bool(cut & commits_between(repo, frm, to)) or merge_base(repo, frm, to) is None


def ensure_fetched(repo: Repo, rng: CiRange) -> CiRange:
    """Fetch the base (and deepen a shallow clone) so that the range is complete; a commit
    whose parents a shallow clone lacks would otherwise be judged against the empty tree.
    The range to check comes back: for a branch judged from its merge base with the default
    branch, it starts at that merge base."""
    if not rng.from_ref:
        return rng
    if repo.rev_parse(rng.from_ref) is None:
        ref = rng.from_ref
        spec = f"{ref[len('origin/') :]}:refs/remotes/{ref}" if ref.startswith("origin/") else ref
        repo.fetch("origin", spec)
    base = repo.rev_parse(rng.from_ref)
    if base is not None and repo.is_shallow():
        for args in (("--deepen=200",), ("--unshallow",)):
            if not _shallow_in_range(repo, base, rng.to_ref):
                break
            repo.fetch("origin", *args)
        if _shallow_in_range(repo, base, rng.to_ref):
            base = None
    if base is None:
        raise CatalyticError(
            ErrorCode.CI_BASE_MISSING,
            f"the base of the range ({rng.from_ref}, {rng.why}) is not in this clone and could "
            "not be fetched; fetch the history first (actions/checkout: `fetch-depth: 0`; "
            "GitLab: `GIT_DEPTH: 0`; or `git fetch --unshallow origin`)",
            from_ref=rng.from_ref,
        )
    if not rng.merge_base:
        return rng
    found = merge_base(repo, base, rng.to_ref)
    if found is None:
        raise CatalyticError(
            ErrorCode.CI_BASE_MISSING,
            f"{rng.to_ref} shares no history with "
            f"{rng.from_ref} ({rng.why}): there is no trusted base to judge "
            "it from",
            from_ref=rng.from_ref,
        )
    return replace(rng, from_ref=found)


def prepare(repo: Repo, env: Mapping[str, str] | None = None) -> CiRange:
    """The range this CI job checks, its base fetched."""
    return ensure_fetched(repo, detect(repo, env))


def check_ci(
    repo: Repo,
    rng: CiRange,
    bundles: BundleChecker | None = None,
    *,
    reporter: Reporter | None = None,
) -> list[Finding]:
    governance = None
    if rng.bootstrap:
        # The default branch has no base here; another branch of origin that carries a policy
        # means the repository is governed and the adoption rule must not apply.
        refs = Refs.of_remote(repo, "origin")
        others = {r: c for r, c in refs.commits.items() if r != rng.bootstrap}
        governance = Governance(repo, Refs(others, None, "the default branch"))
    return check_range(
        repo,
        rng.from_ref,
        rng.to_ref,
        bundles,
        policy_ref=rng.policy_ref,
        governance=governance,
        reporter=reporter,
        rewind=rng.rewind,
    )


def outside_a_commit(repo: Repo, env: Mapping[str, str] | None = None) -> bool:
    """The pre-commit framework running the commit hook with no commit under way (git exports
    GIT_INDEX_FILE to every pre-commit hook it runs) and nothing staged: CI, or a manual
    `pre-commit run`."""
    env = os.environ if env is None else env
    if not env.get("PRE_COMMIT") or env.get("GIT_INDEX_FILE"):
        return False
    head = repo.head()
    return head is not None and repo.index_matches(head)
