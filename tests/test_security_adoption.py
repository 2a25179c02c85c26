"""Adoption is bootstrap only (issue 26, class 2): once some ref of a repository carries a
policy, nobody can push history with an adoption commit of their own and be judged by the policy
they wrote. Real bare repositories, the real gate, real `git push`; each test pushes the attack
first and asserts it did not land."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .helpers import catalytic, commit_all, git, push_unchecked, write_files

LEGACY = {"data/raw.csv": "1\n", "src/a.py": "a = 1\n", "outputs/old.txt": "o\n"}
FORGED = "data/raw.csv: protected path changed outside durable roots"
ADDED = "data/raw.csv: protected path added outside durable roots"


def _rev(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", rev, check=False).stdout.strip()


def _self_adopt(repo: Path) -> None:
    """What an attacker does on history that carries no policy: adopt it with roots of their
    own choosing (everything they want to change is durable)."""
    proc = catalytic("adopt", "--durable-roots", "data", "--durable-roots", "src", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def legacy(tmp_path: Path) -> tuple[Path, str]:
    """A repository with history, adopted by its team (roots: outputs durable); the commit the
    adoption started from."""
    repo = tmp_path / "legacy"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    for n, (path, text) in enumerate(LEGACY.items()):
        commit_all(repo, {path: text}, f"history {n}")
    baseline = _rev(repo)
    proc = catalytic("adopt", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return repo, baseline


def _server(tmp_path: Path, repo: Path, *init: str) -> Path:
    """A bare server with the gate; the team's adopted main pushed to it (the bootstrap)."""
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", *init, str(bare))
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    git(repo, "remote", "add", "origin", str(bare))
    proc = push_unchecked(repo, "origin", "main")
    assert proc.returncode == 0, proc.stderr
    return bare


def test_a_branch_whose_tip_predates_adoption_is_judged_by_the_default_branch(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    repo, baseline = legacy
    bare = _server(tmp_path, repo)
    # A branch at a commit that predates adoption: nothing new to judge, so it is accepted.
    assert push_unchecked(repo, "origin", f"{baseline}:refs/heads/legacy").returncode == 0
    # On it: a forged raw file, then an adoption commit of the pusher's own that makes it
    # durable (the adoption rule would exclude everything up to it and judge the rest by it).
    git(repo, "checkout", "-q", "-b", "attack", baseline)
    commit_all(repo, {"data/raw.csv": "forged\n"}, "recalibrate")
    _self_adopt(repo)
    proc = push_unchecked(repo, "origin", "attack:legacy")
    assert proc.returncode != 0, proc.stderr
    assert f"remote: {FORGED}" in proc.stderr
    assert "remote: .catalytic.toml: policy changed" in proc.stderr
    assert _rev(bare, "refs/heads/legacy") == baseline
    # The same history as a new branch is judged the same way.
    proc = push_unchecked(repo, "origin", "attack:refs/heads/fresh")
    assert proc.returncode != 0 and f"remote: {FORGED}" in proc.stderr
    assert _rev(bare, "refs/heads/fresh") == ""


@pytest.mark.slow
def test_the_local_pre_push_hook_judges_it_the_same_way(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    repo, baseline = legacy
    bare = tmp_path / "plain.git"  # no server gate: only the client's pre-push hook judges
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    assert catalytic("install", "-t", "pre-push", cwd=repo).returncode == 0
    assert git(repo, "push", "-q", "origin", "main", check=False).returncode == 0
    # what the remote has is known from its tracking refs: main, which carries the policy
    git(repo, "fetch", "-q", "origin")
    assert (
        git(repo, "push", "-q", "origin", f"{baseline}:refs/heads/legacy", check=False).returncode
        == 0
    )
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", "attack", baseline)
    commit_all(repo, {"data/raw.csv": "forged\n"}, "recalibrate")
    _self_adopt(repo)
    for target in ("legacy", "refs/heads/fresh"):
        proc = git(repo, "push", "origin", f"attack:{target}", check=False)
        assert proc.returncode != 0 and FORGED in proc.stderr, (target, proc.stderr)
    assert _rev(bare, "refs/heads/legacy") == baseline
    assert _rev(bare, "refs/heads/fresh") == ""


def _new_history(tmp_path: Path) -> Path:
    """Unrelated history with the team's file paths, forged, carrying a self-made adoption."""
    evil = tmp_path / "evil"
    git(tmp_path, "init", "-q", "-b", "main", str(evil))
    commit_all(evil, {**LEGACY, "data/raw.csv": "forged\n"}, "the whole project, again")
    _self_adopt(evil)
    return evil


def test_head_does_not_resolve_delete_main_and_push_new_history(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    """`git init --bare` leaves HEAD on master while the team pushes main."""
    repo, _ = legacy
    bare = _server(tmp_path, repo, "--initial-branch=master")
    assert _rev(bare, "HEAD") == ""
    doctor = catalytic("doctor", "--git-dir", str(bare), "--json", cwd=tmp_path)
    assert doctor.returncode == 1
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["details"]["checks"]}
    assert (checks["HEAD"]["ok"], checks["HEAD"]["fix"]) == (
        False,
        "git symbolic-ref HEAD refs/heads/main",
    )
    assert checks["HEAD"]["detail"].startswith(
        "HEAD names refs/heads/master, which does not exist: every ref is judged by the newest"
    )
    main = _rev(bare, "refs/heads/main")
    proc = push_unchecked(repo, "origin", ":main")
    assert proc.returncode != 0
    assert (
        "remote: refs/heads/main: HEAD names refs/heads/master, which does not exist" in proc.stderr
    )
    assert "git symbolic-ref HEAD refs/heads/main" in proc.stderr
    assert _rev(bare, "refs/heads/main") == main
    evil = _new_history(tmp_path)
    proc = push_unchecked(evil, "--force", str(bare), "main")
    assert proc.returncode != 0 and f"remote: {ADDED}" in proc.stderr
    assert _rev(bare, "refs/heads/main") == main
    git(bare, "symbolic-ref", "HEAD", "refs/heads/main")  # the fix doctor names
    doctor = catalytic("doctor", "--git-dir", str(bare), cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout
    assert "ok   HEAD: names refs/heads/main, which carries the policy" in doctor.stdout


@pytest.mark.slow
def test_a_second_policy_branch_still_judges_a_re_created_main(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    repo, _ = legacy
    bare = _server(tmp_path, repo, "--initial-branch=master")
    assert push_unchecked(repo, "origin", "main:refs/heads/dev").returncode == 0
    # dev carries the same policy, so the policy judging new refs does not change: allowed.
    assert push_unchecked(repo, "origin", ":main").returncode == 0
    evil = _new_history(tmp_path)
    proc = push_unchecked(evil, str(bare), "main")
    assert proc.returncode != 0
    assert f"remote: {ADDED}" in proc.stderr
    assert _rev(bare, "refs/heads/main") == ""


@pytest.mark.slow
def test_head_resolves_deleting_or_rewinding_main_is_refused(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    repo, baseline = legacy
    bare = _server(tmp_path, repo)
    # git itself refuses to delete HEAD's branch by default; hosts and admins turn that off
    git(bare, "config", "receive.denyDeleteCurrent", "false")
    main = _rev(bare, "refs/heads/main")
    proc = push_unchecked(repo, "origin", ":main")
    assert proc.returncode != 0
    assert (
        "remote: refs/heads/main: the default branch carries the policy that judges new "
        "and re-created refs: deleting it is refused" in proc.stderr
    )
    # rewound to before the adoption, main would carry no policy and the next push would
    # bootstrap the repository again
    proc = push_unchecked(repo, "--force", "origin", f"{baseline}:main")
    assert proc.returncode != 0
    assert "remote: refs/heads/main: a non-fast-forward update of the default branch" in proc.stderr
    assert _rev(bare, "refs/heads/main") == main
    # other branches come and go as before; a forward push of main passes
    assert push_unchecked(repo, "origin", "main:refs/heads/topic").returncode == 0
    assert push_unchecked(repo, "origin", ":topic").returncode == 0
    commit_all(repo, {"outputs/new.txt": "n\n"}, "a result")
    assert push_unchecked(repo, "origin", "main").returncode == 0


def _policycommit_all(repo: Path, durable: str, message: str) -> str:
    text = (repo / ".catalytic.toml").read_text()
    lines = [
        f"durable_roots = {durable}" if ln.startswith("durable_roots") else ln
        for ln in text.splitlines()
    ]
    return commit_all(repo, {".catalytic.toml": "\n".join(lines) + "\n"}, message)


@pytest.mark.slow
def test_newest_is_the_policy_change_not_the_commit_date(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    """HEAD does not resolve; `old` forked before main tightened its policy (data was durable,
    now only outputs is). A branch made to look newer does not bring the old policy back."""
    repo, _ = legacy
    _policycommit_all(repo, '["outputs", "data"]', "data is durable for now")
    git(repo, "branch", "old")
    _policycommit_all(repo, '["outputs"]', "data is protected from now on")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=master", str(bare))
    git(repo, "push", "-q", str(bare), "main", "old")  # before the gate
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    git(repo, "checkout", "-q", "old")
    env = {"GIT_COMMITTER_DATE": "2099-01-01T00:00:00", "GIT_AUTHOR_DATE": "2099-01-01T00:00:00"}
    write_files(repo, {"outputs/late.txt": "l\n"})
    git(repo, "add", "-A")
    subprocess.run(
        ["git", "commit", "-q", "--no-verify", "-m", "from the future"],
        cwd=repo,
        check=True,
        env={**os.environ, **env},
    )
    assert push_unchecked(repo, str(bare), "old").returncode == 0  # judged by its own old tip
    commit_all(repo, {"data/raw.csv": "forged\n"}, "durable on old")
    proc = push_unchecked(repo, str(bare), "HEAD:refs/heads/fresh")
    assert proc.returncode != 0 and f"remote: {FORGED}" in proc.stderr
    assert _rev(bare, "refs/heads/fresh") == ""


@pytest.mark.slow
def test_refs_that_disagree_with_no_default_branch_refuse_with_a_code(
    legacy: tuple[Path, str], tmp_path: Path
) -> None:
    repo, _ = legacy
    adopted = _rev(repo)
    _policycommit_all(repo, '["outputs", "src"]', "src is durable on main")
    git(repo, "checkout", "-q", "-b", "other", adopted)
    _policycommit_all(repo, '["outputs", "data"]', "data is durable on other")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=master", str(bare))
    git(repo, "push", "-q", str(bare), "main", "other")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    commit_all(repo, {"outputs/x.txt": "x\n"}, "a result")
    proc = push_unchecked(repo, str(bare), "HEAD:refs/heads/fresh")
    assert proc.returncode != 0
    assert (
        "remote: catalytic: error: NO_GOVERNING_POLICY: HEAD names refs/heads/master, "
        "which does not exist, and the refs carrying a policy disagree on it "
        "(refs/heads/main, refs/heads/other)" in proc.stderr
    )
    assert _rev(bare, "refs/heads/fresh") == ""
    # the fix the message names
    git(bare, "symbolic-ref", "HEAD", "refs/heads/main")
    proc = push_unchecked(repo, str(bare), "HEAD:refs/heads/fresh")
    assert proc.returncode == 0, proc.stderr
