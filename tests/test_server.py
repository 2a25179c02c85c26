"""The server-side gate: real `git push --no-verify` into bare repositories with catalytic's
pre-receive (or update) hook, over the local and file:// transports, inside git's quarantine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .helpers import catalytic, git, write_files

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
BASE = {"data/x.csv": "1\n", "src/a.py": "a = 1\n", "outputs/keep.txt": "k\n"}


def _bare(path: Path, *init: str) -> Path:
    git(path.parent, "init", "-q", "--bare", *init, str(path))
    return path


def _ref(bare: Path, ref: str = "refs/heads/main") -> str:
    return git(bare, "rev-parse", "--verify", "--quiet", ref, check=False).stdout.strip()


def _push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git(repo, "push", "--no-verify", *args, check=False)


@pytest.fixture(params=["local", "file"])
def served(request: pytest.FixtureRequest, make_repo, tmp_path: Path) -> tuple[Path, Path, str]:
    """A clone whose baseline is on a bare server that then gets the gate; the remote URL is a
    plain path (local transport) or file:// (the pack protocol)."""
    repo = make_repo(BASE, policy=POLICY)
    bare = _bare(tmp_path / "server.git")
    url = str(bare) if request.param == "local" else bare.as_uri()
    git(repo, "remote", "add", "origin", url)
    git(repo, "push", "-q", "origin", "main")
    proc = catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pre-receive: installed" in proc.stdout
    return repo, bare, url


def test_a_no_verify_push_of_a_mutation_is_refused(served: tuple[Path, Path, str]) -> None:
    repo, bare, _ = served
    before = _ref(bare)
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "forge")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0
    assert "remote: data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert "pre-receive hook declined" in proc.stderr
    assert _ref(bare) == before
    bad = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert git(bare, "cat-file", "-e", bad, check=False).returncode != 0  # quarantine dropped


def test_a_clean_push_is_accepted_and_nothing_extra_is_written(
    served: tuple[Path, Path, str],
) -> None:
    repo, bare, _ = served
    git(repo, "checkout", "-q", "-b", "side")
    write_files(repo, {"outputs/side.txt": "s\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "side")
    git(repo, "checkout", "-q", "main")
    write_files(repo, {"outputs/main.txt": "m\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "merge", "-q", "--no-commit", "side")
    write_files(repo, {"outputs/resolution.txt": "r\n"})  # so the merge differs from git's own
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "merge")
    auto = git(repo, "merge-tree", "--write-tree", "HEAD^1", "HEAD^2").stdout.split()[0]
    proc = _push(repo, "origin", "main")
    assert proc.returncode == 0, proc.stderr
    assert _ref(bare) == git(repo, "rev-parse", "HEAD").stdout.strip()
    # git's merge of the parents was computed in a scratch object directory, never stored.
    assert git(bare, "cat-file", "-e", auto, check=False).returncode != 0


def test_new_branches_tags_deletion_and_force_push(served: tuple[Path, Path, str]) -> None:
    repo, bare, _ = served
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "src/a.py").write_text("a = 2\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "mutate on a branch")
    proc = _push(repo, "origin", "feature")
    assert proc.returncode != 0 and "src/a.py" in proc.stderr
    assert _ref(bare, "refs/heads/feature") == ""
    # tags of the bad commit, lightweight and annotated, are judged like branches
    git(repo, "tag", "light")
    git(repo, "tag", "-a", "-m", "annotated", "heavy")
    for tag in ("light", "heavy"):
        proc = _push(repo, "origin", f"refs/tags/{tag}")
        assert proc.returncode != 0 and "src/a.py" in proc.stderr, tag
        assert _ref(bare, f"refs/tags/{tag}") == ""
    # several refs in one push: one bad ref refuses them all
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "good")
    write_files(repo, {"outputs/g.txt": "g\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "good")
    proc = _push(repo, "origin", "good", "feature")
    assert proc.returncode != 0 and _ref(bare, "refs/heads/good") == ""
    assert _push(repo, "origin", "good").returncode == 0
    # deleting a ref judges no history
    assert _push(repo, "origin", ":good").returncode == 0
    assert _ref(bare, "refs/heads/good") == ""
    # a force push that rewrites main with a mutation is judged against the old tip
    git(repo, "checkout", "-q", "main")
    (repo / "data/x.csv").write_text("rewritten\n")
    git(repo, "commit", "-q", "--no-verify", "--amend", "-am", "rewrite history")
    proc = _push(repo, "--force", "origin", "main")
    assert proc.returncode != 0 and "data/x.csv" in proc.stderr


def test_the_update_hook_gates_per_ref(make_repo, tmp_path: Path) -> None:
    repo = make_repo(BASE, policy=POLICY)
    bare = _bare(tmp_path / "server.git")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert (
        catalytic(
            "install", "--server", "-t", "update", "--git-dir", str(bare), cwd=tmp_path
        ).returncode
        == 0
    )
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "forge")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0 and "remote: data/x.csv" in proc.stderr
    assert "hook declined" in proc.stderr


def test_a_sha256_server(make_repo, tmp_path: Path) -> None:
    repo = tmp_path / "client"
    git(tmp_path, "init", "-q", "--object-format=sha256", "-b", "main", str(repo))
    write_files(repo, {**BASE, ".catalytic.toml": POLICY})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    bare = _bare(tmp_path / "server.git", "--object-format=sha256")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    write_files(repo, {"outputs/ok.txt": "ok\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "durable")
    assert _push(repo, "origin", "main").returncode == 0
    (repo / "src/a.py").write_text("forged\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "forge")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0 and "remote: src/a.py" in proc.stderr
    assert len(_ref(bare)) == 64


def test_install_server_chains_a_foreign_hook_with_its_stdin(
    served: tuple[Path, Path, str], tmp_path: Path
) -> None:
    repo, bare, _ = served
    hook = bare / "hooks/pre-receive"
    assert catalytic("uninstall", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    record = tmp_path / "record"
    hook.write_text(f"#!/bin/sh\ncat > {record}\n")
    hook.chmod(0o755)
    assert (
        catalytic("install", "--server", "--force", "--git-dir", str(bare), cwd=tmp_path).returncode
        == 0
    )
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "forge")
    old = _ref(bare)
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0 and "data/x.csv" in proc.stderr
    new = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert record.read_text() == f"{old} {new} refs/heads/main\n"


def _gated_trusting_alice(make_repo, tmp_path: Path, policy: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A clone and its gated bare server, whose base trusts alice (SEED_A) only."""
    from catalytic_hooks.bundle.keys import signer_from_seed

    from .helpers import SEED_A

    alice = signer_from_seed(SEED_A)
    repo = make_repo(
        {**BASE, ".catalytic/allowed_validators": f"alice id:{alice.validator_id}\n"}, policy=policy
    )
    bare = _bare(tmp_path / "server.git")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    return repo, bare


def test_bundles_are_verified_from_the_quarantine(make_repo, tmp_path: Path) -> None:
    from .helpers import SEED_A, SEED_B, make_bundle

    repo, _ = _gated_trusting_alice(make_repo, tmp_path, POLICY)
    make_bundle(repo / "_runs/mallory", repo, {"outputs/m.bin": b"m\n"}, seed=SEED_B)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "untrusted run")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0
    assert "remote: _runs/mallory: run bundle is valid but untrusted" in proc.stderr
    git(repo, "reset", "-q", "--hard", "HEAD^")
    make_bundle(repo / "_runs/alice", repo, {"outputs/a.bin": b"a\n"}, seed=SEED_A)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "trusted run")
    proc = _push(repo, "origin", "main")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "policy",
    [
        'durable_roots = ["outputs", "_runs/published"]\n',
        'durable_roots = ["outputs"]\nexclusions = ["_runs/published"]\n',
    ],
    ids=["durable", "excluded"],
)
def test_a_root_inside_the_run_root_does_not_hide_a_forged_bundle(
    make_repo, tmp_path: Path, policy: str
) -> None:
    """A durable or excluded root below `_runs` was dropped from the gate's diffs like any other
    root no rule looks at, so a bundle pushed there was never verified: one signed by a key the
    base does not trust, its output swapped after signing, went through."""
    from .helpers import SEED_B, make_bundle

    repo, bare = _gated_trusting_alice(make_repo, tmp_path, policy)
    before = _ref(bare)
    make_bundle(repo / "_runs/published/r1", repo, {"outputs/m.bin": b"m\n"}, seed=SEED_B)
    (repo / "outputs/m.bin").write_bytes(b"swapped after signing\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "forged run")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0
    assert "remote: _runs/published/r1: run bundle" in proc.stderr
    assert _ref(bare) == before


def test_a_signed_run_copied_under_another_name_is_refused_at_the_gate(
    make_repo, tmp_path: Path
) -> None:
    """A trusted run recording run id `draft-7`, pushed again as `_runs/release-1`: the gate
    verified the copy as a run of that name (same bytes, same signature) and let it in."""
    import shutil

    from .helpers import SEED_A, make_bundle

    repo, bare = _gated_trusting_alice(make_repo, tmp_path, POLICY)
    status = {"status": "success", "cmp01": "pass", "run_id": "draft-7"}
    make_bundle(repo / "_runs/draft-7", repo, {"outputs/a.bin": b"a\n"}, seed=SEED_A, status=status)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "draft-7")
    assert _push(repo, "origin", "main").returncode == 0
    before = _ref(bare)
    shutil.copytree(repo / "_runs/draft-7", repo / "_runs/release-1")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "release-1, a copy")
    proc = _push(repo, "origin", "main")
    assert proc.returncode != 0
    assert "_runs/release-1" in proc.stderr and "run id" in proc.stderr
    assert _ref(bare) == before
