"""The ledger records what happened (issue 26, class 9): the server chronicle records an accepted
amendment only once its ref moved, with the ref and its old and new ids. Real ssh-keygen keys,
real SSH-signed commits, real pushes into a bare repository with the gate, real concurrent
`git push` processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.provenance.chronicle import read

from .helpers import HAVE_SSH_KEYGEN, catalytic, git, needs_tool
from .test_amend import _key

pytestmark = needs_tool(HAVE_SSH_KEYGEN, "signed amendments need ssh-keygen (OpenSSH), not found")


@pytest.fixture
def served(make_repo, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A client whose trust file names alice, its main on a bare server with the gate as
    `catalytic install --server` installs it by default."""
    alice = _key(tmp_path, "alice")
    pub = " ".join((tmp_path / "alice.pub").read_text().split()[:2])
    repo = make_repo(
        {"data/x.csv": "1\n", ".catalytic/allowed_validators": f"alice {pub}\n"},
        policy='durable_roots = ["outputs"]\n',
    )
    git(repo, "config", "gpg.format", "ssh")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "push", "-q", str(bare), "main")
    proc = catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return repo, bare, alice


def _amendment(repo: Path, key: Path, text: str) -> str:
    (repo / "data/x.csv").write_text(text)
    git(
        repo,
        "commit",
        "-q",
        "--no-verify",
        "-am",
        f"correct to {text.strip()}",
        "-S",
        f"--gpg-sign={key}",
        "--trailer",
        f"Catalytic-Amend: recalibrated to {text.strip()}",
    )
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def _records(bare: Path) -> list[dict[str, object]]:
    path = bare / "catalytic/chronicle.jsonl"
    return [r["data"] for r in read(path)] if path.exists() else []


def test_a_push_a_site_update_hook_declines_is_not_recorded(
    served: tuple[Path, Path, Path],
) -> None:
    repo, bare, alice = served
    old = git(repo, "rev-parse", "HEAD").stdout.strip()
    new = _amendment(repo, alice, "2\n")
    site = bare / "hooks/update"  # the site's own per-ref policy, run after pre-receive
    site.write_text("#!/bin/sh\necho 'site policy: no pushes today' >&2\nexit 1\n")
    site.chmod(0o755)
    proc = git(repo, "push", "--no-verify", str(bare), "main", check=False)
    assert proc.returncode != 0 and "hook declined" in proc.stderr
    assert "accepted amendment by alice" in proc.stderr  # the gate itself accepted it
    assert git(bare, "rev-parse", "main").stdout.strip() == old
    assert _records(bare) == []
    site.unlink()
    proc = git(repo, "push", "--no-verify", str(bare), "main", check=False)
    assert proc.returncode == 0, proc.stderr
    records = _records(bare)
    assert [(r["ref"], r["old"], r["new"], r["commit"], r["path"]) for r in records] == [
        ("refs/heads/main", old, new, new, "data/x.csv")
    ]
    assert not any((bare / "catalytic/pending-amendments").iterdir())
    assert (bare / "hooks/post-receive").exists()  # what `install --server` installs


BARRIER = """#!/bin/sh
# The site's pre-receive, run before catalytic's: holds every push until all of them got here,
# so that they all pass pre-receive before any ref moves.
: > "{dir}/$$"
i=0
while [ "$(ls "{dir}" | wc -l)" -lt {n} ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
exit 0
"""


@pytest.mark.slow
def test_concurrent_amendment_pushes_record_exactly_what_landed(
    served: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    repo, bare, alice = served
    n = 10
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    hook = bare / "hooks/pre-receive"
    hook.unlink()
    hook.write_text(BARRIER.format(dir=barrier, n=n))
    hook.chmod(0o755)
    proc = catalytic("install", "--server", "--force", "--git-dir", str(bare), cwd=tmp_path)
    assert "pre-receive: chained" in proc.stdout, proc.stdout + proc.stderr
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    commits = []
    for i in range(n):
        git(repo, "checkout", "-q", "-B", f"b{i}", base)
        commits.append(_amendment(repo, alice, f"{i + 10}\n"))
    procs = [
        subprocess.Popen(
            ["git", "push", "--no-verify", str(bare), f"b{i}:refs/heads/main"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert len(list(barrier.iterdir())) == n  # every push was judged
    landed = [commits[i] for i, p in enumerate(procs) if p.returncode == 0]
    assert landed, results
    assert git(bare, "rev-parse", "main").stdout.strip() in landed
    records = _records(bare)
    assert len(records) == len(landed), (len(landed), records)
    assert sorted((r["ref"], r["old"], r["new"]) for r in records) == sorted(
        ("refs/heads/main", base, c) for c in landed
    )
