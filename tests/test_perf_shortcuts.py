"""Every shortcut of the performance work gives the bytes of the full path, and none of them can be
used by a run's command to hide a mutation (SECURITY.md, "Caches"): the POST digest reuses the PRE
index snapshot held in memory, never what the command could write to `.git/catalytic/`."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from catalytic_hooks.cli.app import app
from catalytic_hooks.cli.fastpath import RUN_OPTIONS, parse_run
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.core.receipts import digest_receipt
from catalytic_hooks.core.version import VERSION
from catalytic_hooks.git.digests import tree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.views import worktree_view
from catalytic_hooks.provenance.environment import distributions

from .helpers import catalytic, git

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
FILES = {"src/a.py": "a = 1\n", "src/b.py": "b = 1\n", "data/x.csv": "1\n", "link": None}

# Run by the attacking command: writes, for the index as it is now, a snapshot that claims
# every protected path still has the value recorded in the run's PRE receipt.
FORGE = """
import json, sys
from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.core.records import Records
from catalytic_hooks.git.snapshot import _save, _snapshot_file
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.runstate import index_identity
r = Repo.discover(); p = load_policy(r.top)
old = json.load(open(sys.argv[1]))["file_manifest"]
path = _snapshot_file(r, p); path.parent.mkdir(exist_ok=True)
_save(path, index_identity(r), None, Records.from_values(old))
c = HashCache.for_repo(r); new = r.git("rev-parse", ":src/a.py").decode().strip()
c.put(new, old["src/a.py"]); c.save()
"""


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo({k: v for k, v in FILES.items() if v is not None}, policy=POLICY)
    (r / "link").symlink_to("src/a.py")
    git(r, "add", "link")
    git(r, "commit", "-qm", "link")
    return r


def _run(repo: Path, run_id: str, script: str) -> dict[str, object]:
    proc = catalytic("run", "--run-id", run_id, "--json", "--", "sh", "-c", script, cwd=repo)
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def test_run_receipts_equal_the_full_view_digests(repo: Path) -> None:
    """PRE and POST come from the index snapshot patched by git status; the receipts must be
    byte for byte what digesting the whole working tree gives."""
    (repo / "src/a.py").write_text("a = 2\n")  # modified before the run
    (repo / "data/x.csv").unlink()  # deleted
    (repo / "new.txt").write_text('quote " and \\ back\n')  # untracked
    catalytic("digest", "--worktree", cwd=repo)  # warm snapshot and cache
    doc = _run(repo, "r1", "true")
    assert doc["ok"] is True
    r = Repo.discover(repo)
    full = tree_digest(worktree_view(r), load_policy(repo), HashCache(None))
    expected = canonical_bytes(digest_receipt(full, load_policy(repo)))
    for name in ("PRE_DIGEST.json", "POST_DIGEST.json"):
        assert (repo / "_runs/r1" / name).read_bytes() == expected
    assert json.loads(expected)["file_manifest"]["link"].startswith("symlink:")


def test_a_command_that_changes_the_index_gets_the_full_view_digest(repo: Path) -> None:
    """POST after an index change reads every tracked file from disk (SECURITY.md: the index's
    stat data could be forged); for an honest command that stages a durable output and
    refreshes the index, the receipts must still be exactly the full views' digests."""
    (repo / "src/a.py").write_text("a = 2\n")  # modified before the run: PRE differs from HEAD
    doc = _run(
        repo,
        "r1",
        "mkdir -p outputs && echo o > outputs/o.txt && "
        "git add outputs/o.txt && git update-index --refresh >/dev/null || true",
    )
    assert doc["ok"] is True, doc
    r = Repo.discover(repo)
    full = tree_digest(worktree_view(r), load_policy(repo), HashCache(None))
    expected = canonical_bytes(digest_receipt(full, load_policy(repo)))
    assert (repo / "_runs/r1/POST_DIGEST.json").read_bytes() == expected
    assert (repo / "_runs/r1/PRE_DIGEST.json").read_bytes() == expected


def test_a_forged_snapshot_and_cache_cannot_hide_a_mutation(repo: Path) -> None:
    catalytic("digest", "--worktree", cwd=repo)
    pre = repo.parent / "pre.json"
    catalytic("digest", "--worktree", "--output", str(pre), cwd=repo)
    script = f"echo evil > src/a.py && git add src/a.py && {sys.executable} -c '{FORGE}' {pre}"
    doc = _run(repo, "r1", script)
    details = doc["details"]
    assert isinstance(details, dict)
    assert doc["ok"] is False and details["proof_verdict"] == "FAIL"
    scan = json.loads((repo / "_runs/r1/PURITY_SCAN.json").read_text())
    assert scan["violations"] == ["src/a.py"]
    # The forged files were dropped (what is stored now was computed by the run), so a later
    # digest is honest too.
    evil = hashlib.sha256(b"evil\n").hexdigest()
    for view in ("--worktree", "--index"):
        later = json.loads(catalytic("digest", view, "--json", cwd=repo).stdout)
        assert later["details"]["file_manifest"]["src/a.py"] == evil


def test_a_command_that_digests_does_not_fail_the_run(repo: Path) -> None:
    """A nested `catalytic digest` rewrites the caches honestly: they are dropped, the run is
    judged without them and passes."""
    doc = _run(
        repo,
        "r1",
        "catalytic digest --worktree > /dev/null && rm -rf .git/catalytic "
        "&& catalytic digest --index > /dev/null",
    )
    assert doc["ok"] is True, doc
    assert not (repo / ".git/catalytic/blob-sha256").exists()


def test_run_option_table_is_the_typer_commands() -> None:
    cmd = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    table = {}
    for p in cmd.params:
        if p.name == "command":
            continue
        kind = (
            "flag"
            if p.is_flag
            else "list"
            if p.multiple
            else "path"
            if p.name == "sign"
            else "float"
            if p.name in ("timeout", "grace")
            else "int"
            if p.name == "seed"
            else "str"
        )
        for opt in (*p.opts, *p.secondary_opts):
            table[opt] = (p.name if p.name != "json_mode" else "json_mode", kind)
    assert table == RUN_OPTIONS


@pytest.mark.parametrize(
    "argv",
    [
        ["--run-id", "x"],
        ["--help"],
        ["--run-id", "x", "true"],
        ["--seed", "abc", "--run-id", "x", "--", "true"],
        ["--", "true"],
        ["--bogus", "--run-id", "x", "--", "true"],
    ],
)
def test_unusual_run_arguments_go_to_typer_or_parse_exactly(argv: list[str]) -> None:
    assert parse_run(argv) is None or argv == ["--run-id", "x"]


def test_run_arguments_after_the_separator_are_the_command() -> None:
    args = parse_run(
        [
            "--run-id=r",
            "--seed",
            "7",
            "--timeout",
            "2.5",
            "--metrics",
            "m.json",
            "--",
            "sh",
            "-c",
            "--json",
            "--",
        ]
    )
    assert args is not None
    assert (args.run_id, args.seed, args.timeout, args.metrics, args.json_mode, args.command) == (
        "r",
        7,
        2.5,
        ["m.json"],
        False,
        ["sh", "-c", "--json", "--"],
    )


@pytest.mark.parametrize("fast", [True, False])
def test_fast_and_typer_runs_write_the_same_bundle(repo: Path, fast: bool) -> None:
    env = None if fast else {**os.environ, "CATALYTIC_NO_FASTPATH": "1"}
    proc = catalytic(
        "run",
        "--run-id",
        "r1",
        "--seed",
        "3",
        "--json",
        "--",
        "sh",
        "-c",
        "mkdir -p outputs && echo out > outputs/o.txt",
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    details = json.loads(proc.stdout)["details"]
    assert details["outputs"] == {"outputs/o.txt": "sha256:" + hashlib.sha256(b"out\n").hexdigest()}
    spec = json.loads((repo / "_runs/r1/TASK_SPEC.json").read_text())
    assert spec["seed"] == 3
    assert spec["command"] == ["sh", "-c", "mkdir -p outputs && echo out > outputs/o.txt"]


def test_distributions_are_what_importlib_metadata_reports() -> None:
    seen = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name:
            seen.add(f"{name.lower().replace('_', '-')}=={dist.version}")
    assert distributions() == sorted(seen)


def test_the_version_constant_is_the_installed_distributions() -> None:
    assert importlib.metadata.version("catalytic-hooks") == VERSION


def test_flagged_entries_are_found_among_plain_ones(repo: Path) -> None:
    from catalytic_hooks.git.runstate import flagged_entries

    git(repo, "update-index", "--assume-unchanged", "src/b.py")
    git(repo, "update-index", "--skip-worktree", "data/x.csv")
    flags = flagged_entries(Repo.discover(repo))
    assert flags.assumed == {"src/b.py"} and flags.sparse == {"data/x.csv"}
    subprocess.run(
        ["git", "update-index", "--no-assume-unchanged", "src/b.py"], cwd=repo, check=True
    )
    assert flagged_entries(Repo.discover(repo)).assumed == frozenset()


def test_staged_tmp_residue_is_what_the_index_holds(repo: Path) -> None:
    """The commit check derives the index entries under tmp roots from HEAD's tree and the
    staged diff instead of reading the index twice; it must name exactly what ls-files does."""
    from catalytic_hooks.enforce.checks import check_staged

    (repo / "_tmp").mkdir()
    for name in ("a", "b", "c"):
        (repo / "_tmp" / name).write_text(name)
    git(repo, "add", "-f", "_tmp")
    git(repo, "commit", "-qm", "residue", "--no-verify")
    git(repo, "rm", "-q", "--cached", "_tmp/a")
    (repo / "_tmp/d").write_text("d")
    (repo / "_tmp/b").write_text("b2")
    git(repo, "add", "-f", "_tmp/d", "_tmp/b")
    for name in ("a", "b", "c", "d"):
        (repo / "_tmp" / name).unlink()
    listed = set(git(repo, "ls-files", "--", "_tmp").stdout.split())
    assert listed == {"_tmp/b", "_tmp/c", "_tmp/d"}
    found = {f.path for f in check_staged(Repo.discover(repo)) if f.kind == "tmp-residue"}
    assert found == listed


def test_early_status_gives_the_digest_of_the_normal_path(repo: Path, tmp_path: Path) -> None:
    """`digest --worktree` starts git status before its imports; from a subdirectory, with
    untracked and ignored files, and outside any repository it must answer exactly what the
    Typer path (which starts git itself, later) answers."""
    (repo / "src/new.py").write_text("n\n")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "src/x.log").write_text("l\n")
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    for cwd, argv in (
        (repo / "src", ["--worktree", "--json"]),
        (repo, ["--worktree", "--ignored", "--json"]),
        (outside, ["--worktree", "--json"]),
    ):
        fast = catalytic("digest", *argv, cwd=cwd)
        slow = catalytic("digest", *argv, cwd=cwd, env={**os.environ, "CATALYTIC_NO_FASTPATH": "1"})
        assert (fast.returncode, fast.stdout) == (slow.returncode, slow.stdout), cwd
    assert json.loads(fast.stdout)["code"] == "NOT_A_REPOSITORY"
