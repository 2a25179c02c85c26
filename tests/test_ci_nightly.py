"""The nightly templates (ci/nightly-github.yml, ci/nightly-gitlab.yml): valid against the
published schemas (SchemaStore's GitHub workflow schema and GitLab's CI schema, as vendored by
the check-jsonschema package, a test extra: read from disk, nothing fetched), and their commands
run as the CI would run them, every shard, on a repository with real signed runs."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from catalytic_hooks.provenance.chronicle import read

from .helpers import ROOT, SEED_A, catalytic, git, signer
from .test_validate import POLICY, make_runs

RUNS = ["n1", "n2", "n3"]


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "ci" / name).read_text())
    # GitHub reads YAML 1.2, where `on` is a string; PyYAML (1.1) reads it as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def schema(name: str) -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / name).read_text())


@pytest.mark.parametrize(
    ("template", "schema_file"),
    [
        ("nightly-github.yml", "github-workflows.json"),
        ("github-actions.yml", "github-workflows.json"),
        ("nightly-gitlab.yml", "gitlab-ci.json"),
        ("gitlab-ci.yml", "gitlab-ci.json"),
    ],
)
def test_templates_are_valid_against_the_published_schemas(template: str, schema_file: str) -> None:
    s = schema(schema_file)
    validator = jsonschema.validators.validator_for(s)(s)
    doc = load(template)
    assert [e.message for e in validator.iter_errors(doc)] == []
    # The schema is really checking: a broken copy is refused.
    broken = json.loads(json.dumps(doc))
    if "jobs" in broken:
        broken["on"] = {"schedule": [{"cron": 5}]}
    else:
        next(iter(broken.values()))["parallel"] = "four"
    assert list(validator.iter_errors(broken))


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo({"README": "x\n"}, policy=POLICY)
    assert (
        catalytic("trust", "add", "ci", f"ed25519:{signer(SEED_A).public_hex}", cwd=r).returncode
        == 0
    )
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "trust")
    make_runs(r, RUNS)
    return r


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # GitHub's default `run` shell is `bash -e {0}`; GitLab's script lines run in bash too.
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True
    )


def offline(lines: list[str]) -> list[str]:
    """The template's commands minus the package installation (the package under test is
    installed already; the tests run offline)."""
    return [c for c in lines if "pip install" not in c]


def validated(repo: Path) -> list[list[str]]:
    """The run ids each validation replayed, from the chronicle."""
    return [
        [r["run_id"] for r in rec["data"]["results"]]
        for rec in read(repo / ".catalytic/chronicle.jsonl")
        if rec["kind"] == "validate"
    ]


def test_github_nightly_commands_replay_the_sample_once_over_the_shards(
    repo: Path, tmp_path: Path
) -> None:
    doc = load("nightly-github.yml")
    assert doc["on"]["schedule"][0]["cron"]
    out = tmp_path / "github_output"
    seed_step = doc["jobs"]["seed"]["steps"][0]["run"]
    proc = bash(seed_step, repo, {**os.environ, "GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    seed = dict(line.split("=", 1) for line in out.read_text().splitlines())["seed"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", seed)
    job = doc["jobs"]["validate"]
    checkout = next(
        s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout")
    )
    assert checkout["with"]["persist-credentials"] is False  # no token in .git/config
    shards = job["strategy"]["matrix"]["shard"]
    assert str(len(shards)) == job["env"]["SHARDS"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    uploads = [
        s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")
    ]
    for shard in shards:
        summary = tmp_path / f"step-summary-{shard}.md"
        env = {
            **os.environ,
            **job["env"],
            "GITHUB_STEP_SUMMARY": str(summary),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
        }
        # Every shard runs the validation; the report (the same command in every shard, over
        # the same chronicle here) is rendered by the last one only, to keep the test short.
        for cmd in offline(runs)[:1] if shard != shards[-1] else offline(runs):
            cmd = cmd.replace("${{ matrix.shard }}", str(shard)).replace(
                "${{ needs.seed.outputs.seed }}", seed
            )
            assert "${{" not in cmd, cmd
            proc = bash(cmd, repo, env)
            assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
        assert "**PASS**" in summary.read_text()
    for path in uploads[0]["with"]["path"].split():
        assert (repo / path).is_dir(), path
    assert (repo / "catalytic-report/report.html").is_file()
    picks = validated(repo)
    assert len(picks) == len(shards)
    assert sorted(r for p in picks for r in p) == sorted(RUNS)  # each run exactly once


@pytest.mark.slow  # the same commands as the GitHub template's, run in the default suite
def test_gitlab_nightly_commands_replay_the_sample_once_over_the_copies(repo: Path) -> None:
    job = load("nightly-gitlab.yml")["catalytic-nightly"]
    assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "schedule"'
    # as GitLab's runner clones: the job's token in origin's URL, which replays must not find
    token_url = "https://gitlab-ci-token:glcbt-SECRET@gitlab.example/group/project.git"
    git(repo, "remote", "add", "origin", token_url)
    total = job["parallel"]
    for index in range(1, total + 1):
        env = {
            **os.environ,
            **job["variables"],
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "schedule",
            "CI_NODE_INDEX": str(index),
            "CI_NODE_TOTAL": str(total),
            "CI_PIPELINE_CREATED_AT": "2026-12-04T03:17:09Z",
        }
        last = index == total  # the report: rendered by the last copy only (as above)
        for cmd in offline(job["script"]) + (job["after_script"] if last else []):
            proc = bash(cmd, repo, env)
            assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    for path in job["artifacts"]["paths"]:
        assert (repo / path).exists(), path
    assert git(repo, "remote", "get-url", "origin").stdout.strip() == (
        "https://gitlab.example/group/project.git"
    )
    assert "glcbt-SECRET" not in (repo / ".git/config").read_text()
    recs = [r for r in read(repo / ".catalytic/chronicle.jsonl") if r["kind"] == "validate"]
    assert {r["data"]["seed"] for r in recs} == {"2026-12-04"}
    assert sorted(r for p in validated(repo) for r in p) == sorted(RUNS)
