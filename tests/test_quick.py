"""The commit hook's quick path (enforce.quickaccept.py) accepts only what the full check finds
nothing in: every kind of staged change is judged both ways with real git, and wherever the
quick path accepts, the full check must report no finding."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.enforce.checks import check_staged
from catalytic_hooks.enforce.quickaccept import quick_accept
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.statefiles import COMMIT_RECORD as CACHE_NAME

from .helpers import catalytic, git

POLICY = (
    'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\nexclusions = ["vendor"]\n'
    'protected_roots = ["src", "data"]\n'
)
FILES = {"src/a.py": "a\n", "data/x.csv": "1\n", "docs/readme.md": "r\n", "outputs/o.txt": "o\n"}


def _sh(repo: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(make_repo, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = make_repo(FILES, policy=POLICY)
    monkeypatch.chdir(r)
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    check_staged(Repo.discover(r))  # the full check records the base's roots
    assert (r / ".git/catalytic" / CACHE_NAME).exists()
    return r


def _both(repo: Path) -> tuple[bool, list[str] | str]:
    quick = quick_accept()
    try:
        full: list[str] | str = [
            f"{f.kind}:{f.path}" for f in check_staged(Repo.discover(repo)) if f.blocking
        ]
    except Exception as exc:  # a refusal (pending run): the quick path must not have accepted
        full = type(exc).__name__
    return quick, full


CASES = {
    # script → whether the quick path must accept it
    "durable file": ("echo 2 > outputs/new.txt && git add outputs/new.txt", True),
    "unprotected file": ("echo 2 > docs/more.md && git add docs/more.md", True),
    "excluded file": ("mkdir -p vendor && echo v > vendor/lib.c && git add vendor/lib.c", True),
    "empty tmp directory on disk": ("mkdir -p _tmp/a/b", True),
    "nothing staged": ("true", True),
    "protected change": ("echo b >> src/a.py && git add src/a.py", False),
    "protected delete": ("git rm -q data/x.csv", False),
    "protected mode change": ("chmod +x src/a.py && git add src/a.py", False),
    "tmp staged": ("mkdir -p _tmp && echo t > _tmp/t && git add -f _tmp/t", False),
    "tmp residue on disk": ("mkdir -p _tmp/d && echo t > _tmp/d/t", False),
    "tmp symlink on disk": ("mkdir -p _tmp && ln -s /etc/passwd _tmp/l", False),
    "policy change": (
        "echo 'exclusions = [\"src\"]' >> .catalytic.toml && git add .catalytic.toml",
        False,
    ),
    "trust file added": (
        "mkdir -p .catalytic && echo x > .catalytic/allowed_validators && "
        "git add .catalytic/allowed_validators",
        False,
    ),
    "pending run": (
        "mkdir -p .git/catalytic/runs && echo {} > .git/catalytic/runs/run-" + "0" * 32 + ".json",
        False,
    ),
    # not a name this tool gives a journal: nothing is pending, for either path
    "stray file among the journals": (
        "mkdir -p .git/catalytic/runs && echo {} > .git/catalytic/runs/run-x.json",
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quick_path_accepts_only_what_the_full_check_finds_clean(repo: Path, case: str) -> None:
    script, accepted = CASES[case]
    _sh(repo, script)
    quick, full = _both(repo)
    assert quick is accepted, (case, full)
    if quick:
        assert full == [], case


def test_a_new_policy_at_head_is_never_judged_by_the_recorded_roots(repo: Path) -> None:
    """The recorded roots describe HEAD's policy blobs; once HEAD's policy protects outputs, a
    durable-looking change goes to the full check, which finds it."""
    _sh(
        repo,
        "printf 'protected_roots = [\"outputs\"]\\n' > .catalytic.toml && "
        "git commit -qam 'policy' --no-verify && echo 3 > outputs/o.txt && "
        "git add outputs/o.txt",
    )
    quick, full = _both(repo)
    assert quick is False
    assert full == ["mutation:outputs/o.txt"]
    # The full check recorded the new roots: the same change is still refused quickly or fully.
    assert _both(repo) == (False, ["mutation:outputs/o.txt"])


def test_a_damaged_record_is_never_used(repo: Path) -> None:
    path = repo / ".git/catalytic" / CACHE_NAME
    data = bytearray(path.read_bytes())
    # Turn the recorded protected root "src" into "srd": without the CRC, src/ would look
    # unprotected and a protected change would be accepted.
    i = data.index(b"\0src")
    data[i + 3] = ord("d")
    path.write_bytes(bytes(data))
    _sh(repo, "echo b >> src/a.py && git add src/a.py")
    assert _both(repo) == (False, ["mutation:src/a.py"])


def test_the_framework_outside_a_commit_goes_to_the_full_check(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRE_COMMIT", "1")
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    assert quick_accept() is False


def test_real_commits_through_the_installed_hook(repo: Path) -> None:
    catalytic("install", "--hook-type", "pre-commit", "--force", cwd=repo)
    _sh(repo, "echo 5 > outputs/o.txt && git add outputs/o.txt")
    ok = subprocess.run(
        ["git", "commit", "-qm", "durable"], cwd=repo, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    _sh(repo, "echo evil >> src/a.py && git add src/a.py")
    refused = subprocess.run(
        ["git", "commit", "-qm", "evil"], cwd=repo, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "src/a.py" in refused.stderr
    assert git(repo, "log", "-1", "--format=%s").stdout.strip() == "durable"
    env = {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}
    full = catalytic("hook", "pre-commit", cwd=repo, env=env)
    quick = catalytic("hook", "pre-commit", cwd=repo)
    assert (quick.returncode, quick.stderr) == (full.returncode, full.stderr)


# -- pre-push ---------------------------------------------------------------------------------


def _push_both(repo: Path, line: str) -> tuple[bool, list[str] | str]:
    from catalytic_hooks.enforce.bundles import check_bundles
    from catalytic_hooks.enforce.checks import check_push, parse_push_lines
    from catalytic_hooks.enforce.quickaccept import quick_push

    quick = quick_push(line.encode(), "origin")
    try:
        full: list[str] | str = [
            f"{f.kind}:{f.path}"
            for f in check_push(
                Repo.discover(repo), parse_push_lines(line), "origin", check_bundles
            )
            if f.blocking
        ]
    except Exception as exc:
        full = type(exc).__name__
    return quick, full


def _line(repo: Path, old: str = "HEAD~1", new: str = "HEAD") -> str:
    o = git(repo, "rev-parse", old).stdout.strip()
    n = git(repo, "rev-parse", new).stdout.strip()
    return f"refs/heads/main {n} refs/heads/main {o}\n"


PUSHES = {
    "one durable commit": (
        "echo 2 > outputs/n.txt && git add outputs/n.txt && git commit -qm d --no-verify",
        True,
    ),
    "one unprotected commit": (
        "echo 2 > docs/n.md && git add docs/n.md && git commit -qm u --no-verify",
        True,
    ),
    "protected change": ("echo b >> src/a.py && git commit -qam p --no-verify", False),
    "tmp committed": (
        "mkdir -p _tmp && echo t > _tmp/t && git add -f _tmp/t && git commit -qm t --no-verify",
        False,
    ),
    "a run bundle": (
        "mkdir -p _runs/r && echo {} > _runs/r/STATUS.json && git add _runs && "
        "git commit -qm r --no-verify",
        False,
    ),
    "chronicle": (
        "mkdir -p .catalytic && echo x > .catalytic/chronicle.jsonl && "
        "git add .catalytic && git commit -qm c --no-verify",
        False,
    ),
    "policy change": (
        "echo 'run_roots = [\"r2\"]' >> .catalytic.toml && git commit -qam pol --no-verify",
        False,
    ),
}


@pytest.mark.parametrize("case", list(PUSHES))
def test_quick_push_accepts_only_what_the_full_check_finds_clean(repo: Path, case: str) -> None:
    script, accepted = PUSHES[case]
    _sh(repo, script)
    quick, full = _push_both(repo, _line(repo))
    assert quick is accepted, (case, full)
    if quick:
        assert full == [], case


def test_quick_push_leaves_anything_unusual_to_the_full_check(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalytic_hooks.enforce.quickaccept import quick_push

    _sh(
        repo,
        "echo 2 > outputs/a && git add outputs/a && git commit -qm a --no-verify && "
        "echo 3 > outputs/b && git add outputs/b && git commit -qm b --no-verify",
    )
    zero = "0" * 40
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert quick_push(_line(repo, "HEAD~2").encode(), "origin") is False  # two commits
    new = f"refs/heads/x {head} refs/heads/x {zero}\n"
    assert quick_push(new.encode(), "origin") is False  # a new branch
    assert quick_push(f"(delete) {zero} refs/heads/x {head}\n".encode(), "origin") is False
    assert quick_push((_line(repo) * 2).encode(), "origin") is False  # two refs
    _sh(
        repo,
        "git checkout -qb side HEAD~1 && echo s > outputs/s && git add outputs/s && "
        "git commit -qm s --no-verify && git checkout -q main && "
        "git merge -q --no-edit --no-verify side",
    )
    assert quick_push(_line(repo).encode(), "origin") is False  # a merge
    assert quick_push(_line(repo, "HEAD~1", "HEAD~1").encode(), "origin") is False  # nothing new
    monkeypatch.setenv("PRE_COMMIT", "1")
    assert quick_push(_line(repo, "HEAD^2", "HEAD^2").encode(), "origin") is False


def test_the_old_tip_s_policy_must_be_the_recorded_one(repo: Path) -> None:
    """Recorded at HEAD after a policy commit, the roots do not describe the remote's older
    tip: pushing both is judged in full, by the old tip's policy."""
    _sh(
        repo,
        "printf 'durable_roots = [\"src\"]\\n' > .catalytic.toml && "
        "git commit -qam 'policy' --no-verify",
    )
    check_staged(Repo.discover(repo))  # records HEAD's (new) roots
    _sh(repo, "echo b >> src/a.py && git commit -qam p --no-verify")
    from catalytic_hooks.enforce.quickaccept import quick_push

    assert quick_push(_line(repo, "HEAD~2").encode(), "origin") is False
    assert _push_both(repo, _line(repo)) == (True, [])  # HEAD~1 has the recorded policy


def test_a_branch_is_quick_only_under_the_remote_default_branch_s_policy(
    repo: Path, tmp_path: Path
) -> None:
    """The full check judges a branch other than the remote's default one by the default
    branch's policy: a topic branch whose own (recorded) policy is laxer than main's is judged
    in full, and refused, never accepted quickly."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "remote", "set-head", "origin", "main")
    _sh(
        repo,
        "git checkout -qb topic && printf 'durable_roots = [\"src\"]\\n' > .catalytic.toml && "
        "git commit -qam 'laxer' --no-verify && git push -q --no-verify origin topic",
    )
    check_staged(Repo.discover(repo))  # records topic's (laxer) roots
    _sh(repo, "echo b >> src/a.py && git commit -qam p --no-verify")
    line = _line(repo).replace("refs/heads/main", "refs/heads/topic")
    assert _push_both(repo, line) == (False, ["mutation:src/a.py"])
    # Where nothing of the remote is known, the old tip's policy judges, and quickly.
    git(repo, "remote", "set-head", "origin", "-d")
    for ref in ("main", "topic"):
        git(repo, "update-ref", "-d", f"refs/remotes/origin/{ref}")
    assert _push_both(repo, line) == (True, [])


def test_real_pushes_through_the_installed_hook(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    catalytic("install", "--hook-type", "pre-push", "--force", cwd=repo)
    _sh(repo, "echo 9 > outputs/o.txt && git commit -qam durable --no-verify")
    ok = subprocess.run(
        ["git", "push", "-q", "origin", "main"], cwd=repo, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    _sh(repo, "echo evil >> src/a.py && git commit -qam evil --no-verify")
    refused = subprocess.run(
        ["git", "push", "-q", "origin", "main"], cwd=repo, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "src/a.py" in refused.stderr  # the full check, fed stdin
    remote_tip = git(bare, "rev-parse", "main").stdout.strip()
    assert remote_tip == git(repo, "rev-parse", "HEAD~1").stdout.strip()
