"""The digest's quick path (git/quickdigest.py) answers only with the line the full path prints:
every kind of working-tree change is digested both ways with real git and real files, and
whatever the quick path cannot show it leaves to the full path (None)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from catalytic_hooks.cli.main import main
from catalytic_hooks.core.policy import POLICY_SOURCES
from catalytic_hooks.core.version import VERSION
from catalytic_hooks.git import quickdigest
from catalytic_hooks.git.earlyspawn import early_status, early_where
from catalytic_hooks.git.statefiles import COMMIT_RECORD, DIGEST_GUESS, DIGEST_RECORD, TRUSTED

from .helpers import catalytic, git, settle_index, wait_blocked_in

POLICY = (
    'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\nexclusions = ["vendor"]\n'
    'protected_roots = ["src", "data", "new", "top.txt", "l"]\n'
)
FILES = {
    "src/a.py": "a\n",
    "src/b.py": "b\n",
    "data/x.csv": "1\n",
    "docs/readme.md": "r\n",
    "outputs/o.txt": "o\n",
    "vendor/v.c": "v\n",
    "top.txt": "t\n",
    "src/sub/c.py": "c\n",
}
FULL = {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}


def _sh(repo: Path, script: str) -> None:
    subprocess.run(["sh", "-c", script], cwd=repo, check=True, capture_output=True)


def _full(repo: Path, view: str = "--worktree") -> str:
    """The full path's line, computed in this process from `repo` (through Typer, as
    CATALYTIC_NO_FASTPATH=1 makes the command do; it also records what the quick path needs)."""
    out = io.StringIO()
    cwd = os.getcwd()
    os.environ["CATALYTIC_NO_FASTPATH"] = "1"
    try:
        os.chdir(repo)
        with contextlib.redirect_stdout(out):
            code = main(["digest", view])
    finally:
        os.chdir(cwd)
        del os.environ["CATALYTIC_NO_FASTPATH"]
    assert code == 0, out.getvalue()
    return out.getvalue().rstrip("\n")


def _quick(view: str = "--worktree") -> str | None:
    """The quick path's answer, once the index has settled (helpers.settle_index)."""
    settle_index(Path.cwd())
    argv = [view]
    return quickdigest.quick_digest(argv, early_status(argv), early_where(argv))


@pytest.fixture
def repo(make_repo, monkeypatch: pytest.MonkeyPatch) -> Path:
    r = make_repo(FILES, policy=POLICY)
    (r / "l").symlink_to("top.txt")
    git(r, "add", "l")
    git(r, "commit", "-qm", "link")
    monkeypatch.chdir(r)
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    _full(r)
    assert (r / ".git/catalytic" / DIGEST_RECORD).exists()
    return r


ANSWERED = {
    "clean": "true",
    "modified": "echo changed >> src/a.py",
    "modified durable, excluded, unprotected": "echo x >> outputs/o.txt; echo x >> vendor/v.c; "
    "echo x >> docs/readme.md",
    "deleted": "rm src/b.py",
    "deleted symlink": "rm l",
    "untracked": "echo n > src/new.py",
    "untracked everywhere": "mkdir -p _tmp && echo t > _tmp/t; echo o > outputs/p.txt; "
    "echo v > vendor/w.c; echo d > docs/new.md",
    "untracked directory": "mkdir -p new/deep && echo 1 > new/deep/f && echo 2 > new/g",
    "directory where a file was": "rm src/b.py && mkdir src/b.py && echo in > src/b.py/f",
    "symlink retargeted": "ln -sfn src/a.py l",
    "file became symlink": "rm top.txt && ln -s src/a.py top.txt",
    "executable bit": "chmod +x src/a.py",
    "empty file": ": > src/empty",
    "non-ascii name": "echo e > src/é.txt",
    "untracked special file (git lists none)": "mkfifo src/pipe",
    "in a new subdirectory of a protected one": "mkdir src/z && echo z > src/z/z.py",
    "intent to add": "echo n > src/ita.py && git add -N src/ita.py",
    "staged, then changed again": "echo s >> src/a.py && git add src/a.py && echo w >> src/a.py",
    "staged deletion, file back on disk": "git rm -q --cached src/b.py",
}


@pytest.mark.parametrize("case", sorted(ANSWERED))
def test_the_quick_path_answers_what_the_full_path_computes(repo: Path, case: str) -> None:
    _sh(repo, ANSWERED[case])
    if "git " in ANSWERED[case]:  # a new index: the full path digests it first
        _full(repo)
    quick = _quick()
    assert quick is not None, "the quick path should answer this"
    assert quick == _full(repo)
    # again, now from the guess the first answer left (git.DIGEST_GUESS)
    assert (repo / ".git/catalytic" / DIGEST_GUESS).exists()
    assert _quick() == quick


@pytest.mark.parametrize(
    "guess",
    [
        b"\0\0src/new.py",
        b"src/a.py\0\0src/a.py",
        b"\0\0../outside\0src/new.py",
        b"\0\0src/pipe",
        b"\xff\xfe",
        b"no separator",
        b"\0\0" + b"src/x\0" * 2000,
    ],
    ids=[
        "a subset",
        "a removed path read back",
        "outside the top",
        "a fifo",
        "not UTF-8",
        "no separator",
        "too many paths",
    ],
)
def test_a_wrong_or_hostile_guess_never_changes_the_answer(repo: Path, guess: bytes) -> None:
    """The guess names paths to read while git status runs; it is used only when git status
    names exactly those paths, with values read from disk."""
    (repo.parent / "outside").write_text("outside\n")
    os.mkfifo(repo / "src/pipe")
    _sh(repo, "echo n > src/new.py && echo x >> src/a.py")
    (repo / ".git/catalytic" / DIGEST_GUESS).write_bytes(guess)
    assert _quick() == _full(repo)
    # the answer left the right guess behind, and it is used
    assert _quick() == _full(repo)
    assert (
        repo / ".git/catalytic" / DIGEST_GUESS
    ).read_bytes() == b"src/a.py\0\0src/a.py\0src/new.py"


def test_from_a_subdirectory_and_for_the_index(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _sh(repo, "echo n > src/new.py && echo x >> src/a.py")
    monkeypatch.chdir(repo / "src" / "sub")
    assert _quick() == _full(repo)
    assert _quick("--index") == _full(repo, "--index")


def _fifo(repo: Path) -> None:
    (repo / "src/b.py").unlink()
    os.mkfifo(repo / "src/b.py")


def _nested(repo: Path) -> None:
    git(repo / "src", "init", "-q", "nested")
    (repo / "src/nested/f").write_text("f\n")


def _write_name(name: bytes) -> Callable[[Path], None]:
    def make(repo: Path) -> None:
        with open(os.path.join(os.fsencode(repo), b"src", name), "wb") as fh:
            fh.write(b"x\n")

    return make


LEFT = {
    "staged change (another index)": lambda r: _sh(r, "echo s >> src/a.py && git add src/a.py"),
    "policy edited": lambda r: _sh(r, "echo '# same roots' >> .catalytic.toml"),
    "a second policy source appears": lambda r: _sh(
        r, "printf '[project]\\nname = \"x\"\\n' > pyproject.toml"
    ),
    "tracked file became a special file": _fifo,
    "nested repository": _nested,
    "newline in a name": _write_name(b"two\nlines"),
    "name not UTF-8": _write_name(b"caf\xe9"),
    "pending run": lambda r: _sh(
        r, "mkdir -p .git/catalytic/runs && echo {} > .git/catalytic/runs/run-" + "0" * 32 + ".json"
    ),
    "damaged record": lambda r: _sh(r, "printf x >> .git/catalytic/" + DIGEST_RECORD),
    "damaged snapshot": lambda r: _sh(
        r, "for f in .git/catalytic/index-digest-*.records; do printf x >> $f; done"
    ),
    "unmerged entry": lambda r: _sh(
        r,
        "git checkout -qb other && echo o > src/a.py && git commit -qam o && "
        "git checkout -q main && echo m > src/a.py && git commit -qam m && "
        "git merge -q other || true",
    ),
}


# Cases that change the index: the full path digests the new index first, so that what sends
# them to the full path is the case itself, not the stale snapshot.
REDIGESTED = {"unmerged entry"}


@pytest.mark.parametrize("case", sorted(LEFT))
def test_anything_unusual_is_left_to_the_full_path(repo: Path, case: str) -> None:
    LEFT[case](repo)
    if case in REDIGESTED:
        catalytic("digest", "--worktree", cwd=repo, env=FULL)
    assert _quick() is None
    quick_cli = catalytic("digest", "--worktree", cwd=repo)
    full_cli = catalytic("digest", "--worktree", cwd=repo, env=FULL)
    # The same answer or the same error, whichever path gave it.
    assert (quick_cli.returncode, quick_cli.stdout) == (full_cli.returncode, full_cli.stdout)


def test_too_many_files_to_read_are_left_to_the_full_path(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sh(repo, "echo 1 > src/n1 && echo 2 > src/n2 && echo 3 > src/n3")
    monkeypatch.setattr(quickdigest, "_MAX_FRESH", 2)
    assert _quick() is None
    monkeypatch.setattr(quickdigest, "_MAX_FRESH", 3)
    assert _quick() == _full(repo)


def test_a_record_is_used_only_for_its_version_top_and_git_index(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = repo / ".git/catalytic" / DIGEST_RECORD
    good = record.read_bytes()
    fields = good.split(b"\n\0\n")
    assert fields[1] == VERSION.encode() and fields[2] == os.fsencode(repo)
    snapshot = next(f for f in fields if f.startswith(b"index-digest-"))
    for forged in (
        good.replace(b"\n\0\n" + VERSION.encode(), b"\n\0\n0.0.0-other"),
        good.replace(os.fsencode(repo), os.fsencode(repo.parent)),
        good.replace(snapshot, b"../catalytic/" + snapshot),
    ):
        body = forged.rpartition(b"\n\0\n")[0]
        import zlib

        record.write_bytes(body + b"\n\0\n" + b"%08x" % zlib.crc32(body))
        assert _quick() is None
    record.write_bytes(good)
    assert _quick() is not None
    monkeypatch.setenv("GIT_INDEX_FILE", str(repo / ".git/index"))
    assert _quick() is None


def test_new_policy_roots_are_never_judged_by_the_recorded_ones(repo: Path) -> None:
    """The record binds roots to the bytes of the policy sources they came from: an edit that
    makes `docs` protected is not digested with the old roots, before or after the full path
    records the new ones."""
    _sh(repo, "echo x >> docs/readme.md")
    before = _full(repo)
    (repo / ".catalytic.toml").write_text(POLICY.replace('"l"]', '"l", "docs"]'))
    assert _quick() is None
    after = _full(repo)
    assert after != before and after.endswith("(7 files, worktree view)")
    assert _quick() == after


# Run by the attacking command: a record for the policy as it is, with no root protected.
FORGE = """
import os
from pathlib import Path
from catalytic_hooks.core.policy import read_sources
from catalytic_hooks.core.version import VERSION
from catalytic_hooks.git import quickdigest as q
top = os.getcwd()
snap = [n for n in os.listdir(".git/catalytic")
        if n.startswith("index-digest-") and not n.endswith(".records")][0]
none = {"exclusions": [], "tmp": [], "durable": [], "protected": []}
q.remember(".git", q.encode(VERSION, top, read_sources(Path(top)), snap, none))
"""


def test_the_record_and_the_hook_record_are_caches_a_run_cannot_keep(repo: Path) -> None:
    """A run's command that forges the digest's record (every root unprotected, so a modified
    file would simply vanish from the digest) gets the caches dropped, like a forged snapshot
    (tests/test_perf_shortcuts.py): a later digest is the full path's."""
    assert DIGEST_RECORD in TRUSTED and COMMIT_RECORD in TRUSTED
    forge = repo.parent / "forge.py"
    forge.write_text(FORGE)
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--",
        "sh",
        "-c",
        f"echo evil > src/a.py && {sys.executable} {forge}",
        cwd=repo,
    )
    assert proc.returncode != 0  # the mutation itself fails the run
    assert not (repo / ".git/catalytic" / DIGEST_RECORD).exists()
    assert "evil" in (repo / "src/a.py").read_text()
    later = catalytic("digest", "--worktree", cwd=repo).stdout.rstrip("\n")
    assert later == _full(repo)


def test_the_quick_path_reads_the_policy_sources_the_policy_does() -> None:
    assert quickdigest.SOURCES == POLICY_SOURCES


def test_the_console_command_takes_the_quick_path(repo: Path) -> None:
    """Through the `catalytic` script pip installed (scripts/catalytic): the same line as the
    full path."""
    _sh(repo, "echo x >> src/a.py")
    script = Path(sysconfig.get_path("scripts")) / "catalytic"  # where pip put it
    assert (
        script.read_text().splitlines()[1:]
        == (Path(__file__).parent.parent / "scripts/catalytic").read_text().splitlines()[1:]
    )
    settle_index(repo)
    proc = subprocess.run(
        [str(script), "digest", "--worktree"], cwd=repo, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.rstrip("\n")) == (0, _full(repo))
    assert proc.stderr == ""


@pytest.mark.parametrize("env", [{}, {"CATALYTIC_NO_FASTPATH": "1"}], ids=["quick", "full"])
def test_a_reader_that_went_away_gets_no_traceback(repo: Path, env: dict[str, str]) -> None:
    """`catalytic digest --worktree | head -0`: the write fails with EPIPE; the command exits
    141, as git does under a shell, and says nothing of a bug."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "catalytic_hooks", "digest", "--worktree"],
            cwd=repo,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr and "bug" not in proc.stderr


def test_ctrl_c_while_git_status_runs(repo: Path) -> None:
    """SIGINT while the quick path waits for `git status` (held up by a slow fsmonitor hook of
    the repository's own): exit 130, "interrupted", no traceback, git killed."""
    started = repo.parent / "hook-started"
    hook = repo.parent / "slow-fsmonitor"
    hook.write_text(
        f"#!/bin/sh\necho $$ > {started}.tmp && mv {started}.tmp {started}\nexec sleep 60\n"
    )
    hook.chmod(0o755)
    git(repo, "config", "core.fsmonitor", str(hook))
    proc = subprocess.Popen(
        [sys.executable, "-m", "catalytic_hooks", "digest", "--worktree"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "git status never ran the fsmonitor hook"
            time.sleep(0.05)
        wait_blocked_in(proc.pid, "poll")  # on git's output, inside the quick path's handler
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.kill(int(started.read_text()), signal.SIGKILL)  # the hook's sleep, git's child
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted" and out == ""


# -- a git command between `git status` and the snapshot (issue 26, class 10) ---------------------


def _exited(pid: int) -> None:
    """Wait until the process has exited, without reaping it: its output stays readable."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def test_an_index_changed_after_git_status_read_it_never_gives_a_stale_digest(repo: Path) -> None:
    """The interleaving forced: `git status` runs to its end on the index as it is; then `git
    rm --cached src/b.py` (the file stays on disk: untracked, protected) and a digest that
    stores the new index's snapshot; only then does the quick path read git status's output.
    That output and the new snapshot together left src/b.py out of the digest."""
    argv = ["--worktree"]
    status, where = early_status(argv), early_where(argv)
    assert status is not None and where is not None
    _exited(status.pid)
    git(repo, "rm", "-q", "--cached", "src/b.py")
    fresh = _full(repo)
    assert quickdigest.quick_digest(argv, status, where) is None
    assert _quick() == fresh  # and once the index has settled, the quick path answers again


def test_the_full_path_asks_git_again_when_the_index_changed(repo: Path) -> None:
    from catalytic_hooks.core.policy import load_policy
    from catalytic_hooks.git.digests import worktree_digest
    from catalytic_hooks.git.hashing import HashCache
    from catalytic_hooks.git.repo import Repo

    r = Repo.discover(repo)
    status = r.status_start(ignored=False)
    _exited(status.pid)
    git(repo, "rm", "-q", "--cached", "src/b.py")
    got = worktree_digest(r, load_policy(repo), HashCache(None), status=status)
    assert f"{got.digest}  ({len(got.manifest)} files, worktree view)" == _full(repo)
