"""A run cannot hide its mutations from the POST digest (SECURITY.md, issue "Trust model", point
5): each test runs a real command through `catalytic run` that mutates protected files and then
tampers with the git state `git status` trusts, and asserts the run FAILs, names what changed,
and (with --restore) still puts the protected bytes back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.runstate import pinned

from .helpers import catalytic, git

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
FILES = {"src/a.py": "a = 1\n", "src/b.py": "b = 1\n", "data/x.csv": "1\n"}

ATTACKS = {
    "skip-worktree": "echo evil >> src/a.py && git update-index --skip-worktree src/a.py",
    "assume-unchanged": "echo evil >> src/a.py && git update-index --assume-unchanged src/a.py",
    "info-exclude": "echo evil > src/new.py && echo src/new.py >> .git/info/exclude",
    "fsmonitor-config": "echo evil >> src/a.py && git config core.fsmonitor true",
    "global-excludes": 'echo evil > src/new.py && mkdir -p "$XDG_CONFIG_HOME/git" && '
    'echo src/new.py > "$XDG_CONFIG_HOME/git/ignore"',
    # "1\n" in EBCDIC (IBM037) is two bytes too, so git re-reads the rewritten file, converts it
    # back through the attribute and finds the committed blob.
    "global-attributes": 'mkdir -p "$XDG_CONFIG_HOME/git" && '
    "echo 'data/x.csv working-tree-encoding=IBM037' > \"$XDG_CONFIG_HOME/git/attributes\" && "
    "printf '\\361\\045' > data/x.csv",
    "self-ignoring-gitignore": "printf '*\\n' > src/.gitignore && echo evil > src/new.py",
    "self-ignoring-new-directory": "mkdir src/evil && printf '*\\n' > src/evil/.gitignore && "
    "echo evil > src/evil/__init__.py",
    # Reading it to fingerprint it waited for a writer for ever, the undo still to do.
    "fifo-in-info": "echo evil >> src/a.py && mkfifo .git/info/pipe",
    "ignored-gitattributes": "printf '.git*\\n' > data/.gitignore && "
    "echo 'x.csv working-tree-encoding=IBM037' > data/.gitattributes && "
    "printf '\\361\\045' > data/x.csv",
}
CHANGED = {
    "skip-worktree": "index flags (skip-worktree, assume-unchanged)",
    "assume-unchanged": "index flags (skip-worktree, assume-unchanged)",
    "info-exclude": ".git/info/exclude",
    "fsmonitor-config": "git config (all levels)",
    "global-excludes": "core.excludesFile",
    "global-attributes": "core.attributesFile",
    "self-ignoring-gitignore": "rule file src/.gitignore",
    "self-ignoring-new-directory": "rule file src/evil/.gitignore",
    "fifo-in-info": ".git/info/pipe",
    "ignored-gitattributes": "rule file data/.gitattributes",
}


@pytest.fixture
def repo(make_repo) -> Path:
    return make_repo(FILES, policy=POLICY)


def _run(
    repo: Path, script: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    proc = catalytic("run", "--run-id", "r1", *extra, "--json", "--", "sh", "-c", script, cwd=repo)
    return proc, json.loads(proc.stdout)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hidden_mutation_fails_the_run(repo: Path, attack: str) -> None:
    proc, doc = _run(repo, ATTACKS[attack])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    details = doc["details"]
    assert isinstance(details, dict)
    assert details["proof_verdict"] == "FAIL"
    assert CHANGED[attack] in details["git_state_changed"]
    scan = json.loads((repo / "_runs/r1/PURITY_SCAN.json").read_text())
    assert scan["verdict"] == "FAIL" and CHANGED[attack] in scan["git_state_changed"]
    proof = json.loads((repo / "_runs/r1/PROOF.json").read_text())
    assert proof["restoration_result"]["condition"] == "NOT_RESTORED"


@pytest.mark.parametrize("attack", ["skip-worktree", "assume-unchanged"])
def test_restore_still_puts_flagged_files_back(repo: Path, attack: str) -> None:
    proc, doc = _run(repo, ATTACKS[attack], "--restore")
    assert proc.returncode == 1
    assert (repo / "src/a.py").read_text() == FILES["src/a.py"]
    undo = doc["details"]["undo"]  # type: ignore[index]
    assert [r["path"] for r in undo["restored"]] == ["src/a.py"]


@pytest.mark.parametrize("attack", ["global-attributes", "ignored-gitattributes"])
def test_restore_puts_back_a_file_hidden_by_attributes(repo: Path, attack: str) -> None:
    # The attribute makes `git status` call the rewritten file unchanged; the changed git state
    # has every entry read from disk, so the undo sees the rewrite and puts the bytes back.
    proc, doc = _run(repo, ATTACKS[attack], "--restore")
    assert proc.returncode == 1
    assert (repo / "data/x.csv").read_bytes() == b"1\n"
    undo = doc["details"]["undo"]  # type: ignore[index]
    assert [r["path"] for r in undo["restored"]] == ["data/x.csv"]


def test_an_ignore_file_among_the_outputs_is_no_change_of_git_state(repo: Path) -> None:
    # `outputs/.gitignore` rules only over the outputs, which the run may change at will.
    proc, doc = _run(repo, "mkdir -p outputs && printf '*\\n' > outputs/.gitignore")
    assert proc.returncode == 0, proc.stdout
    assert doc["details"]["git_state_changed"] == []  # type: ignore[index]


@pytest.mark.parametrize("how", ["gitignore", "exclusions"])
def test_a_tool_cache_the_repository_ignores_is_no_change_of_git_state(make_repo, how: str) -> None:
    # pytest, mypy and ruff write a self-ignoring `.gitignore` into their cache directories;
    # where the repository ignores the directory (or the policy excludes it), that rule file
    # rules over nothing judged.
    if how == "gitignore":
        repo = make_repo({**FILES, ".gitignore": ".pytest_cache/\n"}, policy=POLICY)
    else:
        repo = make_repo(FILES, policy=POLICY + 'exclusions = [".pytest_cache"]\n')
    script = "mkdir -p .pytest_cache/v && printf '*\\n' > .pytest_cache/.gitignore && "
    script += "echo 1 > .pytest_cache/v/lastfailed"
    proc, doc = _run(repo, script)
    assert proc.returncode == 0, proc.stdout
    assert doc["details"]["git_state_changed"] == []  # type: ignore[index]


def test_a_rule_file_in_an_ignored_directory_holding_a_tracked_file_still_counts(
    make_repo,
) -> None:
    # Attributes still apply to a file tracked inside an ignored directory.
    repo = make_repo({**FILES, ".gitignore": "vendor/\n"}, policy=POLICY)
    (repo / "vendor").mkdir()
    (repo / "vendor/x.csv").write_text("1\n")
    git(repo, "add", "-f", "vendor/x.csv")
    git(repo, "commit", "-qm", "vendored")
    script = "echo 'x.csv working-tree-encoding=IBM037' > vendor/.gitattributes && "
    script += "printf '\\361\\045' > vendor/x.csv"
    proc, doc = _run(repo, script, "--restore")
    assert proc.returncode == 1, proc.stdout
    assert doc["details"]["git_state_changed"] == ["rule file vendor/.gitattributes"]  # type: ignore[index]
    assert (repo / "vendor/x.csv").read_bytes() == b"1\n"
    assert not (repo / "vendor/.gitattributes").exists()


def test_a_file_already_flagged_before_the_run_is_still_digested(repo: Path) -> None:
    # The flag predates the run (so it is no change of git state): the entry is re-hashed from
    # disk before and after, and the mutation is seen and undone.
    git(repo, "update-index", "--assume-unchanged", "src/b.py")
    proc, doc = _run(repo, "echo evil >> src/b.py", "--restore")
    assert doc["details"]["git_state_changed"] == []  # type: ignore[index]
    assert (repo / "src/b.py").read_text() == FILES["src/b.py"]
    assert proc.returncode == 0, proc.stdout  # undone, so the proof holds
    undo = doc["details"]["undo"]  # type: ignore[index]
    assert [r["path"] for r in undo["restored"]] == ["src/b.py"]


def test_an_honest_run_changes_no_git_state(repo: Path) -> None:
    proc, doc = _run(repo, "mkdir -p outputs && echo r > outputs/r.txt")
    assert proc.returncode == 0, proc.stdout
    assert doc["details"]["git_state_changed"] == []  # type: ignore[index]


def test_the_run_view_switches_off_what_the_repository_configured(repo: Path) -> None:
    git(repo, "config", "core.fsmonitor", "true")
    git(repo, "config", "core.untrackedCache", "true")
    view = pinned(Repo.discover(repo))
    for key in ("core.fsmonitor", "core.untrackedCache", "core.ignoreStat"):
        assert view.git("config", "--get", key).decode().strip() == "false", key
    env_count = int(view.env["GIT_CONFIG_COUNT"])
    assert env_count == 6 and "GIT_CONFIG_COUNT" not in os.environ


# Run by the attacking command: src/a.py rewritten, then the index rewritten so that its entry
# keeps the original blob id but carries the modified file's stat data (its mtime set back so
# git does not see it as racy): `git status` and `git diff` then show a clean tree.
FORGE_STAT = """
import hashlib, os, subprocess, time
def rev(spec):
    return subprocess.run(["git", "rev-parse", spec], capture_output=True, text=True,
                          check=True).stdout.strip()
orig = rev(":src/a.py")
with open("src/a.py", "w") as fh:
    fh.write("evil\\n")
os.utime("src/a.py", (time.time() - 100, time.time() - 100))
subprocess.run(["git", "add", "src/a.py"], check=True)
data = bytearray(open(".git/index", "rb").read())
at = data.index(bytes.fromhex(rev(":src/a.py")))
data[at:at + 20] = bytes.fromhex(orig)
body = bytes(data[:-20])
open(".git/index", "wb").write(body + hashlib.sha1(body).digest())
"""


@pytest.mark.parametrize("restore", [False, True])
def test_forged_index_stat_data_cannot_hide_a_mutation(repo: Path, restore: bool) -> None:
    """The index entry keeps its blob id and gets the modified file's stat data, so git status
    calls the file unchanged; the run reads every entry from disk once the index was rewritten."""
    forge = repo.parent / "forge_stat.py"
    forge.write_text(FORGE_STAT)
    proc, doc = _run(repo, f"{sys.executable} {forge}", *(["--restore"] if restore else []))
    details = doc["details"]
    assert isinstance(details, dict)
    if restore:  # seen and undone, so the proof holds
        assert [r["path"] for r in details["undo"]["restored"]] == ["src/a.py"]
        assert (repo / "src/a.py").read_text() == FILES["src/a.py"]
        assert proc.returncode == 0, proc.stdout
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert details["proof_verdict"] == "FAIL"
    scan = json.loads((repo / "_runs/r1/PURITY_SCAN.json").read_text())
    assert scan["violations"] == ["src/a.py"]
    # the forgery itself worked: git sees nothing
    assert (repo / "src/a.py").read_text() == "evil\n"
    assert git(repo, "status", "--porcelain", "--", "src").stdout == ""


def test_relaxed_stat_checks_cannot_hide_a_mutation(repo: Path) -> None:
    """With `core.trustctime=false` configured, a rewrite that keeps size, inode and mtime would
    look unchanged to git status; the run's view compares the ctime anyway."""
    git(repo, "config", "core.trustctime", "false")
    git(repo, "config", "core.checkStat", "minimal")
    # An mtime well before the index's, so that git does not re-read the file as racily clean.
    os.utime(repo / "src/a.py", (1_600_000_000, 1_600_000_000))
    git(repo, "update-index", "--refresh")
    # git compares ctimes to the second: the rewrite must fall in a later second than the one
    # the index recorded (as it does for any file not written in the last second).
    time.sleep(1.1)
    script = (
        "python3 -c \"import os; st = os.stat('src/a.py'); "
        "f = open('src/a.py', 'r+'); f.write('b'); f.close(); "
        "os.utime('src/a.py', ns=(st.st_atime_ns, st.st_mtime_ns))\""
    )
    proc, _ = _run(repo, script)
    assert (repo / "src/a.py").read_text() == "b = 1\n"
    assert git(repo, "status", "--porcelain", "--", "src").stdout == ""  # git is fooled
    assert proc.returncode == 1, proc.stdout
    scan = json.loads((repo / "_runs/r1/PURITY_SCAN.json").read_text())
    assert scan["violations"] == ["src/a.py"]


def test_a_nested_repository_without_a_commit_cannot_hide_files(repo: Path) -> None:
    # `git status` shows a nested repository as one `dir/` entry; one without a commit had no
    # HEAD to record, so it and everything written into it were left out of the POST digest.
    proc, doc = _run(repo, "git init -q src/v && echo evil > src/v/conftest.py")
    assert proc.returncode == 1, proc.stdout
    assert doc["details"]["proof_verdict"] == "FAIL"  # type: ignore[index]


def test_restore_never_deletes_a_nested_repository_the_command_made(repo: Path) -> None:
    # Its history may be someone's work: the undo refuses it by name, the journal stays, and
    # once the user moves it away `catalytic recover` finishes.
    proc, doc = _run(repo, "git init -q src/v && echo evil > src/v/conftest.py", "--restore")
    assert proc.returncode == 2, proc.stdout
    assert doc["code"] == "UNDO_INCOMPLETE" and doc["details"]["paths"] == ["src/v"]
    assert "never deletes a repository" in doc["message"]  # type: ignore[operator]
    assert (repo / "src/v/conftest.py").read_text() == "evil\n"
    assert catalytic("run", "--", "true", cwd=repo).returncode != 0  # the undo is still pending
    (repo / "src/v").rename(repo.parent / "moved-away")
    rec = catalytic("recover", cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert git(repo, "status", "--porcelain", "--", "src").stdout == ""


@pytest.mark.parametrize(
    "script",
    [
        "printf '*\\n' > src/.gitignore && echo evil > src/new.py",  # ignores itself
        "printf 'new.py\\n' > src/.gitignore && echo evil > src/new.py",  # seen, hides new.py
    ],
    ids=["self-ignoring", "visible"],
)
def test_restore_puts_the_rule_files_back_first_so_nothing_they_hid_stays(
    repo: Path, script: str
) -> None:
    # Undone after the rest, the rule file would be gone and the file it hid still there.
    proc, doc = _run(repo, script, "--restore")
    assert proc.returncode == 1, proc.stdout
    assert doc["details"]["git_state_changed"] == ["rule file src/.gitignore"]  # type: ignore[index]
    assert sorted(p.name for p in (repo / "src").iterdir()) == ["a.py", "b.py"]
    undo = doc["details"]["undo"]  # type: ignore[index]
    assert sorted(r["path"] for r in undo["removed"]) == ["src/.gitignore", "src/new.py"]
    assert git(repo, "status", "--porcelain", "--ignored", "--", "src").stdout == ""


def test_a_directory_named_like_pathspec_magic_is_judged_by_its_own_name(make_repo) -> None:
    # check-ignore reads each line as a pathspec: `:build` was the magic short form of `build`,
    # which the repository ignores, so the rule file in `:build/` went unseen and the run passed.
    repo = make_repo({**FILES, ".gitignore": "build\n"}, policy=POLICY)
    script = "mkdir :build && printf '*\\n' > :build/.gitignore && echo evil > :build/evil.py"
    proc, doc = _run(repo, script)
    assert proc.returncode == 1, proc.stdout
    assert doc["details"]["git_state_changed"] == ["rule file :build/.gitignore"]  # type: ignore[index]


@pytest.mark.parametrize("name", [b"caf\xe9", b"two\nlines"], ids=["not-utf8", "newline"])
def test_a_rule_file_whose_name_is_not_text_is_named_escaped(repo: Path, name: bytes) -> None:
    # Before, such a name broke every `run --restore` (INTERNAL, or GIT_FAILED from
    # `hash-object --stdin-paths`) even untouched, and a new one made the bundle unwritable.
    d = os.path.join(os.fsencode(repo), name)
    os.mkdir(d)
    with open(os.path.join(d, b".gitignore"), "wb") as fh:
        fh.write(b"*\n")
    proc, doc = _run(repo, "true", "--restore")
    assert (proc.returncode, doc["code"]) == (0, "PASS"), proc.stdout
    shutil.rmtree(repo / "_runs")
    made = os.fsdecode(name + b"2")
    octal = "".join(f"\\{b:03o}" for b in name + b"2")  # the command line itself stays text
    script = f"d=$(printf '{octal}') && mkdir \"$d\" && printf '*\\n' > \"$d/.gitignore\""
    for extra in ((), ("--restore",)):
        proc, doc = _run(repo, script, *extra)
        assert proc.returncode == 1, proc.stdout
        assert doc["code"] == "RUN_FAILED"
        shown = "rule file, name escaped: " + ascii(made + "/.gitignore")
        assert doc["details"]["git_state_changed"] == [shown]  # type: ignore[index]
        shutil.rmtree(os.path.join(os.fsencode(repo), name + b"2"))
        shutil.rmtree(repo / "_runs")


def test_restore_names_a_nested_repository_whose_head_the_command_moved(make_repo) -> None:
    # A repository is never moved or recreated by the undo; before, the refusal said the
    # command had created it, and a user who moved it away got a `recover` that called a
    # tree missing the repository recovered.
    repo = make_repo(FILES, policy=POLICY)
    git(repo, "init", "-q", "lib")
    git(repo / "lib", "commit", "-q", "--allow-empty", "-m", "v1")
    v1 = git(repo / "lib", "rev-parse", "HEAD").stdout.strip()
    proc, doc = _run(repo, "git -C lib commit -q --allow-empty -m v2", "--restore")
    assert (proc.returncode, doc["code"]) == (2, "UNDO_INCOMPLETE"), proc.stdout
    assert f"at commit {v1} before the run" in doc["message"]  # type: ignore[operator]
    assert f"git -C lib checkout {v1}" in doc["message"]  # type: ignore[operator]
    (repo / "lib").rename(repo.parent / "lib-moved")
    rec = catalytic("recover", cwd=repo)
    assert rec.returncode != 0, rec.stdout  # still refused: the repository is not there
    (repo.parent / "lib-moved").rename(repo / "lib")
    git(repo / "lib", "checkout", "-q", v1)
    rec = catalytic("recover", cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr


# Run by the attacking command: data/x.csv rewritten with other bytes of the same size, its
# mtime put back, and its index entry given the file's new ctime in place (same inode and size,
# the old trailing checksum, which git does not check on reading), the index's mtime put back.
FORGE_IN_PLACE = r"""
import os, struct, sys
target = sys.argv[1].encode()
idx = ".git/index"
sti, stf = os.stat(idx), os.stat(target)
with open(target, "r+b") as f:
    f.write(b"9")
os.utime(target, ns=(stf.st_atime_ns, stf.st_mtime_ns))
ctime = os.stat(target).st_ctime_ns
buf = open(idx, "rb").read()
n = struct.unpack(">I", buf[8:12])[0]
off = 12
for _ in range(n):
    namelen = struct.unpack(">H", buf[off + 60 : off + 62])[0] & 0xFFF
    if buf[off + 62 : off + 62 + namelen] == target:
        fd = os.open(idx, os.O_WRONLY)
        os.pwrite(fd, struct.pack(">II", ctime // 10**9, ctime % 10**9), off)
        os.close(fd)
    off += (62 + namelen + 8) & ~7
os.utime(idx, ns=(sti.st_atime_ns, sti.st_mtime_ns))
"""


@pytest.mark.parametrize("restore", [False, True])
def test_an_index_rewritten_in_place_cannot_hide_a_mutation(repo: Path, restore: bool) -> None:
    """The index's identity (size, inode, mtime, trailing checksum) survived an in-place
    rewrite that kept them all, so POST trusted `git status` over the forged stat data: the run
    passed and the undo restored nothing. The ctime, which no writer can set back, is now part
    of the identity: the index counts as rewritten and every entry is read from disk."""
    old = time.time() - 60  # the file older than the index: git does not re-read it as racy
    os.utime(repo / "data/x.csv", (old, old))
    git(repo, "update-index", "--really-refresh", "-q")
    (repo.parent / "forge.py").write_text(FORGE_IN_PLACE)
    extra = ("--restore",) if restore else ()
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--json",
        *extra,
        "--",
        sys.executable,
        "../forge.py",
        "data/x.csv",
        cwd=repo,
    )
    doc = json.loads(proc.stdout)
    if restore:  # seen, so undone: the proof then holds
        assert proc.returncode == 0, proc.stdout
        assert (repo / "data/x.csv").read_bytes() == b"1\n"
        assert [r["path"] for r in doc["details"]["undo"]["restored"]] == ["data/x.csv"]
    else:
        assert proc.returncode == 1, proc.stdout
        assert doc["details"]["proof_verdict"] == "FAIL"
        assert (repo / "data/x.csv").read_bytes() == b"9\n"
