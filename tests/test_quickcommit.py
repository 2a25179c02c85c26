"""The commit hook's quick path (enforce/quickcommit.py) accepts only what the full check finds
nothing in: every kind of staged change is judged both ways with real git, and wherever the
quick path accepts, the full check must report no finding."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.enforce.checks import check_staged
from catalytic_hooks.enforce.quickcommit import CACHE_NAME, quick_accept
from catalytic_hooks.git.repo import Repo

from .helpers import catalytic, git

POLICY = ('durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\nexclusions = ["vendor"]\n'
          'protected_roots = ["src", "data"]\n')
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
        full: list[str] | str = [f"{f.kind}:{f.path}" for f in check_staged(Repo.discover(repo))
                                 if f.blocking]
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
    "policy change": ("echo 'exclusions = [\"src\"]' >> .catalytic.toml && "
                      "git add .catalytic.toml", False),
    "trust file added": ("mkdir -p .catalytic && echo x > .catalytic/allowed_validators && "
                         "git add .catalytic/allowed_validators", False),
    "pending run": ("mkdir -p .git/catalytic/runs && echo {} > .git/catalytic/runs/run-x.json",
                    False),
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
    _sh(repo, "printf 'protected_roots = [\"outputs\"]\\n' > .catalytic.toml && "
              "git commit -qam 'policy' --no-verify && echo 3 > outputs/o.txt && "
              "git add outputs/o.txt")
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


def test_the_framework_outside_a_commit_goes_to_the_full_check(repo: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setenv("PRE_COMMIT", "1")
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    assert quick_accept() is False


def test_real_commits_through_the_installed_hook(repo: Path) -> None:
    catalytic("install", "--hook-type", "pre-commit", "--force", cwd=repo)
    _sh(repo, "echo 5 > outputs/o.txt && git add outputs/o.txt")
    ok = subprocess.run(["git", "commit", "-qm", "durable"], cwd=repo, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    _sh(repo, "echo evil >> src/a.py && git add src/a.py")
    refused = subprocess.run(["git", "commit", "-qm", "evil"], cwd=repo, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "src/a.py" in refused.stderr
    assert git(repo, "log", "-1", "--format=%s").stdout.strip() == "durable"
    env = {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}
    full = catalytic("hook", "pre-commit", cwd=repo, env=env)
    quick = catalytic("hook", "pre-commit", cwd=repo)
    assert (quick.returncode, quick.stderr) == (full.returncode, full.stderr)
