"""CI judges from a base the change did not choose (issue 26, class 7): a branch whose first,
unjudged push widened its policy must not pass its later pushes. The shipped templates' exact
commands, in real shallow clones of a real origin, with the CI's push variables set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .helpers import catalytic, git, write_files
from .test_ci import _run, template_commands

ZERO = "0" * 40
WIDE = 'durable_roots = ["outputs", "data"]\n'


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def _env(
    provider: str, tmp_path: Path, branch: str, before: str, default: str | None = "main"
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CI_", "GITLAB_")) and k != "CI"
    }
    if provider == "github":
        event = tmp_path / f"push-{before[:8]}.json"
        payload: dict[str, object] = {"ref": f"refs/heads/{branch}", "before": before}
        if default is not None:
            payload["repository"] = {"default_branch": default}
        event.write_text(json.dumps(payload))
        return {
            **env,
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_REF": f"refs/heads/{branch}",
        }
    env = {
        **env,
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BRANCH": branch,
        "CI_COMMIT_BEFORE_SHA": before,
    }
    return {**env, "CI_DEFAULT_BRANCH": default} if default is not None else env


def _ci_clone(origin: Path, into: Path, branch: str) -> Path:
    git(origin.parent, "clone", "-q", "--depth=1", "--branch", branch, origin.as_uri(), str(into))
    return into


@pytest.mark.parametrize("provider", ["github", pytest.param("gitlab", marks=pytest.mark.slow)])
def test_a_branch_that_widened_its_own_policy_never_passes(
    make_repo, tmp_path: Path, provider: str
) -> None:
    work = make_repo(
        {"data/x.csv": "1\n", "outputs/k.txt": "k\n"}, policy='durable_roots = ["outputs"]\n'
    )
    git(work, "checkout", "-q", "-b", "wide")
    _commit(work, {".catalytic.toml": WIDE}, "make data durable")
    first = _commit(work, {"outputs/a.txt": "a\n"}, "an innocuous result on top")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(origin))
    cmds = template_commands("github-actions.yml" if provider == "github" else "gitlab-ci.yml")
    # The branch's first push (before = zeros): judged from its merge base with main, by main's
    # policy, not HEAD^1..HEAD.
    clone = _ci_clone(origin, tmp_path / "first", "wide")
    proc = _run(cmds, clone, _env(provider, tmp_path, "wide", ZERO))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ".catalytic.toml: policy changed" in proc.stdout
    assert "not the default branch: judged from its merge base with origin/main" in proc.stderr
    # A later push that changes data: the branch's own earlier tip (which says data is durable)
    # does not judge it.
    _commit(work, {"data/x.csv": "2\n"}, "now change the raw data")
    git(work, "push", "-q", str(origin), "wide")
    clone = _ci_clone(origin, tmp_path / "later", "wide")
    proc = _run(cmds, clone, _env(provider, tmp_path, "wide", first))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "data/x.csv: protected path changed outside durable roots" in proc.stdout
    # Without the default branch there is no trusted base: a clear code, never a guess.
    proc = catalytic(
        "check",
        "--ci",
        "--json",
        cwd=clone,
        env=_env(provider, tmp_path, "wide", first, default=None),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CI_BASE_MISSING" and "default branch is unknown" in doc["message"]


def test_an_unknown_ci_and_no_upstream_is_not_judged_from_head_s_parent(make_repo) -> None:
    repo = make_repo({"data/x.csv": "1\n"}, policy='durable_roots = ["outputs"]\n')
    _commit(repo, {".catalytic.toml": WIDE}, "make data durable")
    _commit(repo, {"outputs/a.txt": "a\n"}, "an innocuous result on top")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "GITLAB_"))}
    proc = catalytic("check", "--ci", "--json", cwd=repo, env={**env, "CI": "true"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["code"] == "CI_BASE_MISSING"


def test_the_github_template_checks_pushes_to_every_branch() -> None:
    import yaml

    from .helpers import ROOT

    doc = yaml.safe_load((ROOT / "ci" / "github-actions.yml").read_text())
    triggers = doc[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers and triggers["push"] is None  # no branch filter
