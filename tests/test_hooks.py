"""Commit and push enforcement with the real tools: git commit, git push to a bare remote,
the pre-commit framework, and `catalytic check` in CI mode."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import DEFAULT_POLICY, ROOT, catalytic, git

POLICY = """\
durable_roots = ["outputs"]
tmp_roots = ["_tmp"]
protected_roots = ["."]
"""
BASE = {
    "data/raw/x.csv": "1,2\n",
    "src/a.py": "a = 1\n",
    "outputs/keep.txt": "k\n",
    ".gitignore": "_tmp/\n",
}


def snapshot(repo: Path) -> tuple[str, dict[str, bytes]]:
    """Index entries (mode, oid, stage, path) and every working-tree file's bytes."""
    index = git(repo, "ls-files", "-s", "--debug").stdout
    files = {}
    for p in sorted(repo.rglob("*")):
        if ".git" in p.relative_to(repo).parts or not p.is_file():
            continue
        files[p.relative_to(repo).as_posix()] = p.read_bytes()
    return index, files


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo(BASE, policy=POLICY)
    assert catalytic("install", cwd=r).returncode == 0
    return r


def commit(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return git(repo, "commit", "-m", "change", *args, check=False, env=env)


def test_protected_change_refused_and_nothing_touched(repo: Path) -> None:
    (repo / "data/raw/x.csv").write_text("1,3\n")
    git(repo, "add", "data/raw/x.csv")
    head = git(repo, "rev-parse", "HEAD").stdout
    before = snapshot(repo)
    proc = commit(repo)
    assert proc.returncode != 0
    assert "data/raw/x.csv: protected path changed outside durable roots" in proc.stderr
    assert "catalytic check --staged --json" in proc.stderr
    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "HEAD").stdout == head


def test_durable_only_commit_succeeds(repo: Path) -> None:
    (repo / "outputs/new.txt").write_text("n")
    (repo / "outputs/keep.txt").write_text("changed")
    git(repo, "add", "-A")
    proc = commit(repo)
    assert proc.returncode == 0, proc.stderr
    assert git(repo, "log", "-1", "--format=%s").stdout.strip() == "change"


def test_ignored_tmp_residue_blocks_until_removed(repo: Path) -> None:
    (repo / "_tmp").mkdir()
    (repo / "_tmp/ckpt.bin").write_bytes(b"\0" * 10)
    (repo / "outputs/r.txt").write_text("r")
    git(repo, "add", "outputs/r.txt")
    assert git(repo, "check-ignore", "_tmp/ckpt.bin").returncode == 0
    proc = commit(repo)
    assert proc.returncode == 1
    assert "_tmp/ckpt.bin: tmp residue left on disk" in proc.stderr
    (repo / "_tmp/ckpt.bin").unlink()
    assert commit(repo).returncode == 0


def test_first_commit_is_judged_by_the_empty_default_policy(make_repo) -> None:
    # No HEAD, so no committed policy: the policy on disk (and in the index) does not judge the
    # commit that introduces it; the default protects everything and has no tmp roots.
    r = make_repo({"a.txt": "a", "_tmp/x": "x"}, policy=POLICY, commit=False)
    assert catalytic("install", cwd=r).returncode == 0
    git(r, "add", "-A")
    git(r, "rm", "-q", "--cached", "a.txt")
    proc = commit(r)
    assert proc.returncode == 1
    assert ".catalytic.toml: protected path added outside durable roots" in proc.stderr
    assert ".catalytic.toml: policy changed (.catalytic.toml)" in proc.stderr
    assert "_tmp/x: protected path added outside durable roots" in proc.stderr
    assert "tmp residue" not in proc.stderr


def test_staged_tmp_file(repo: Path) -> None:
    (repo / "_tmp").mkdir()
    (repo / "_tmp/x").write_text("x")
    git(repo, "add", "-f", "_tmp/x")
    proc = commit(repo)
    assert proc.returncode == 1
    assert "_tmp/x: tmp residue staged in the index" in proc.stderr


def test_check_staged_json(repo: Path) -> None:
    (repo / "src/a.py").unlink()
    os.symlink("x", repo / "src/link")
    git(repo, "add", "-A")
    proc = catalytic("check", "--staged", "--json", cwd=repo)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["code"] == "CHECK_FAILED"
    assert doc["details"]["findings"] == [
        {
            "kind": "mutation",
            "path": "src/a.py",
            "reason": "protected path removed outside durable roots",
        },
        {
            "kind": "mutation",
            "path": "src/link",
            "reason": "protected path added outside durable roots",
        },
    ]


def test_commit_all_sets_git_index_file(repo: Path) -> None:
    (repo / "src/a.py").write_text("a = 2\n")
    before = snapshot(repo)
    proc = commit(repo, "-a")
    assert proc.returncode == 1 and "src/a.py" in proc.stderr
    assert snapshot(repo) == before
    (repo / "src/a.py").write_text("a = 1\n")
    (repo / "outputs/keep.txt").write_text("ok")
    assert commit(repo, "-a").returncode == 0


def test_commit_paths_uses_temporary_index(repo: Path) -> None:
    (repo / "src/a.py").write_text("a = 3\n")
    (repo / "outputs/keep.txt").write_text("only this")
    git(repo, "add", "src/a.py")
    # `git commit <paths>` runs the hook on a temporary index holding only outputs/keep.txt
    assert commit(repo, "outputs/keep.txt").returncode == 0
    assert commit(repo).returncode == 1


def test_linked_worktree(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(wt))
    (wt / "src/a.py").write_text("changed in worktree\n")
    git(wt, "add", "-A")
    proc = commit(wt)
    assert proc.returncode == 1 and "src/a.py" in proc.stderr
    git(wt, "checkout", "--", ".")
    git(wt, "reset", "-q")
    git(wt, "checkout", "--", ".")
    (wt / "outputs/w.txt").write_text("w")
    git(wt, "add", "-A")
    assert commit(wt).returncode == 0


def test_hook_works_without_catalytic_on_path(repo: Path) -> None:
    (repo / "src/a.py").write_text("x\n")
    git(repo, "add", "-A")
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    proc = commit(repo, env=env)
    assert proc.returncode == 1 and "src/a.py" in proc.stderr


def test_invalid_config_fails_closed(repo: Path) -> None:
    # Staged, an invalid policy is a policy change like any other (the base judges it) ...
    (repo / ".catalytic.toml").write_text('durable_roots = ["/abs"]\n')
    git(repo, "add", "-A")
    proc = commit(repo)
    assert proc.returncode == 1
    assert ".catalytic.toml: policy changed" in proc.stderr
    # ... and once committed (with the escape hatch), every later check fails closed on it.
    assert commit(repo, "--no-verify").returncode == 0
    (repo / "outputs/keep.txt").write_text("new\n")
    git(repo, "add", "-A")
    proc = commit(repo)
    assert proc.returncode != 0  # git reports any hook failure as 1; the hook said 2
    assert "CONFIG_INVALID" in proc.stderr and "Traceback" not in proc.stderr


# -- install / uninstall ----------------------------------------------------------------------


def test_install_refuses_foreign_then_chains_and_uninstall_restores(make_repo) -> None:
    r = make_repo(BASE, policy=POLICY)
    hooks = r / ".git/hooks"
    foreign = '#!/bin/sh\necho foreign-ran >> "$(git rev-parse --git-dir)/foreign.log"\nexit 0\n'
    (hooks / "pre-commit").write_text(foreign)
    os.chmod(hooks / "pre-commit", 0o755)
    proc = catalytic("install", "--json", cwd=r)
    assert proc.returncode == 2 and json.loads(proc.stdout)["code"] == "HOOK_EXISTS"
    assert (hooks / "pre-commit").read_text() == foreign
    assert not (hooks / "pre-push").exists()  # nothing written when refused
    assert catalytic("install", "--force", cwd=r).returncode == 0
    assert (hooks / "pre-commit.catalytic-chained").read_text() == foreign
    (r / "outputs/x").write_text("x")
    git(r, "add", "-A")
    assert commit(r).returncode == 0
    assert "foreign-ran" in (r / ".git/foreign.log").read_text()
    assert catalytic("uninstall", cwd=r).returncode == 0
    assert (hooks / "pre-commit").read_text() == foreign
    assert not (hooks / "pre-push").exists()


def test_foreign_chained_hook_failure_blocks(make_repo) -> None:
    r = make_repo(BASE, policy=POLICY)
    (r / ".git/hooks/pre-commit").write_text("#!/bin/sh\necho no >&2\nexit 3\n")
    os.chmod(r / ".git/hooks/pre-commit", 0o755)
    assert catalytic("install", "--force", "-t", "pre-commit", cwd=r).returncode == 0
    (r / "outputs/x").write_text("x")
    git(r, "add", "-A")
    assert commit(r).returncode != 0


def test_install_honours_core_hooks_path_and_uninstall_leaves_foreign(make_repo) -> None:
    r = make_repo(BASE, policy=POLICY)
    git(r, "config", "core.hooksPath", "githooks")
    assert catalytic("install", "-t", "pre-commit", cwd=r).returncode == 0
    assert (r / "githooks/pre-commit").exists()
    assert not (r / ".git/hooks/pre-commit").exists()
    (r / "githooks/pre-push").write_text("#!/bin/sh\nexit 0\n")
    out = json.loads(catalytic("uninstall", "--json", cwd=r).stdout)
    actions = {h["hook"]: h["action"] for h in out["details"]["hooks"]}
    assert actions == {"pre-commit": "removed", "pre-push": "not ours"}
    assert (r / "githooks/pre-push").exists()
    # reinstalling over our own hook is an update, never a refusal
    assert catalytic("install", cwd=r).returncode == 2  # pre-push is foreign now
    assert catalytic("install", "-t", "pre-commit", cwd=r).returncode == 0
    assert catalytic("install", "-t", "pre-commit", cwd=r).returncode == 0


# -- pre-push ---------------------------------------------------------------------------------


@pytest.fixture
def pushable(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    r = make_repo(BASE, policy=POLICY)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(r, "remote", "add", "origin", str(remote))
    git(r, "push", "-q", "origin", "main")
    assert catalytic("install", cwd=r).returncode == 0
    return r, remote


def remote_ref(remote: Path, ref: str) -> str:
    return git(remote, "rev-parse", "--verify", "-q", ref, check=False).stdout.strip()


def bad_branch(r: Path, name: str) -> None:
    git(r, "checkout", "-q", "-b", name, "main")
    (r / "src/a.py").write_text("mutated\n")
    git(r, "commit", "-q", "-am", "mutate protected", "--no-verify")
    (r / "outputs/o.txt").write_text("o")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "clean tip")
    git(r, "checkout", "-q", "main")


def test_push_refuses_bad_second_to_last_commit(pushable: tuple[Path, Path]) -> None:
    r, remote = pushable
    bad_branch(r, "feature")
    proc = git(r, "push", "origin", "feature", check=False)
    assert proc.returncode != 0
    assert re.search(
        r"src/a.py: protected path changed outside durable roots "
        r'\(commit [0-9a-f]{10} "mutate protected"\)',
        proc.stderr,
    )
    assert remote_ref(remote, "refs/heads/feature") == ""
    # existing branch: same bad history fast-forwarded onto main
    git(r, "merge", "-q", "--ff-only", "feature")
    before = remote_ref(remote, "refs/heads/main")
    assert git(r, "push", "origin", "main", check=False).returncode != 0
    assert remote_ref(remote, "refs/heads/main") == before


def test_clean_pushes_new_and_existing_branch_and_delete(pushable: tuple[Path, Path]) -> None:
    r, remote = pushable
    (r / "outputs/n.txt").write_text("n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "durable")
    assert git(r, "push", "-q", "origin", "main", check=False).returncode == 0
    git(r, "checkout", "-q", "-b", "topic")
    (r / "outputs/t.txt").write_text("t")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "topic")
    proc = git(r, "push", "-q", "origin", "topic", check=False)
    assert proc.returncode == 0, proc.stderr
    assert remote_ref(remote, "refs/heads/topic") == git(r, "rev-parse", "HEAD").stdout.strip()
    assert git(r, "push", "-q", "origin", "--delete", "topic", check=False).returncode == 0
    assert remote_ref(remote, "refs/heads/topic") == ""


def test_two_refs_at_once_second_bad(pushable: tuple[Path, Path]) -> None:
    r, remote = pushable
    git(r, "checkout", "-q", "-b", "good")
    (r / "outputs/g.txt").write_text("g")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "good")
    git(r, "checkout", "-q", "main")
    bad_branch(r, "zbad")
    proc = git(r, "push", "origin", "good", "zbad", check=False)
    assert proc.returncode != 0 and "src/a.py" in proc.stderr
    assert remote_ref(remote, "refs/heads/good") == ""
    assert remote_ref(remote, "refs/heads/zbad") == ""


def test_tmp_in_pushed_tree_and_root_commit(make_repo, tmp_path: Path) -> None:
    r = make_repo({"a.txt": "a"}, policy=POLICY)
    remote = tmp_path / "r.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(r, "remote", "add", "origin", str(remote))
    assert catalytic("install", "-t", "pre-push", cwd=r).returncode == 0
    proc = git(r, "push", "origin", "main", check=False)
    assert proc.returncode != 0
    # A root push has no base: the empty default policy judges it, and the root commit is
    # compared with the empty tree, so every file (the policy too) is "added".
    assert "a.txt: protected path added outside durable roots" in proc.stderr
    assert ".catalytic.toml: policy changed" in proc.stderr
    git(r, "push", "-q", "--no-verify", "origin", "main")  # bootstrapping (README)
    (r / "_tmp").mkdir()
    (r / "_tmp/left").write_text("x")
    git(r, "add", "-f", "_tmp/left")
    git(r, "commit", "-q", "--no-verify", "-m", "residue")
    proc = git(r, "push", "origin", "main", check=False)
    assert proc.returncode != 0
    assert "_tmp/left: tmp residue in the pushed tree" in proc.stderr


def test_merge_judged_only_on_paths_differing_from_every_parent(
    pushable: tuple[Path, Path],
) -> None:
    r, _ = pushable
    base = git(r, "rev-parse", "HEAD").stdout.strip()
    git(r, "checkout", "-q", "-b", "side")
    (r / "src/a.py").write_text("side change\n")
    git(r, "commit", "-q", "-am", "side mutates", "--no-verify")
    git(r, "checkout", "-q", "main")
    (r / "outputs/m.txt").write_text("m")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "main durable")
    git(r, "merge", "-q", "--no-edit", "--no-verify", "side")
    merge = git(r, "rev-parse", "HEAD").stdout.strip()
    doc = json.loads(
        catalytic("check", "--from-ref", base, "--to-ref", merge, "--json", cwd=r).stdout
    )
    commits = {(f["path"], f["subject"]) for f in doc["details"]["findings"]}
    assert commits == {("src/a.py", "side mutates")}  # blamed on the side commit, not the merge
    # an evil merge that changes a path relative to both parents is flagged on the merge
    git(r, "checkout", "-q", "-b", "evil", f"{merge}^1")
    git(r, "merge", "-q", "--no-commit", "side")
    (r / "data/raw/x.csv").write_text("evil\n")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "evil merge", "--no-verify")
    doc = json.loads(
        catalytic("check", "--from-ref", base, "--to-ref", "evil", "--json", cwd=r).stdout
    )
    assert ("data/raw/x.csv", "evil merge") in {
        (f["path"], f["subject"]) for f in doc["details"]["findings"]
    }


def test_check_range_matches_pre_push(pushable: tuple[Path, Path]) -> None:
    r, _ = pushable
    bad_branch(r, "feature")
    main = git(r, "rev-parse", "main").stdout.strip()
    tip = git(r, "rev-parse", "feature").stdout.strip()
    zero = "0" * 40
    hook = catalytic(
        "hook",
        "pre-push",
        "origin",
        "unused-url",
        cwd=r,
        input=f"refs/heads/feature {tip} refs/heads/feature {zero}\n",
    )
    assert hook.returncode == 1
    ci = catalytic("check", "--from-ref", main, "--to-ref", tip, "--json", cwd=r)
    assert ci.returncode == 1
    lines = [
        f'{f["path"]}: {f["reason"]} (commit {f["commit"][:10]} "{f["subject"]}")'
        for f in json.loads(ci.stdout)["details"]["findings"]
    ]
    assert hook.stderr.splitlines()[:-1] == lines
    env = {**os.environ, "PRE_COMMIT_FROM_REF": main, "PRE_COMMIT_TO_REF": tip}
    via_env = catalytic("check", "--json", cwd=r, env=env)
    assert (
        json.loads(via_env.stdout)["details"]["findings"]
        == json.loads(ci.stdout)["details"]["findings"]
    )


def test_pre_push_zero_ids_and_sha256_repository(tmp_path: Path) -> None:
    r = tmp_path / "s256"
    git(tmp_path, "init", "-q", "--object-format=sha256", "-b", "main", str(r))
    (r / ".catalytic.toml").write_text(POLICY)
    (r / "a.txt").write_text("a")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "root")
    tip = git(r, "rev-parse", "HEAD").stdout.strip()
    assert len(tip) == 64
    zero = "0" * 64
    delete = catalytic(
        "hook", "pre-push", "origin", cwd=r, input=f"(delete) {zero} refs/heads/old {tip}\n"
    )
    assert delete.returncode == 0, delete.stderr
    create = catalytic(
        "hook", "pre-push", "origin", cwd=r, input=f"refs/heads/main {tip} refs/heads/main {zero}\n"
    )
    assert create.returncode == 1 and "a.txt: protected path added" in create.stderr
    remote = tmp_path / "s256.git"
    git(tmp_path, "init", "-q", "--bare", "--object-format=sha256", str(remote))
    git(r, "remote", "add", "origin", str(remote))
    git(r, "push", "-q", "--no-verify", "origin", "main")
    assert catalytic("install", "-t", "pre-push", cwd=r).returncode == 0
    (r / "a.txt").write_text("b")
    git(r, "commit", "-q", "-am", "mutate")
    assert git(r, "push", "origin", "main", check=False).returncode != 0


# -- the pre-commit framework -----------------------------------------------------------------


def manifest() -> list[dict[str, object]]:
    return yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())


def test_manifest_shape() -> None:
    hooks = {h["id"]: h for h in manifest()}
    assert set(hooks) == {"catalytic-purity", "catalytic-push-guard"}
    for h in hooks.values():
        assert h["language"] == "python"
        assert h["pass_filenames"] is False and h["always_run"] is True
    assert hooks["catalytic-purity"]["stages"] == ["pre-commit"]
    assert hooks["catalytic-push-guard"]["stages"] == ["pre-push"]


def test_readme_documents_every_hook() -> None:
    readme = (ROOT / "README.md").read_text()
    for h in manifest():
        assert f"`{h['id']}`" in readme, h["id"]


def framework_config(repo: Path) -> None:
    """A `repo: local` config built from the published manifest. The hooks run through the
    real framework; `language` becomes `system` because the test is offline and the framework's
    python install would fetch build tools from an index."""
    hooks = []
    for h in manifest():
        local = {k: v for k, v in h.items() if k != "minimum_pre_commit_version"}
        local["language"] = "system"
        hooks.append(local)
    (repo / ".pre-commit-config.yaml").write_text(
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]})
    )


def pre_commit_cmd(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pre-commit", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )


@pytest.fixture
def framework_repo(make_repo, tmp_path: Path) -> tuple[Path, Path]:
    r = make_repo(BASE, policy=POLICY)
    framework_config(r)
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "config")
    remote = tmp_path / "fw.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(r, "remote", "add", "origin", str(remote))
    git(r, "push", "-q", "origin", "main")  # the baseline, before the hooks exist
    proc = pre_commit_cmd(r, "install", "--hook-type", "pre-commit", "--hook-type", "pre-push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return r, remote


def test_framework_commit_scenarios(framework_repo: tuple[Path, Path]) -> None:
    r, _ = framework_repo
    (r / "src/a.py").write_text("bad\n")
    git(r, "add", "-A")
    before = snapshot(r)
    proc = commit(r)
    assert proc.returncode != 0
    assert "src/a.py: protected path changed" in proc.stdout + proc.stderr
    assert snapshot(r) == before
    git(r, "reset", "-q", "--hard")
    (r / "_tmp").mkdir()
    (r / "_tmp/t").write_text("t")
    (r / "outputs/x.txt").write_text("x")
    git(r, "add", "outputs")
    proc = commit(r)
    assert proc.returncode != 0 and "_tmp/t: tmp residue" in proc.stdout + proc.stderr
    (r / "_tmp/t").unlink()
    proc = commit(r)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the documented escape hatch: SKIP=catalytic-purity, caught again at push time
    (r / "src/a.py").write_text("skipped\n")
    git(r, "add", "-A")
    env = {**os.environ, "SKIP": "catalytic-purity"}
    assert git(r, "commit", "-q", "-m", "skipped", env=env, check=False).returncode == 0


def test_framework_pre_push(framework_repo: tuple[Path, Path]) -> None:
    r, remote = framework_repo
    bad_branch(r, "feature")
    proc = git(r, "push", "origin", "feature", check=False)  # new branch: framework range
    assert proc.returncode != 0
    assert "src/a.py: protected path changed" in proc.stdout + proc.stderr
    assert remote_ref(remote, "refs/heads/feature") == ""
    git(r, "checkout", "-q", "-b", "clean")
    (r / "outputs/c.txt").write_text("c")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "clean")
    proc = git(r, "push", "origin", "clean", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (r / "data/raw/x.csv").write_text("changed\n")
    git(r, "commit", "-q", "-am", "bad on existing", "--no-verify")
    proc = git(r, "push", "origin", "clean", check=False)  # existing branch: from/to refs
    assert proc.returncode != 0 and "data/raw/x.csv" in proc.stdout + proc.stderr


__all__ = ["DEFAULT_POLICY"]


def test_new_branch_pushed_by_url_checks_only_new_commits(
    pushable: tuple[Path, Path], tmp_path: Path
) -> None:
    r, remote = pushable
    git(r, "fetch", "-q", "origin")
    other = tmp_path / "other.git"
    git(tmp_path, "clone", "-q", "--bare", str(remote), str(other))
    git(r, "checkout", "-q", "-b", "by-url")
    (r / "outputs/u.txt").write_text("u")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "clean commit")
    proc = git(r, "push", str(other), "by-url", check=False)
    assert proc.returncode == 0, proc.stderr
    bad_branch(r, "bad-by-url")
    proc = git(r, "push", str(other), "bad-by-url", check=False)
    assert proc.returncode != 0 and "src/a.py" in proc.stderr


def test_framework_push_of_a_root_commit(make_repo, tmp_path: Path) -> None:
    # The framework passes no range for a history that starts with a root commit, only the
    # branch names; the hook then judges the whole history (the bootstrapping case).
    r = make_repo(BASE, policy=POLICY)
    framework_config(r)
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "config", "--no-verify")
    proc = pre_commit_cmd(r, "install", "--hook-type", "pre-push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    remote = tmp_path / "root.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(r, "remote", "add", "origin", str(remote))
    proc = git(r, "push", "origin", "main", check=False)
    assert proc.returncode != 0
    assert "src/a.py: protected path added outside durable roots" in proc.stdout + proc.stderr
    assert remote_ref(remote, "refs/heads/main") == ""
    assert git(r, "push", "-q", "--no-verify", "origin", "main", check=False).returncode == 0
