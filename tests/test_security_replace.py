"""Objects are judged as they are (SECURITY.md, "Replace refs and grafts"): git substitutes the
objects named by `refs/replace/*` and the parents named by `info/grafts` in every command that
reads objects. Each test plays the attack with real git against a real bare repository reached
by `git push` (or a real `catalytic run`) and asserts the harm did not happen: the forbidden
change did not land, the run did not pass, git hands out the true bytes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.git.repo import Repo

from .helpers import catalytic, gated_server, git, write_files

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
LAX = 'durable_roots = ["outputs", "data"]\ntmp_roots = ["_tmp"]\n'
BASE = {"data/x.csv": "1\n", "src/a.py": "a = 1\n", "outputs/keep.txt": "k\n"}


def _rev(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", rev, check=False).stdout.strip()


def _push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "push", "--no-verify", "origin", *args, check=False)


def _commit(repo: Path, files: dict[str, str | bytes], message: str) -> str:
    write_files(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return _rev(repo, "HEAD")


@pytest.fixture
def served(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    """A clone whose history is on a bare server that then gets the gate (pre-receive)."""
    repo = make_repo(BASE, policy=POLICY)
    return repo, gated_server(repo, tmp_path)


def _forged_and_innocent(repo: Path) -> tuple[str, str]:
    """A forbidden commit on main (protected data changed) and an innocent sibling with the
    same parent, which a replace ref can put in its place."""
    base = _rev(repo, "HEAD")
    forged = _commit(repo, {"data/x.csv": "forged\n"}, "update readme")
    git(repo, "checkout", "-q", "--detach", base)
    innocent = _commit(repo, {"outputs/readme.txt": "r\n"}, "update readme")
    git(repo, "checkout", "-q", "main")
    return forged, innocent


def test_a_replace_ref_cannot_swap_the_judged_commit(served: tuple[Path, Path]) -> None:
    repo, bare = served
    before = _rev(bare, "refs/heads/main")
    forged, innocent = _forged_and_innocent(repo)
    git(repo, "replace", forged, innocent)
    assert _push(repo, f"{innocent}:refs/heads/innocent").returncode == 0  # a clean commit
    # Step 1: the replace ref itself is refused at the gate, created or deleted.
    proc = _push(repo, f"refs/replace/{forged}")
    assert proc.returncode != 0, proc.stderr
    assert (
        f"remote: refs/replace/{forged}: ref refused: REF_FORBIDDEN: a push may not create "
        "a replace ref" in proc.stderr
    )
    assert _rev(bare, f"refs/replace/{forged}") == ""
    # Step 2: one that reached the server some other way (before the gate, by hand) changes
    # nothing judged: the forbidden commit is seen as it is and refused.
    git(bare, "update-ref", f"refs/replace/{forged}", innocent)
    proc = _push(repo, "main")
    assert proc.returncode != 0, proc.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert _rev(bare, "refs/heads/main") == before
    proc = _push(repo, f":refs/replace/{forged}")
    assert proc.returncode != 0 and "a push may not delete a replace ref" in proc.stderr
    assert _rev(bare, f"refs/replace/{forged}") == innocent


def test_a_replace_ref_cannot_swap_the_base_policy(served: tuple[Path, Path]) -> None:
    repo, bare = served
    before = _rev(bare, "refs/heads/main")
    strict = _rev(repo, "HEAD:.catalytic.toml")
    lax = git(repo, "hash-object", "-w", "--stdin", input=LAX).stdout.strip()
    git(repo, "replace", "-f", strict, lax)
    assert _push(repo, f"refs/replace/{strict}").returncode != 0
    assert _rev(bare, f"refs/replace/{strict}") == ""
    # Planted by hand: the policy committed at the base still judges.
    git(bare, "hash-object", "-w", "--stdin", input=LAX)
    git(bare, "update-ref", f"refs/replace/{strict}", lax)
    assert git(bare, "cat-file", "blob", f"{before}:.catalytic.toml").stdout == LAX  # git obeys
    _commit(repo, {"data/x.csv": "forged\n"}, "forge")
    proc = _push(repo, "main")
    assert proc.returncode != 0, proc.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert _rev(bare, "refs/heads/main") == before


def test_a_ref_to_a_blob_or_tree_is_refused(served: tuple[Path, Path]) -> None:
    repo, bare = served
    blob = git(repo, "hash-object", "-w", "--stdin", input="anything\n").stdout.strip()
    tree = _rev(repo, "HEAD^{tree}")
    git(repo, "tag", "-a", "-m", "a tag of a tree", "tree-tag", tree)
    for spec, kind in (
        (f"{blob}:refs/tags/blob", "blob"),
        (f"{tree}:refs/tags/tree", "tree"),
        ("refs/tags/tree-tag", "tag of a tree"),
    ):
        proc = _push(repo, spec)
        assert proc.returncode != 0, spec
        ref = spec.rpartition(":")[2]
        assert (
            f"remote: {ref}: ref refused: REF_NOT_A_COMMIT: it would point to a {kind}"
            in proc.stderr
        ), proc.stderr
        assert _rev(bare, ref) == ""
    # Outside the branch and tag namespaces, nothing is written either.
    proc = _push(repo, "HEAD:refs/notes/commits")
    assert proc.returncode != 0 and "REF_FORBIDDEN" in proc.stderr
    # An annotated tag of a commit is fine.
    git(repo, "tag", "-a", "-m", "release", "v1")
    assert _push(repo, "refs/tags/v1").returncode == 0
    assert _rev(bare, "refs/tags/v1^{commit}") == _rev(repo, "HEAD")


def test_a_policy_may_allow_more_ref_namespaces(make_repo, tmp_path: Path) -> None:
    repo = make_repo(
        BASE,
        policy=POLICY + 'ref_namespaces = ["refs/heads/", "refs/tags/", "refs/notes/", "refs/"]\n',
    )
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    assert _push(repo, "HEAD:refs/notes/commits").returncode == 0
    # Never a replace ref, whatever the policy says.
    head = _rev(repo, "HEAD")
    other = git(repo, "commit-tree", "-m", "other", head + "^{tree}").stdout.strip()
    git(repo, "replace", head, other)
    proc = _push(repo, f"refs/replace/{head}")
    assert proc.returncode != 0 and "REF_FORBIDDEN" in proc.stderr


def test_a_run_that_creates_a_replace_ref_does_not_pass(make_repo) -> None:
    repo = make_repo(BASE, policy=POLICY)
    true_blob = _rev(repo, "HEAD:data/x.csv")
    # The command rewrites the protected file and makes git show its own bytes for the
    # committed blob: without --restore the run must fail, with it the ref must be gone.
    script = (
        "evil=$(printf 'evil\\n' | git hash-object -w --stdin) && "
        f"git replace {true_blob} $evil && printf 'evil\\n' > data/x.csv"
    )
    proc = catalytic(
        "run", "--run-id", "r1", "--restore", "--json", "--", "sh", "-c", script, cwd=repo
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert doc["details"]["proof_verdict"] == "FAIL"
    assert f"replace ref refs/replace/{true_blob}" in doc["details"]["git_state_changed"]
    assert (repo / "data/x.csv").read_bytes() == b"1\n"  # the undo read the true blob
    assert _rev(repo, f"refs/replace/{true_blob}") == ""  # and the replace ref is gone
    assert git(repo, "show", "HEAD:data/x.csv").stdout == "1\n"
    (repo / "data/x.csv").write_text("oops\n")
    git(repo, "checkout", "--", "data/x.csv")
    assert (repo / "data/x.csv").read_bytes() == b"1\n"
    undo = json.loads((repo / "_runs/r1/RESTORE_UNDO.json").read_text())
    assert undo["substitutions_restored"] == [f"refs/replace/{true_blob}"]
    # Without --restore: the run fails, naming the replace ref; nothing is undone.
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "bundle")
    proc = catalytic(
        "run",
        "--run-id",
        "r2",
        "--json",
        "--",
        "sh",
        "-c",
        f"git replace {true_blob} $(printf 'x\\n' | git hash-object -w --stdin)",
        cwd=repo,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        f"replace ref refs/replace/{true_blob}"
        in json.loads(proc.stdout)["details"]["git_state_changed"]
    )


def test_the_tool_reads_objects_as_they_are(make_repo, tmp_path: Path) -> None:
    """Every git command of the tool and pygit2's reads: a replace ref changes no byte read."""
    repo = make_repo(BASE, policy=POLICY)
    clean = tmp_path / "clean"
    git(tmp_path, "clone", "-q", str(repo), str(clean))  # a clone has no replace refs
    true_blob = _rev(repo, "HEAD:data/x.csv")
    evil = git(repo, "hash-object", "-w", "--stdin", input="evil\n").stdout.strip()
    git(repo, "replace", true_blob, evil)
    assert git(repo, "cat-file", "blob", true_blob).stdout == "evil\n"  # git obeys it
    r = Repo.discover(repo)
    assert r.git("cat-file", "blob", true_blob) == b"1\n"
    assert r.read_blob(true_blob) == b"1\n"
    digest = catalytic("digest", "--rev", "HEAD", cwd=repo)
    assert digest.returncode == 0, digest.stderr
    assert digest.stdout == catalytic("digest", "--rev", "HEAD", cwd=clean).stdout


def test_planted_grafts_change_nothing_judged(make_repo, tmp_path: Path) -> None:
    """A graft that makes a forbidden revert of protected data look like no change at all (its
    parent grafted to the commit that already had those bytes) is ignored: on the server and in
    `catalytic check`."""
    repo = make_repo(BASE, policy=POLICY)
    old = _rev(repo, "HEAD")
    _commit(repo, {"data/x.csv": "2\n"}, "data v2 (before the gate)")
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    before = _rev(bare, "refs/heads/main")
    revert = _commit(repo, {"data/x.csv": "1\n"}, "quietly revert the data")
    (bare / "info").mkdir(exist_ok=True)
    (bare / "info" / "grafts").write_text(f"{revert} {old}\n")
    proc = _push(repo, "main")
    assert proc.returncode != 0, proc.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert _rev(bare, "refs/heads/main") == before
    (repo / ".git" / "info" / "grafts").write_text(f"{revert} {old}\n")
    assert (
        git(repo, "diff-tree", "-r", "--no-commit-id", "--name-only", revert).stdout == ""
    )  # git obeys the graft
    proc = catalytic("check", "--from-ref", before, "--to-ref", revert, cwd=repo)
    assert proc.returncode == 1 and "data/x.csv" in proc.stdout + proc.stderr


def test_doctor_reports_a_server_that_accepts_replace_refs(make_repo, tmp_path: Path) -> None:
    repo = make_repo(BASE, policy=POLICY)
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "push", "-q", str(bare), "main")

    def checks() -> dict[str, dict[str, object]]:
        proc = catalytic("doctor", "--git-dir", str(bare), "--json", cwd=tmp_path)
        return {c["name"]: c for c in json.loads(proc.stdout)["details"]["checks"]}

    found = checks()["replace refs"]
    assert found["ok"] is False
    assert f"catalytic install --server --git-dir {bare}" in str(found["fix"])
    assert "receive.hideRefs refs/replace" in str(found["fix"])
    # git's own refusal is a fix too: a push of a replace ref is then denied by git.
    git(bare, "config", "--add", "receive.hideRefs", "refs/replace")
    assert checks()["replace refs"]["ok"] is True
    head = _rev(repo, "HEAD")
    git(repo, "replace", head, git(repo, "commit-tree", "-m", "x", head + "^{tree}").stdout.strip())
    proc = git(repo, "push", str(bare), f"refs/replace/{head}", check=False)
    assert proc.returncode != 0 and "deny updating a hidden ref" in proc.stderr
    # One already there (put there by hand) is reported, with how to remove it.
    git(bare, "config", "--unset-all", "receive.hideRefs")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    other = git(bare, "commit-tree", "-m", "x", head + "^{tree}").stdout.strip()
    git(bare, "update-ref", f"refs/replace/{head}", other)
    found = checks()
    assert found["replace refs"]["ok"] is True
    assert found["replace refs present"]["ok"] is False
    assert f"refs/replace/{head}" in str(found["replace refs present"]["detail"])
