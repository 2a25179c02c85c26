"""CI that checks the change, not the empty index: the exact commands of the shipped templates
(ci/), and `pre-commit run --all-files`, in real (shallow) clones with the CI's variables set."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, catalytic, git, write_files
from .test_hooks import framework_config

POLICY = 'durable_roots = ["outputs"]\n'
BASE = {"data/x.csv": "1\n", "src/a.py": "a = 1\n", "outputs/k.txt": "k\n"}


def template_commands(name: str) -> list[str]:
    """The template's shell commands, minus the package installation (the tests run offline,
    with the package under test already installed)."""
    doc = yaml.safe_load((ROOT / "ci" / name).read_text())
    if name == "github-actions.yml":
        steps = doc["jobs"]["catalytic"]["steps"]
        lines = [s["run"] for s in steps if "run" in s]
    else:
        lines = list(doc["catalytic"]["script"])
    cmds = [c for c in lines if "pip install" not in c]
    assert cmds and all(c.startswith("catalytic ") for c in cmds), cmds
    return cmds


@pytest.fixture
def origin(make_repo, tmp_path: Path) -> tuple[Path, str]:
    """A server with main (the policy committed) and two proposed branches: `good` writes a
    durable output, `bad` changes protected data (hidden behind two clean commits)."""
    work = make_repo(BASE, policy=POLICY)
    framework_config(work)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "pre-commit config")
    base = git(work, "rev-parse", "HEAD").stdout.strip()
    for branch, change in (("good", {"outputs/r.txt": "r\n"}), ("bad", {"data/x.csv": "2\n"})):
        git(work, "checkout", "-q", "-b", branch, base)
        write_files(work, change)
        git(
            work,
            "commit",
            "-q",
            "-am" if branch == "bad" else "-m",
            f"{branch} change",
            *([] if branch == "bad" else ["--allow-empty"]),
        )
        if branch == "good":
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", "good output")
        for n in range(2):
            write_files(work, {f"outputs/{branch}{n}.txt": "x\n"})
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", f"{branch} later {n}")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare, base


def _clone(origin: Path, tmp_path: Path, branch: str) -> Path:
    clone = tmp_path / f"ci-{branch}"
    git(origin.parent, "clone", "-q", "--depth=1", "--branch", branch, origin.as_uri(), str(clone))
    assert git(clone, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    return clone


def _github_env(tmp_path: Path, base: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {"base": {"sha": base, "ref": "main"}},
                "repository": {"default_branch": "main"},
            }
        )
    )
    return {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_BASE_REF": "main",
        "CI": "true",
    }


def _gitlab_env(base: str) -> dict[str, str]:
    return {
        **os.environ,
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_DEFAULT_BRANCH": "main",
        "CI": "true",
    }


def _run(cmds: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = "set -e\n" + "\n".join(cmds)
    return subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("template", ["github-actions.yml", "gitlab-ci.yml"])
def test_a_template_fails_a_bad_change_and_passes_a_good_one(
    origin: tuple[Path, str], tmp_path: Path, template: str
) -> None:
    bare, base = origin
    cmds = template_commands(template)
    for branch, expect in (("bad", 1), ("good", 0)):
        clone = _clone(bare, tmp_path / template, branch)
        env = _github_env(tmp_path, base) if template.startswith("github") else _gitlab_env(base)
        proc = _run(cmds, clone, env)
        assert proc.returncode == expect, (branch, proc.stdout, proc.stderr)
        assert "catalytic: checking" in proc.stderr
        if branch == "bad":
            assert "data/x.csv: protected path changed" in proc.stdout
            # the shallow clone was deepened: no commit was judged against the empty tree
            assert "src/a.py" not in proc.stdout
            if template.startswith("github"):
                assert "::error file=data/x.csv,title=catalytic mutation::" in proc.stdout


def test_pre_commit_run_all_files_checks_the_range(
    origin: tuple[Path, str], tmp_path: Path
) -> None:
    bare, base = origin
    for branch, expect in (("bad", 1), ("good", 0)):
        clone = _clone(bare, tmp_path, branch)
        proc = subprocess.run(
            ["pre-commit", "run", "--all-files", "catalytic-purity"],
            cwd=clone,
            capture_output=True,
            text=True,
            env={**_github_env(tmp_path, base), "PIP_NO_INDEX": "1"},
        )
        assert proc.returncode == expect, (branch, proc.stdout, proc.stderr)
        if branch == "bad":
            assert "data/x.csv: protected path changed" in proc.stdout


def test_check_ci_says_which_range_and_why(origin: tuple[Path, str], tmp_path: Path) -> None:
    bare, base = origin
    clone = _clone(bare, tmp_path, "good")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CI_", "GITLAB_")) and k != "CI"
    }
    proc = catalytic("check", "--ci", "--json", cwd=clone, env=env)
    details = json.loads(proc.stdout)["details"]
    # no CI variables: the clone's upstream branch (the range is empty, so it passes)
    assert (details["mode"], details["from_ref"], details["why"]) == (
        "ci",
        "@{upstream}",
        "the upstream branch",
    )
    assert proc.returncode == 0
    proc = catalytic("check", "--ci", "--json", cwd=clone, env=_gitlab_env(base))
    details = json.loads(proc.stdout)["details"]
    assert proc.returncode == 0
    assert details["from_ref"] == base and "CI_MERGE_REQUEST_DIFF_BASE_SHA" in details["why"]


def test_an_unreachable_base_is_a_clear_error(origin: tuple[Path, str], tmp_path: Path) -> None:
    bare, _ = origin
    clone = _clone(bare, tmp_path, "good")
    proc = catalytic("check", "--ci", "--json", cwd=clone, env=_gitlab_env("1" * 40))
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CI_BASE_MISSING" and "fetch-depth: 0" in doc["message"]
