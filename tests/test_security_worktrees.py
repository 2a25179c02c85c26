"""Linked worktrees are separate owners (issue 26, class 5): one worktree's `catalytic recover`
never takes away what pins another worktree's interrupted run, and a run's command cannot leave
behind a record (or a tree in the snapshot's store) that a later hook or digest, in this
worktree or another, would trust. Real linked worktrees, a
real SIGKILL, a real `git gc --prune=now`, real hooks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import catalytic, git

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\nprotected_roots = ["data"]\n'
RAW, NOTES = b"id,value\n1,0.5\n", b"my notes, never committed\n"


@pytest.fixture
def pair(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    """(main worktree, linked worktree) of one repository, each with an untracked protected
    file of its own."""
    main = make_repo({"data/raw.csv": RAW, "outputs/.keep": ""}, policy=POLICY, name="main")
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "-b", "side", str(linked))
    for top in (main, linked):
        (top / "data/notes.txt").write_bytes(NOTES)
    return main, linked


def _interrupted_run(top: Path) -> None:
    """`catalytic run --restore` in `top` whose command changed protected files, SIGKILLed (the
    command is left running, as after a crash)."""
    started = top.parent / f"started-{top.name}"
    script = (
        f"echo $$ > ../cmd-{top.name}.pid; echo tampered >> data/raw.csv; "
        f"echo gone > data/notes.txt; touch {started}; sleep 60"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catalytic_hooks",
            "run",
            "--run-id",
            "r1",
            "--restore",
            "--",
            "sh",
            "-c",
            script,
        ],
        cwd=top,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # no pipe: the command outlives catalytic
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (top / "data/notes.txt").read_bytes() == b"gone\n"


def _pins(top: Path) -> list[str]:
    return git(top, "for-each-ref", "--format=%(refname)", "refs/catalytic/").stdout.split()


# The other direction (interrupted in the linked worktree) takes the same code path: -m slow.
@pytest.mark.parametrize("interrupted", ["main", pytest.param("linked", marks=pytest.mark.slow)])
def test_recover_in_one_worktree_keeps_another_worktrees_snapshot(
    pair: tuple[Path, Path], interrupted: str
) -> None:
    """The attack: a run interrupted in worktree A; `catalytic recover` in worktree B (nothing
    of its own to recover) used to delete A's snapshot ref as a leftover; after `git gc
    --prune=now` A's uncommitted protected file was gone for good."""
    a, b = pair if interrupted == "main" else pair[::-1]
    _interrupted_run(a)
    pinned = _pins(a)
    assert len(pinned) == 1
    other = catalytic("recover", cwd=b)
    assert other.returncode == 0, other.stdout + other.stderr
    assert "nothing to recover" in other.stdout
    assert _pins(b) == pinned  # A's pin is not B's to sweep
    assert (b / "data/notes.txt").read_bytes() == NOTES  # and B's files were never touched
    git(b, "gc", "-q", "--prune=now")
    own = catalytic("recover", cwd=a)
    assert own.returncode == 0, own.stdout + own.stderr
    assert "restored: data/notes.txt" in own.stdout
    assert (a / "data/notes.txt").read_bytes() == NOTES
    assert (a / "data/raw.csv").read_bytes() == RAW
    assert _pins(a) == []


def test_pins_are_swept_only_by_their_owner_or_once_it_is_gone(pair: tuple[Path, Path]) -> None:
    """A linked worktree's pin survives `recover` in the main worktree until `git worktree
    remove` took the linked worktree (and its journals) away; a pin of the older, unowned form
    is swept only when no worktree holds its journal."""
    main, linked = pair
    tree = git(main, "mktree", input="").stdout.strip()
    token, legacy = "1" * 32, "2" * 32
    wid = Path(git(linked, "rev-parse", "--absolute-git-dir").stdout.strip()).name
    theirs = f"refs/catalytic/runs/worktrees/{wid}/{token}"
    mine = f"refs/catalytic/runs/main/{token}"
    for ref in (theirs, mine, f"refs/catalytic/runs/{legacy}"):
        git(main, "update-ref", ref, tree)
    runs = Path(git(linked, "rev-parse", "--absolute-git-dir").stdout.strip()) / "catalytic/runs"
    runs.mkdir(parents=True)
    (runs / f"run-{legacy}.json").write_text("{}")  # the linked worktree's, never main's to judge
    assert catalytic("recover", cwd=main).returncode == 0
    assert _pins(main) == [f"refs/catalytic/runs/{legacy}", theirs]  # main's own: swept
    (runs / f"run-{legacy}.json").unlink()
    git(main, "worktree", "remove", "--force", str(linked))
    assert catalytic("recover", cwd=main).returncode == 0
    assert _pins(main) == []


# Run by the attacking command in the main worktree: every record of every other worktree
# rewritten with no root at all (nothing protected), its CRC recomputed.
FORGE = r"""
import os, sys, zlib
sep = b"\n\0\n"
for path in sys.argv[1:]:
    fields = open(path, "rb").read().split(sep)[:-1]
    if fields[0].startswith(b"catalytic-commit-check"):
        fields[3:8] = [b""] * 5      # exclusions, tmp, durable, protected, special
    else:
        fields[-4:] = [b""] * 4      # exclusions, tmp, durable, protected
    body = sep.join(fields)
    with open(path, "wb") as fh:
        fh.write(body + sep + b"%08x" % zlib.crc32(body))
"""


def test_a_run_cannot_leave_another_worktree_a_forged_record(pair: tuple[Path, Path]) -> None:
    """The attack: a command under `catalytic run` in the main worktree rewrites the linked
    worktree's quick-path records (the hooks' `commit-check`, the digest's `digest-quick`) so
    that nothing is protected. The run did not see it; afterwards the linked worktree's
    pre-commit hook accepted a protected change and its digest left protected files out. Now
    the run drops every worktree's records when its command wrote any of them."""
    main, linked = pair
    catalytic("install", "--hook-type", "pre-commit", "--force", cwd=main)
    state = Path(git(linked, "rev-parse", "--absolute-git-dir").stdout.strip()) / "catalytic"
    full = {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}
    assert catalytic("check", "--staged", cwd=linked, env=full).returncode == 0
    honest = catalytic("digest", "--worktree", cwd=linked, env=full)
    records = [state / "commit-check", state / "digest-quick"]
    assert all(r.exists() for r in records)
    forge = main.parent / "forge.py"
    forge.write_text(FORGE)
    run = catalytic(
        "run", "--run-id", "r1", "--", sys.executable, str(forge), *map(str, records), cwd=main
    )
    assert run.returncode == 0, run.stdout + run.stderr  # the main worktree itself is unchanged
    assert not any(r.exists() for r in records)
    assert catalytic("digest", "--worktree", cwd=linked).stdout == honest.stdout
    (linked / "data/raw.csv").write_text("evil\n")
    git(linked, "add", "data/raw.csv")
    commit = subprocess.run(
        ["git", "commit", "-qm", "evil"], cwd=linked, capture_output=True, text=True
    )
    assert commit.returncode != 0 and "data/raw.csv" in commit.stderr
    assert git(linked, "log", "-1", "--format=%s").stdout.strip() == "initial"


# Run by the attacking command: the tree the index will have once src/a.py is changed and
# staged (computed in an object directory of its own), written into the snapshot's scratch
# store under the name of the index's tree as it is now.
FORGE_TREE = r"""
import os, shutil, subprocess, sys, tempfile, zlib
git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], capture_output=True,
                         text=True, check=True).stdout.strip()
store = os.path.join(git_dir, "catalytic", "trees")
tmp = tempfile.mkdtemp()
index = os.path.join(tmp, "index")
shutil.copyfile(os.path.join(git_dir, "index"), index)
env = {**os.environ, "GIT_OBJECT_DIRECTORY": tmp,
       "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(git_dir, "objects")}
now = subprocess.run(["git", "write-tree"], env={**env, "GIT_INDEX_FILE": index},
                     capture_output=True, text=True, check=True).stdout.strip()
blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=sys.argv[1].encode(),
                      env=env, capture_output=True, check=True).stdout.decode().strip()
subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob},src/a.py"],
               env={**env, "GIT_INDEX_FILE": index}, check=True)
later = subprocess.run(["git", "write-tree"], env={**env, "GIT_INDEX_FILE": index},
                       capture_output=True, text=True, check=True).stdout.strip()
body = subprocess.run(["git", "cat-file", "tree", later], env=env, capture_output=True,
                      check=True).stdout
target = os.path.join(store, now[:2], now[2:])
os.makedirs(os.path.dirname(target), exist_ok=True)
if os.path.exists(target):
    os.chmod(target, 0o644)
with open(target, "wb") as fh:
    fh.write(zlib.compress(b"tree %d\0" % len(body) + body))
"""


def test_a_run_cannot_leave_a_forged_tree_in_the_snapshot_store(make_repo) -> None:
    """The attack: the index's tree is kept in `catalytic/trees` so that the next digest patches
    its snapshot with `git diff-tree`, and git reads a loose tree there without checking its
    hash. A command under `catalytic run` rewrites that tree to look like the tree the index
    will have once src/a.py is changed: the user's later staged change to src/a.py was then
    invisible to every digest (and a later run whose command reverted it passed)."""
    repo = make_repo(
        {"src/a.py": "a\n", "src/b.py": "b\n"}, policy=POLICY.replace('["data"]', '["src"]')
    )
    (repo / "src/b.py").write_text("staged\n")  # the index's tree is in no commit
    git(repo, "add", "src/b.py")
    full = {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}
    assert catalytic("digest", "--worktree", cwd=repo, env=full).returncode == 0
    forge = repo.parent / "forge_tree.py"
    forge.write_text(FORGE_TREE)
    run = catalytic(
        "run", "--run-id", "r1", "--", sys.executable, str(forge), "changed\n", cwd=repo
    )
    assert run.returncode == 0, run.stdout + run.stderr  # the working tree is untouched
    (repo / "src/a.py").write_text("changed\n")
    git(repo, "add", "src/a.py")
    later = catalytic("digest", "--worktree", "--json", cwd=repo, env=full)
    shutil.rmtree(git_dir(repo) / "catalytic")
    honest = catalytic("digest", "--worktree", "--json", cwd=repo, env=full)
    assert json.loads(later.stdout) == json.loads(honest.stdout), later.stdout + honest.stdout


def git_dir(top: Path) -> Path:
    return Path(git(top, "rev-parse", "--absolute-git-dir").stdout.strip())
