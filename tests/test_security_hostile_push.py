"""Pushed objects built to hurt the gate rather than to slip past it: a tree bomb (N^3 paths from
three tree objects) must be refused quickly in little memory, and a commit whose `encoding`
header lies must still have its findings reported. Real git, real hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import catalytic, gated_server, git

POLICY = 'durable_roots = ["outputs"]\n'
BASE = {"data/x.csv": "1\n", "outputs/keep.txt": "k\n"}
N = 25  # 15,625 paths
# The real cap (a million paths) takes the gate tens of seconds to reach on a shared CI core.
# The test lowers it in the hook's own interpreter (a sitecustomize on PYTHONPATH, which git
# passes down to the hooks it runs) so that the same refusal runs in a second, and the memory
# bound it proves is the streaming's, not the cap's.
LOW_CAP = 5_000

# Runs a command and reports the largest resident size of any process below it: the hook, git's
# receive-pack and the diff-tree it starts (RUSAGE_CHILDREN counts waited-for descendants).
WRAPPER = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "print(p.stderr)\n"
)


def _low_cap_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "lowcap"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import catalytic_hooks.git.repo as r\nr.MAX_CHANGED_PATHS = {LOW_CAP}\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


def _tree_bomb_commit(repo: Path, under: str) -> str:
    """A child of HEAD whose tree adds `under`/ with N^3 files, from three trees of N entries."""
    blob = git(repo, "hash-object", "-w", "--stdin", input="x\n").stdout.strip()
    mode, kind, oid = "100644", "blob", blob
    for level in range(3):
        rows = "".join(f"{mode} {kind} {oid}\t{'fd'[level > 0]}{i:05d}\n" for i in range(N))
        oid = git(repo, "mktree", input=rows).stdout.strip()
        mode, kind = "040000", "tree"
    parent, _, name = under.rpartition("/")
    top = git(repo, "ls-tree", f"HEAD:{parent}").stdout
    inner = git(repo, "mktree", input=f"{top}040000 tree {oid}\t{name}\n").stdout.strip()
    root = git(repo, "ls-tree", "HEAD").stdout.replace(
        git(repo, "rev-parse", f"HEAD:{parent}").stdout.strip(), inner
    )
    tree = git(repo, "mktree", input=root).stdout.strip()
    return git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "bomb").stdout.strip()


@pytest.fixture
def served(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    repo = make_repo(BASE, policy=POLICY)
    return repo, gated_server(repo, tmp_path)


def test_a_pushed_tree_bomb_is_refused_in_little_memory(
    served: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before, the gate captured diff-tree's whole output and made a record and a finding of
    every path: N=100 took a minute and 1.2 GB, N=1000 any memory there was."""
    repo, bare = served
    bomb = _tree_bomb_commit(repo, "data/bomb")
    push = ["git", "-C", str(repo), "push", "--no-verify", "origin", f"{bomb}:refs/heads/b"]
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *push],
        capture_output=True,
        text=True,
        env=_low_cap_env(tmp_path),
        timeout=120,
    ).stdout
    status, _, stderr = out.partition("\n")
    code, peak_kib = (int(x) for x in status.split())
    assert code != 0 and "pre-receive hook declined" in stderr, stderr
    assert "CHANGE_TOO_LARGE" in stderr and f"more than {LOW_CAP:,} paths" in stderr, stderr
    assert git(bare, "rev-parse", "--verify", "--quiet", "refs/heads/b", check=False).stdout == ""
    assert peak_kib < 200 * 1024, f"a process below the push reached {peak_kib} KiB"


def test_a_tree_bomb_range_is_refused_by_ci(served: tuple[Path, Path], tmp_path: Path) -> None:
    repo, _ = served
    bomb = _tree_bomb_commit(repo, "data/bomb")
    proc = catalytic(
        "check", "--from-ref", "main", "--to-ref", bomb, "--json",
        cwd=repo, env=_low_cap_env(tmp_path),
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["code"]) == (2, "CHANGE_TOO_LARGE"), proc.stdout + proc.stderr
    assert doc["details"]["limit"] == LOW_CAP


def test_a_tree_bomb_head_is_refused_by_the_commit_check(make_repo, tmp_path: Path) -> None:
    """HEAD moved onto a tree bomb over an ordinary index: `diff-index --cached` lists every
    bomb path as removed, read as git writes it and refused past the cap."""
    repo = make_repo(BASE, policy=POLICY)
    git(repo, "update-ref", "refs/heads/main", _tree_bomb_commit(repo, "data/bomb"))
    proc = catalytic("check", "--staged", "--json", cwd=repo, env=_low_cap_env(tmp_path))
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["code"]) == (2, "CHANGE_TOO_LARGE"), proc.stdout + proc.stderr


def _encoded_commit(repo: Path, header: bytes) -> str:
    """A commit changing a protected path whose message does not decode as its header says."""
    (repo / "data/x.csv").write_text("2\n")
    git(repo, "add", "-A")
    tree = git(repo, "write-tree").stdout.strip()
    parent = git(repo, "rev-parse", "HEAD").stdout.strip()
    who = "t <t@t> 1 +0000"
    raw = (
        f"tree {tree}\nparent {parent}\nauthor {who}\ncommitter {who}\n".encode()
        + header
        + b"\nsubj \xff\xfe\n\nbody\n"
    )
    proc = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=repo, input=raw, capture_output=True, check=True,
    )  # fmt: skip
    return proc.stdout.decode().strip()


@pytest.mark.parametrize(
    "header", [b"encoding x-bogus\n", b"encoding UTF-8\n"], ids=["unknown-codec", "invalid-utf8"]
)
def test_a_commit_whose_encoding_lies_still_has_its_findings_reported(
    served: tuple[Path, Path], header: bytes
) -> None:
    """pygit2's `Commit.message` raises on such a commit; the gate crashed with INTERNAL."""
    repo, _ = served
    commit = _encoded_commit(repo, header)
    proc = git(repo, "push", "--no-verify", "origin", f"{commit}:refs/heads/e", check=False)
    assert "pre-receive hook declined" in proc.stderr, proc.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert 'subj \ufffd\ufffd")' in proc.stderr and "INTERNAL" not in proc.stderr, proc.stderr
    ci = catalytic("check", "--from-ref", "main", "--to-ref", commit, "--json", cwd=repo)
    doc = json.loads(ci.stdout)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert [(f["path"], f["subject"]) for f in doc["details"]["findings"]] == [
        ("data/x.csv", "subj \ufffd\ufffd")
    ]


def test_the_adoption_diff_is_capped_too(make_repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adoption commit (judged on its own, enforce.baseline.adoption_findings) is diffed by
    `Repo.diff_raw`: the same streaming and the same cap. In-process, so the cap is patched."""
    from catalytic_hooks.git import repo as repo_mod

    repo = make_repo(BASE, policy=POLICY)
    bomb = _tree_bomb_commit(repo, "data/bomb")
    monkeypatch.setattr(repo_mod, "MAX_CHANGED_PATHS", LOW_CAP)
    r = repo_mod.Repo.discover(repo)
    assert len(r.diff_raw("HEAD", "HEAD")) == 0
    with pytest.raises(repo_mod.CatalyticError) as err:
        r.diff_raw("HEAD", bomb)
    assert err.value.code.value == "CHANGE_TOO_LARGE"
