"""Issue 26, class 4: bookkeeping never decides what is deleted, and nothing deletes inside git's
directory. Real repositories, real `catalytic run --restore` and `catalytic recover`, real links
and nested repositories; each test reproduces an attack that destroyed data before the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component
from catalytic_hooks.core.policy import policy_from_mapping

from .helpers import catalytic, git

RAW = b"id,value\n1,0.5\n"


def _repo_ok(repo: Path) -> bool:
    """The repository still works: its git directory and its committed file are there."""
    st = git(repo, "status", "--porcelain", check=False)
    return (
        st.returncode == 0
        and (repo / ".git/HEAD").is_file()
        and (repo / "data/raw.csv").read_bytes() == RAW
    )


# -- the policy: a tmp root (or any root but an exclusion) never names git's directory, nor "." --


@pytest.mark.parametrize("root", [".git", ".GIT", ".", "a/.git/b"])
def test_a_tmp_root_in_gits_directory_or_the_top_is_refused(make_repo, root: str) -> None:
    policy = f"tmp_roots = [{json.dumps(root)}]\n"
    repo = make_repo({"data/raw.csv": RAW, "src/a.py": "a = 1\n"}, policy=policy)
    (repo / "notes.txt").write_text("untracked, mine\n")
    proc = catalytic("run", "--run-id", "r1", "--restore", "--json", "--", "true", cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CONFIG_INVALID" and "tmp_roots" in doc["message"], doc
    assert _repo_ok(repo) and (repo / "notes.txt").read_text() == "untracked, mine\n"
    assert not (repo / "_runs").exists()


@pytest.mark.parametrize(
    "root",
    [".git.", ".git ", "git~1", "GIT~1", ".git::$INDEX_ALLOCATION", ".g\u200cit", "x/.Git"],
    ids=[
        "ntfs-dot",
        "ntfs-space",
        "ntfs-short",
        "ntfs-short-upper",
        "ntfs-stream",
        "hfs-ignorable",
        "inner-case",
    ],
)
@pytest.mark.parametrize(
    "key", ["tmp_roots", "durable_roots", "protected_roots", "run_roots", "lock_files"]
)
def test_no_root_names_gits_directory_in_any_spelling(key: str, root: str) -> None:
    with pytest.raises(CatalyticError) as err:
        policy_from_mapping({key: [root]}, "test")
    assert err.value.code is ErrorCode.CONFIG_INVALID and key in err.value.message


def test_excluding_gits_directory_stays_allowed(make_repo) -> None:
    """The seed's own examples exclude `.git` (it is excluded anyway): harmless, still accepted."""
    repo = make_repo({"data/raw.csv": RAW}, policy='exclusions = [".git"]\n')
    assert catalytic("digest", "--worktree", cwd=repo).returncode == 0


@pytest.mark.parametrize(
    ("name", "is_git"),
    [
        (".git", True),
        (".GiT", True),
        (".git.", True),
        (".git. . ", True),
        ("git~1", True),
        (".git:stream", True),
        (".\u200dgi\u200ct\ufeff", True),
        (".gitignore", False),
        ("git", False),
        (".git~1", False),
        ("git~2", False),
        ("x.git", False),
        (".gitx", False),
    ],
)
def test_every_spelling_git_treats_as_its_directory(name: str, is_git: bool) -> None:
    assert has_git_component(f"a/{name}/b") is is_git


# -- emptying the tmp roots: never through a link, never into a repository ---------------------


def _run(repo: Path, script: str) -> dict[str, object]:
    proc = catalytic(
        "run", "--run-id", "r1", "--restore", "--json", "--", "sh", "-c", script, cwd=repo
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(proc.stdout)["details"]  # type: ignore[no-any-return]


def test_a_link_inside_a_tmp_root_is_removed_not_followed(make_repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "precious.txt").write_text("keep me\n")
    (outside / "sub/deep.txt").write_text("keep me too\n")
    repo = make_repo({"data/raw.csv": RAW}, policy='tmp_roots = ["_tmp"]\n')
    details = _run(
        repo,
        f"mkdir _tmp && ln -s {outside} _tmp/dir && "
        f"ln -s {outside}/precious.txt _tmp/file && echo s > _tmp/scratch",
    )
    assert details["status"] == "success" and details["proof_verdict"] == "PASS", details
    assert (outside / "precious.txt").read_text() == "keep me\n"
    assert (outside / "sub/deep.txt").read_text() == "keep me too\n"
    assert not (repo / "_tmp").exists() and _repo_ok(repo)


def test_a_tmp_root_reached_through_a_link_is_not_emptied(make_repo, tmp_path: Path) -> None:
    """The command makes a directory on the way to a tmp root a link to somewhere else: the
    undo must not empty (or remove) what the link points at."""
    outside = tmp_path / "outside"
    (outside / "tmp").mkdir(parents=True)
    (outside / "tmp/precious.txt").write_text("keep me\n")
    repo = make_repo(
        {"data/raw.csv": RAW}, policy='durable_roots = ["build"]\ntmp_roots = ["build/tmp"]\n'
    )
    details = _run(repo, f"ln -s {outside} build")
    assert (outside / "tmp/precious.txt").read_text() == "keep me\n"
    undo = details["undo"]
    assert isinstance(undo, dict)
    assert [k["path"] for k in undo["tmp_kept"]] == ["build/tmp"], undo
    assert details["proof_verdict"] == "FAIL"  # the tmp root is not empty: not a PASS


def test_a_repository_inside_a_tmp_root_is_not_descended(make_repo) -> None:
    repo = make_repo({"data/raw.csv": RAW}, policy='tmp_roots = ["_tmp"]\n')
    details = _run(
        repo,
        "mkdir -p _tmp/scratch && echo s > _tmp/scratch/s && "
        "git init -q _tmp/nested && echo work > _tmp/nested/work.txt && "
        "git init -q --bare _tmp/bare.git && "
        "mkdir _tmp/wt && echo 'gitdir: /elsewhere' > _tmp/wt/.git && "
        "echo w > _tmp/wt/w.txt",
    )
    assert (repo / "_tmp/nested/.git/HEAD").is_file()
    assert (repo / "_tmp/nested/work.txt").read_text() == "work\n"
    assert (repo / "_tmp/bare.git/HEAD").is_file() and (repo / "_tmp/bare.git/objects").is_dir()
    assert (repo / "_tmp/wt/.git").is_file() and (repo / "_tmp/wt/w.txt").is_file()
    assert not (repo / "_tmp/scratch").exists()
    undo = details["undo"]
    assert isinstance(undo, dict)
    assert sorted(k["path"] for k in undo["tmp_kept"]) == [
        "_tmp/bare.git",
        "_tmp/nested",
        "_tmp/wt",
    ]
    assert "_tmp/scratch/s" in undo["tmp_removed"]
    assert details["proof_verdict"] == "FAIL" and _repo_ok(repo)


# -- recovery: a journal's own words never decide what is deleted -----------------------------


def _plant(repo: Path, roots: dict[str, list[str]]) -> Path:
    runs = repo / ".git/catalytic/runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"run-{'b' * 32}.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "run_id": "planted",
                "phase": "command",
                "command_pgid": None,
                "command_start": None,
                "roots": {"protected_roots": [], **roots},
                "pre_manifest": {},
                "tmp_existed": [],
                "snapshot": {},
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "root",
    [
        ".git",
        ".",
        *(pytest.param(r, marks=pytest.mark.slow) for r in (".GIT", "a/.git/b", "git~1")),
    ],
)
def test_a_planted_journal_with_a_git_tmp_root_is_refused(make_repo, root: str) -> None:
    repo = make_repo({"data/raw.csv": RAW}, policy='tmp_roots = ["_tmp"]\n')
    (repo / "notes.txt").write_text("untracked, mine\n")
    journal = _plant(repo, {"tmp_roots": [root]})
    # What the commit hook tells the user to run.
    assert "catalytic recover" in catalytic("check", "--staged", cwd=repo).stderr
    rec = catalytic("recover", "--json", cwd=repo)
    assert rec.returncode == 1, rec.stdout + rec.stderr
    doc = json.loads(rec.stdout)
    assert doc["code"] == "JOURNAL_REFUSED", doc
    (run,) = doc["details"]["runs"]
    assert run["status"] == "refused" and "tmp_roots" in run["reason"], run
    assert _repo_ok(repo) and (repo / "notes.txt").read_text() == "untracked, mine\n"
    assert journal.exists()  # not ours: left alone for a person to look at


def test_a_planted_journal_empties_no_root_the_committed_policy_does_not(make_repo) -> None:
    """A journal whose roots pass every rule still decides nothing alone: recovery empties only
    tmp roots that the policy committed at HEAD declares."""
    repo = make_repo({"data/raw.csv": RAW, "src/a.py": "a = 1\n"}, policy='tmp_roots = ["_tmp"]\n')
    (repo / "src/draft.py").write_text("untracked work\n")
    (repo / "_tmp").mkdir()
    (repo / "_tmp/scratch").write_text("s\n")
    _plant(repo, {"tmp_roots": ["src", "_tmp/x"]})
    (repo / "_tmp/x").mkdir()
    (repo / "_tmp/x/y").write_text("y\n")
    rec = catalytic("recover", "--json", cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    (run,) = json.loads(rec.stdout)["details"]["runs"]
    assert (repo / "src/draft.py").read_text() == "untracked work\n"
    assert (repo / "src/a.py").read_text() == "a = 1\n"
    assert [k["path"] for k in run["tmp_kept"]] == ["src"], run
    assert run["tmp_removed"] == ["_tmp/x/y"]  # under the committed tmp root _tmp: emptied
    assert (repo / "_tmp/scratch").read_text() == "s\n"
