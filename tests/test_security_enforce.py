"""The judged never chooses its judge, at commit and push time: each test reproduces an attack on
the hooks or the CI check with real git, real keys and real files, and asserts that the harm did
not happen (SECURITY.md, issue "Trust model": points 1, 3, 7 and 10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from catalytic_hooks.bundle.keys import signer_from_seed
from catalytic_hooks.provenance.chronicle import append

from .helpers import SEED_A, SEED_B, catalytic, git, make_bundle, write_files

POLICY = 'durable_roots = ["outputs"]\nprotected_roots = ["data", "src", ".catalytic"]\n'
BASE = {
    "data/x.csv": "1\n",
    "src/a.py": "a = 1\n",
    "outputs/keep.txt": "k\n",
    ".catalytic/allowed_validators": f"alice id:{signer_from_seed(SEED_A).validator_id}\n",
}


def _findings(proc: subprocess.CompletedProcess[str]) -> set[tuple[str, str]]:
    doc = json.loads(proc.stdout)
    return {(f["path"], f["kind"]) for f in doc["details"]["findings"]}


def _head(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", rev).stdout.strip()


@pytest.fixture
def pushed(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    """A repository whose baseline (policy and trust file included) is on a bare remote, with
    catalytic's native hooks installed afterwards."""
    repo = make_repo(BASE, policy=POLICY)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "fetch", "-q", "origin")
    assert catalytic("install", cwd=repo).returncode == 0
    return repo, remote


def _remote_main(remote: Path) -> str:
    return git(remote, "rev-parse", "refs/heads/main").stdout.strip()


# -- 1. policy and trust come from the base ---------------------------------------------------


def test_a_commit_that_widens_its_own_policy_is_refused(pushed: tuple[Path, Path]) -> None:
    repo, _ = pushed
    head = _head(repo)
    (repo / ".catalytic.toml").write_text(POLICY.replace('["outputs"]', '["outputs", "data"]'))
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "add", "-A")
    proc = git(repo, "commit", "-m", "widen and mutate", check=False)
    assert proc.returncode != 0
    assert "data/x.csv: protected path changed outside durable roots" in proc.stderr
    assert ".catalytic.toml: policy changed (.catalytic.toml)" in proc.stderr
    assert _head(repo) == head


def test_an_unstaged_policy_edit_does_not_change_the_judge(pushed: tuple[Path, Path]) -> None:
    repo, _ = pushed
    (repo / ".catalytic.toml").write_text('durable_roots = ["."]\n')  # never staged
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "add", "data/x.csv")
    proc = git(repo, "commit", "-m", "mutate", check=False)
    assert proc.returncode != 0
    assert "data/x.csv: protected path changed outside durable roots" in proc.stderr
    check = catalytic("check", "--staged", "--json", cwd=repo)
    assert check.returncode == 1 and ("data/x.csv", "mutation") in _findings(check)


def test_the_pushed_tip_does_not_judge_itself(pushed: tuple[Path, Path]) -> None:
    repo, remote = pushed
    base = _head(repo)
    (repo / ".catalytic.toml").write_text('durable_roots = ["."]\n')
    (repo / "data/x.csv").write_text("forged\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "judge yourself")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and _remote_main(remote) == base
    assert "data/x.csv: protected path changed outside durable roots" in push.stderr
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1
    assert {("data/x.csv", "mutation"), (".catalytic.toml", "policy")} <= _findings(ci)


def test_a_push_cannot_trust_its_own_signer(pushed: tuple[Path, Path]) -> None:
    repo, remote = pushed
    base = _head(repo)
    mallory = signer_from_seed(SEED_B)
    with (repo / ".catalytic/allowed_validators").open("a") as fh:
        fh.write(f"mallory id:{mallory.validator_id}\n")
    make_bundle(repo / "_runs/r1", repo, {"outputs/model.bin": b"backdoor\n"}, seed=SEED_B)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "trust me")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and _remote_main(remote) == base
    assert ".catalytic/allowed_validators: trusted-validators file changed" in push.stderr
    assert "_runs/r1: run bundle is valid but untrusted" in push.stderr
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert {("_runs/r1", "bundle"), (".catalytic/allowed_validators", "policy")} <= _findings(ci)


def test_a_bundle_signed_by_a_base_trusted_key_passes(pushed: tuple[Path, Path]) -> None:
    repo, remote = pushed
    make_bundle(repo / "_runs/r1", repo, {"outputs/model.bin": b"model\n"}, seed=SEED_A)
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "run", check=False).returncode == 0
    push = git(repo, "push", "-q", "origin", "main", check=False)
    assert push.returncode == 0, push.stderr
    assert _remote_main(remote) == _head(repo)


def test_pyproject_is_policy_only_in_its_catalytic_table(make_repo) -> None:
    pyproject = (
        '[project]\nname = "x"\nversion = "1"\n\n[tool.catalytic]\nprotected_roots = ["data"]\n'
    )
    repo = make_repo({"pyproject.toml": pyproject, "data/x.csv": "1\n"})
    assert catalytic("install", "-t", "pre-commit", cwd=repo).returncode == 0
    (repo / "pyproject.toml").write_text(pyproject.replace('version = "1"', 'version = "2"'))
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "bump", check=False).returncode == 0
    (repo / "pyproject.toml").write_text(pyproject.replace('["data"]', '["src"]'))
    git(repo, "add", "-A")
    proc = git(repo, "commit", "-m", "unprotect data", check=False)
    assert proc.returncode != 0
    assert "pyproject.toml: policy changed (pyproject.toml [tool.catalytic])" in proc.stderr


@pytest.mark.parametrize(
    "hide", ['exclusions = [".catalytic.toml"]', 'durable_roots = [".catalytic.toml"]']
)
def test_no_root_hides_a_policy_change(make_repo, hide: str) -> None:
    repo = make_repo({"a.txt": "a"}, policy=hide + "\n")
    (repo / ".catalytic.toml").write_text(hide + '\nprotected_roots = ["nothing"]\n')
    git(repo, "add", "-A")
    proc = catalytic("check", "--staged", "--json", cwd=repo)
    assert proc.returncode == 1
    assert _findings(proc) == {(".catalytic.toml", "policy")}


@pytest.mark.parametrize(
    "policy",
    [
        'durable_roots = [".catalytic"]\n',
        'tmp_roots = [".catalytic"]\n',
        'exclusions = [".catalytic/allowed_validators"]\n',
        'durable_roots = ["outputs"]\ntrusted_validators = "outputs/trust"\n',
    ],
    ids=["durable", "tmp", "excluded", "named-under-durable"],
)
def test_a_trust_file_that_runs_could_write_is_a_config_error(make_repo, policy: str) -> None:
    repo = make_repo({"a.txt": "a"}, policy=policy)
    proc = catalytic("check", "--staged", "--json", cwd=repo)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CONFIG_INVALID" and "trusted-validators file" in doc["message"]


# -- 3. merges are judged against git's own merge -----------------------------------------------


@pytest.fixture
def legacy(pushed: tuple[Path, Path]) -> tuple[Path, str]:
    """Two lines of history from before adoption (pushed with --no-verify): `legacy` still has
    data/x.csv at 1, main moved it to 2 and added data/y.csv."""
    repo, _ = pushed
    git(repo, "checkout", "-q", "-b", "legacy")
    write_files(repo, {"outputs/legacy.txt": "l\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "legacy work")
    git(repo, "checkout", "-q", "main")
    write_files(repo, {"data/x.csv": "2\n", "data/y.csv": "y\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "main moves on")
    git(repo, "push", "-q", "--no-verify", "origin", "main", "legacy")
    return repo, _head(repo)


def test_a_hand_made_merge_that_reverts_a_protected_file_is_caught(
    legacy: tuple[Path, str],
) -> None:
    repo, base = legacy
    # "Merge" legacy but keep its old data: the tree matches one parent on every path.
    git(repo, "merge", "-q", "--no-commit", "-s", "ours", "legacy")
    git(repo, "checkout", "legacy", "--", "data/x.csv")
    git(repo, "rm", "-q", "data/y.csv")
    git(repo, "commit", "-q", "--no-verify", "-m", "merge legacy")
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1
    assert _findings(ci) == {("data/x.csv", "mutation"), ("data/y.csv", "mutation")}
    reasons = {f["reason"] for f in json.loads(ci.stdout)["details"]["findings"]}
    assert "protected path removed outside durable roots (vs git's merge of the parents)" in reasons
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and "data/x.csv" in push.stderr


def test_an_honest_merge_passes(legacy: tuple[Path, str]) -> None:
    repo, base = legacy
    git(repo, "merge", "-q", "--no-edit", "--no-verify", "legacy")
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 0, ci.stdout


def test_a_conflicted_protected_path_is_a_finding(legacy: tuple[Path, str]) -> None:
    repo, _ = legacy
    git(repo, "checkout", "-q", "legacy")
    (repo / "data/x.csv").write_text("3\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "legacy edits too")
    git(repo, "push", "-q", "--no-verify", "origin", "legacy")
    base = _head(repo)
    git(repo, "merge", "-q", "--no-verify", "main", check=False)  # conflicts in data/x.csv
    (repo / "data/x.csv").write_text("3\n")  # resolved as legacy's side
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "--no-edit")
    merge = _head(repo)
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert ci.returncode == 1
    findings = json.loads(ci.stdout)["details"]["findings"]
    assert [(f["path"], f["reason"]) for f in findings if f["commit"] == merge] == [
        ("data/x.csv", "protected path conflicted in git's merge of the parents")
    ]


# -- 7. a pushed chronicle extends the base's ------------------------------------------------------


@pytest.fixture
def chronicled(pushed: tuple[Path, Path]) -> tuple[Path, Path, str]:
    repo, remote = pushed
    path = repo / ".catalytic/chronicle.jsonl"
    for n in range(3):
        append(path, "test", {"n": n})
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "chronicle", check=False).returncode == 0
    git(repo, "push", "-q", "origin", "main")
    return repo, remote, _head(repo)


def test_an_appended_chronicle_passes(chronicled: tuple[Path, Path, str]) -> None:
    repo, remote, _ = chronicled
    append(repo / ".catalytic/chronicle.jsonl", "test", {"n": 3})
    git(repo, "commit", "-q", "-am", "one more record")
    push = git(repo, "push", "-q", "origin", "main", check=False)
    assert push.returncode == 0, push.stderr
    assert _remote_main(remote) == _head(repo)


@pytest.mark.parametrize("how", ["drop-last", "edit-first", "rechain", "delete"])
def test_a_rewritten_chronicle_is_refused(chronicled: tuple[Path, Path, str], how: str) -> None:
    repo, remote, base = chronicled
    path = repo / ".catalytic/chronicle.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    if how == "drop-last":
        path.write_bytes(b"".join(lines[:-1]))
    elif how == "edit-first":
        path.write_bytes(lines[0].replace(b'"n":0', b'"n":9') + b"".join(lines[1:]))
    elif how == "rechain":
        # A whole new, internally valid chain: only the byte-for-byte rule catches it.
        path.unlink()
        (repo / ".catalytic/chronicle.jsonl.head").unlink()
        append(path, "test", {"n": "rewritten"})
    else:
        path.unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "tidy the chronicle")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and _remote_main(remote) == base
    ci = catalytic("check", "--from-ref", base, "--to-ref", "HEAD", "--json", cwd=repo)
    assert (".catalytic/chronicle.jsonl", "chronicle") in _findings(ci)


# -- 10. the push check covers every bundle under the run roots ---------------------------------


@pytest.mark.parametrize("where", ["_runs/.hidden", "_runs/team/nightly/r7", "_runs"])
def test_a_forged_bundle_anywhere_under_a_run_root_is_verified(
    pushed: tuple[Path, Path], where: str
) -> None:
    repo, remote = pushed
    base = _head(repo)
    run = make_bundle(repo / where, repo, {"outputs/m.bin": b"m\n"})  # "_runs": the root itself
    (repo / "outputs/m.bin").write_bytes(b"swapped after signing\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "forged")
    push = git(repo, "push", "origin", "main", check=False)
    assert push.returncode != 0 and _remote_main(remote) == base
    rel = run.relative_to(repo).as_posix()
    assert f"{rel}: run bundle rejected: HASH_MISMATCH" in push.stderr


def test_a_bundle_re_signed_after_an_earlier_commit_touched_it_is_verified_as_it_lands(
    tmp_path: Path,
) -> None:
    """The server verified a changed bundle at the commit of whichever of its paths was first
    changed last: C1 changes only modes and adds `_runs/r1/zzz` (the bundle still alice's, who
    is trusted), C2 gives it new outputs and re-signs it with mallory's untrusted key. The
    bundle was verified at C1 and the push accepted; the same change in one commit was refused.
    It must be verified as it lands: at C2."""
    import hashlib

    from .helpers import SEED_B, make_bundle, resign, signer, write_files

    bare, repo = tmp_path / "server.git", tmp_path / "repo"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    write_files(
        repo,
        {
            ".catalytic.toml": 'durable_roots = ["outputs"]\n',
            ".catalytic/allowed_validators": f"alice id:{signer().validator_id}\n",
            "data/x.csv": "1\n",
        },
    )
    make_bundle(repo / "_runs/r1", repo, {"outputs/m.bin": b"measured\n"})  # alice's
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base with alice's bundle")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    assert catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0

    for f in (repo / "_runs/r1").iterdir():
        f.chmod(0o755)  # C1: modes only; the bundle is still alice's, valid and trusted
    (repo / "_runs/r1/zzz").write_text("sorts after every bundle file\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "C1: modes")
    (repo / "outputs/m.bin").write_bytes(b"made up\n")  # C2: other outputs, mallory signs
    digest = hashlib.sha256(b"made up\n").hexdigest()
    (repo / "_runs/r1/OUTPUT_HASHES.json").write_text(
        json.dumps({"hashes": {"outputs/m.bin": f"sha256:{digest}"}})
    )
    resign(repo / "_runs/r1", SEED_B)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "C2: mallory re-signs")
    before = git(bare, "rev-parse", "main").stdout.strip()

    push = git(repo, "push", "origin", "main:refs/heads/attack", check=False)
    assert push.returncode != 0, push.stderr
    assert "_runs/r1: run bundle is valid but untrusted" in push.stderr, push.stderr
    assert "C2: mallory re-signs" in push.stderr  # judged at the commit that re-signed it
    assert git(bare, "rev-parse", "--verify", "-q", "attack", check=False).stdout == ""
    assert git(bare, "rev-parse", "main").stdout.strip() == before


def test_a_committed_package_named_like_the_tool_does_not_run_as_the_hook(make_repo) -> None:
    """The hook runs `python -m catalytic_hooks` in the repository's top, where `-m` puts the
    working directory first on the import path: a `catalytic_hooks/` committed there (outside
    the protected roots, or on a branch someone checks out) ran instead of the tool and passed
    everything."""
    repo = make_repo(
        {
            ".catalytic.toml": 'durable_roots = ["outputs"]\nprotected_roots = ["data"]\n',
            "data/raw.csv": "1\n",
            "catalytic_hooks/__init__.py": "",
            "catalytic_hooks/__main__.py": (
                "import pathlib, sys\n"
                "pathlib.Path(__file__).parent.parent.joinpath('RAN').write_text('x')\n"
                "sys.exit(0)\n"
            ),
        }
    )
    # installed with -P too: the test's own `python -m` in this directory would run the fake
    installed = subprocess.run(
        [sys.executable, "-P", "-m", "catalytic_hooks", "install"], cwd=repo, capture_output=True
    )
    assert installed.returncode == 0 and (repo / ".git/hooks/pre-commit").is_file()
    (repo / "data/raw.csv").write_text("forged\n")
    git(repo, "add", "data/raw.csv")
    commit = git(repo, "commit", "-qm", "forge", check=False)
    assert commit.returncode != 0, commit.stdout + commit.stderr
    assert "data/raw.csv" in commit.stdout + commit.stderr
    assert not (repo / "RAN").exists()
