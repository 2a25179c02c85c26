"""The range engine against a git-only oracle on a generated history with every kind of merge
(tests/history_gen.py): the same findings, no clean merge flagged, no evil merge or
hand-resolved protected conflict missed."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import catalytic, git
from .history_gen import generate, oracle


def test_findings_equal_the_git_only_oracle(tmp_path: Path) -> None:
    repo = tmp_path / "history"
    planted = generate(repo, 400, seed=11)
    for kind in (
        "clean-merge",
        "protected-conflict",
        "evil-merge",
        "durable-conflict",
        "rename",
        "directory-rename",
        "violation",
    ):
        assert planted.get(kind, 0) > 0, (kind, planted)
    assert planted.get("octopus", 0) + planted.get("subtree-merge", 0) > 0
    proc = catalytic("check", "--from-ref", "root", "--to-ref", "main", "--json", cwd=repo)
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["details"]["findings"]
    ours = {(f["commit"], f["path"]) for f in findings if f["kind"] == "mutation"}
    assert ours == oracle(repo, "root", "main")
    # Every evil merge and every hand-resolved protected conflict is among them, by subject.
    subjects = {f["subject"] for f in findings}
    merges = [s for s in subjects if s.startswith("merge topic")]
    assert len(merges) >= planted["evil-merge"] + planted["protected-conflict"]
    clean = git(repo, "log", "--merges", "--format=%H %s", "root..main").stdout.splitlines()
    flagged = {f["commit"] for f in findings}
    assert any(c.split()[0] not in flagged for c in clean)  # clean merges pass


def test_a_pre_push_of_the_whole_history_agrees(tmp_path: Path) -> None:
    repo = tmp_path / "history"
    generate(repo, 150, seed=3)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "push", "-q", str(remote), "root:refs/heads/main")
    assert catalytic("install", "--server", "--git-dir", str(remote), cwd=tmp_path).returncode == 0
    push = git(repo, "push", str(remote), "main", check=False)
    expected = oracle(repo, "root", "main")
    assert push.returncode != 0
    for _, path in list(expected)[:5]:
        assert f"remote: {path}:" in push.stderr


def test_chunked_diffs_give_the_same_findings(tmp_path: Path, monkeypatch) -> None:
    from catalytic_hooks.enforce.bundles import check_bundles
    from catalytic_hooks.enforce.checks import check_range
    from catalytic_hooks.git import rangediff
    from catalytic_hooks.git.repo import Repo

    repo = tmp_path / "history"
    generate(repo, 250, seed=5)
    monkeypatch.setattr(rangediff, "CHUNK", 37)  # many diff-tree processes, odd boundaries
    found = check_range(Repo.discover(repo), "root", "main", check_bundles)
    assert {(f.commit, f.path) for f in found if f.kind == "mutation"} == oracle(
        repo, "root", "main"
    )
