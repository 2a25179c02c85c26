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
from dataclasses import dataclass

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, is_zero_oid

# A fetch made for the check must not run the repository's hooks (reference-transaction).
_NEUTRAL = ("-c", "core.hooksPath=/dev/null")


@dataclass(frozen=True)
class CiRange:
    from_ref: str  # "" when there is no base at all (the adoption rule applies)
    to_ref: str
    why: str


def _github(env: Mapping[str, str]) -> CiRange | None:
    event: dict[str, object] = {}
    path = env.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = json.load(fh)
            event = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            event = {}
    pr = event.get("pull_request")
    if isinstance(pr, dict) and isinstance(pr.get("base"), dict):
        sha = pr["base"].get("sha")
        if isinstance(sha, str) and sha:
            return CiRange(sha, "HEAD", "GitHub pull request base (event payload)")
    if env.get("GITHUB_BASE_REF"):
        return CiRange(f"origin/{env['GITHUB_BASE_REF']}", "HEAD",
                       "GitHub pull request base (GITHUB_BASE_REF)")
    before = event.get("before")
    if isinstance(before, str) and before and not is_zero_oid(before):
        return CiRange(before, "HEAD", "GitHub push (event payload 'before')")
    return None


def _gitlab(env: Mapping[str, str]) -> CiRange | None:
    if env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA"):
        return CiRange(env["CI_MERGE_REQUEST_DIFF_BASE_SHA"], "HEAD",
                       "GitLab merge request base (CI_MERGE_REQUEST_DIFF_BASE_SHA)")
    before = env.get("CI_COMMIT_BEFORE_SHA", "")
    if before and not is_zero_oid(before):
        return CiRange(before, "HEAD", "GitLab push (CI_COMMIT_BEFORE_SHA)")
    return None


def detect(repo: Repo, env: Mapping[str, str] | None = None) -> CiRange:
    env = os.environ if env is None else env
    frm, to = env.get("PRE_COMMIT_FROM_REF"), env.get("PRE_COMMIT_TO_REF")
    if frm and to:
        return CiRange(frm, to, "PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF")
    found = _github(env) or _gitlab(env)
    if found is not None:
        return found
    upstream = repo.git_proc("rev-parse", "--verify", "--quiet", "@{upstream}")
    if upstream.returncode == 0 and upstream.stdout.strip():
        return CiRange("@{upstream}", "HEAD", "the upstream branch")
    if repo.rev_parse("HEAD^1") is not None:
        return CiRange("HEAD^1", "HEAD", "HEAD's first parent (no CI base, no upstream)")
    return CiRange("", "HEAD", "a root commit (no base: the adoption rule applies)")


def _shallow_in_range(repo: Repo, frm: str, to: str) -> bool:
    shallow = repo.git_dir / "shallow"
    try:
        cut = set(shallow.read_text().split())
    except OSError:
        return False
    new = set(repo.git("rev-list", to, "--not", frm, "--").decode().split())
    return bool(cut & new) or not repo.git_ok("merge-base", frm, to)


def ensure_fetched(repo: Repo, rng: CiRange) -> None:
    """Fetch the base (and deepen a shallow clone) so that the range is complete; a commit
    whose parents a shallow clone lacks would otherwise be judged against the empty tree."""
    if not rng.from_ref:
        return
    if repo.rev_parse(rng.from_ref) is None:
        ref = rng.from_ref
        spec = f"{ref[len('origin/'):]}:refs/remotes/{ref}" if ref.startswith("origin/") else ref
        repo.git_proc(*_NEUTRAL, "fetch", "--no-tags", "--quiet", "origin", spec)
    base = repo.rev_parse(rng.from_ref)
    if base is not None and repo.git("rev-parse", "--is-shallow-repository").strip() == b"true":
        for args in (("--deepen=200",), ("--unshallow",)):
            if not _shallow_in_range(repo, base, rng.to_ref):
                break
            repo.git_proc(*_NEUTRAL, "fetch", "--no-tags", "--quiet", *args, "origin")
        if _shallow_in_range(repo, base, rng.to_ref):
            base = None
    if base is None:
        raise CatalyticError(
            ErrorCode.CI_BASE_MISSING,
            f"the base of the range ({rng.from_ref}, {rng.why}) is not in this clone and could "
            "not be fetched; fetch the history first (actions/checkout: `fetch-depth: 0`; "
            "GitLab: `GIT_DEPTH: 0`; or `git fetch --unshallow origin`)",
            from_ref=rng.from_ref)


def outside_a_commit(repo: Repo, env: Mapping[str, str] | None = None) -> bool:
    """The pre-commit framework running the commit hook with no commit under way (git exports
    GIT_INDEX_FILE to every pre-commit hook it runs) and nothing staged: CI, or a manual
    `pre-commit run`."""
    env = os.environ if env is None else env
    if not env.get("PRE_COMMIT") or env.get("GIT_INDEX_FILE"):
        return False
    head = repo.head()
    return head is not None and repo.git_ok("diff-index", "--cached", "--quiet", head, "--")
