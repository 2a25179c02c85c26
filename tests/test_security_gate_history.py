"""What a ref update changes beyond the commits it brings: a ref pointed at an old commit must not
bring that commit's policy or trust file back as its judge, and a non-fast-forward update must not
undo a protected change that only a judged commit may make. Real bare repositories with the server
gate, real `git push`, real SSH-signed commits; each test pushes the attack first and asserts
what the server holds afterwards."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    HAVE_SSH_KEYGEN,
    catalytic,
    commit_all,
    gated_server,
    git,
    needs_tool,
    push_unchecked,
)

POLICY = 'durable_roots = ["outputs"]\n'
TRUST = ".catalytic/allowed_validators"
REVERTED = "data/x.csv: protected path changed outside durable roots by a non-fast-forward update"


def _rev(where: Path, rev: str) -> str:
    return git(where, "rev-parse", "--verify", "--quiet", rev, check=False).stdout.strip()


def _serve(repo: Path, tmp_path: Path) -> Path:
    """`repo`'s history as it is, pushed before the gate is installed (so it may hold what the
    gate would refuse now: it stands for history accepted under earlier rules)."""
    return gated_server(repo, tmp_path, head="main")


def _ssh_key(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key, " ".join((directory / f"{name}.pub").read_text().split()[:2])


@needs_tool(HAVE_SSH_KEYGEN, "needs ssh-keygen (OpenSSH)")
def test_a_ref_at_an_old_commit_does_not_bring_a_removed_key_back(
    make_repo, tmp_path: Path
) -> None:
    """mallory's key was in the trust file and was removed. A branch created at a commit from
    before the removal brings nothing new, so it is accepted; an amendment mallory signs on it
    was judged by that commit's trust file, and landed."""
    mallory, mallory_pub = _ssh_key(tmp_path, "mallory")
    _, alice_pub = _ssh_key(tmp_path, "alice")
    trusted = f'mallory namespaces="catalytic,git" {mallory_pub}\n'
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n", TRUST: trusted}, policy=POLICY)
    before_removal = _rev(repo, "HEAD")
    commit_all(repo, {TRUST: f'alice namespaces="catalytic,git" {alice_pub}\n'}, "drop mallory")
    bare = _serve(repo, tmp_path)
    assert push_unchecked(repo, "origin", f"{before_removal}:refs/heads/old").returncode == 0

    git(repo, "checkout", "-q", "-b", "old", before_removal)
    git(repo, "config", "gpg.format", "ssh")
    (repo / "data/x.csv").write_text("forged\n")
    git(
        repo, "commit", "-q", "--no-verify", "-am", "recalibrate", f"--gpg-sign={mallory}",
        "--trailer", "Catalytic-Amend: sensor 3 recalibrated",
    )  # fmt: skip
    push = push_unchecked(repo, "origin", "old")
    assert push.returncode != 0, push.stderr
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert "amendment refused" in push.stderr
    assert _rev(bare, "refs/heads/old") == before_removal
    # The same push as a tag: tags are judged by the default branch's policy too.
    tag = push_unchecked(repo, "origin", "HEAD:refs/tags/v0")
    assert tag.returncode != 0 and _rev(bare, "refs/tags/v0") == ""


def test_a_ref_at_an_old_commit_does_not_bring_a_laxer_policy_back(
    make_repo, tmp_path: Path
) -> None:
    """data was durable and the policy was tightened: a branch at the older commit, pushed onto,
    is judged by the default branch's policy, where data is protected."""
    repo = make_repo({"data/x.csv": "1\n"}, policy='durable_roots = ["outputs", "data"]\n')
    lax = _rev(repo, "HEAD")
    commit_all(repo, {".catalytic.toml": POLICY}, "data is protected from now on")
    bare = _serve(repo, tmp_path)
    assert push_unchecked(repo, "origin", f"{lax}:refs/heads/lax").returncode == 0
    git(repo, "checkout", "-q", "-b", "lax", lax)
    commit_all(repo, {"data/x.csv": "forged\n"}, "durable on lax")
    push = push_unchecked(repo, "origin", "lax")
    assert push.returncode != 0
    assert "remote: data/x.csv: protected path changed outside durable roots" in push.stderr
    assert _rev(bare, "refs/heads/lax") == lax
    # What the default branch's policy allows still lands on it.
    git(repo, "reset", "-q", "--hard", lax)
    tip = commit_all(repo, {"outputs/o.txt": "o\n"}, "an output")
    assert push_unchecked(repo, "origin", "lax").returncode == 0
    assert _rev(bare, "refs/heads/lax") == tip


@pytest.fixture
def amended(make_repo, tmp_path: Path) -> tuple[Path, Path, str, str]:
    """main: a base, then a protected change (an amendment accepted when it landed), then an
    output. The bare server holds it; the repository, the server, the base and the amendment."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    base = _rev(repo, "HEAD")
    amendment = commit_all(repo, {"data/x.csv": "2\n"}, "recalibrated (an accepted amendment)")
    commit_all(repo, {"outputs/o.txt": "p\n"}, "an output")
    return repo, _serve(repo, tmp_path), base, amendment


def test_a_rewind_does_not_undo_a_protected_change(
    amended: tuple[Path, Path, str, str],
) -> None:
    repo, bare, base, _ = amended
    tip = _rev(bare, "main")
    push = push_unchecked(repo, "origin", "--force", f"{base}:main")
    assert push.returncode != 0
    assert f"remote: {REVERTED}" in push.stderr
    assert _rev(bare, "main") == tip
    # A rewind onto another line of history (the amendment dropped by a rewrite) is the same.
    git(repo, "checkout", "-q", "-b", "rewritten", base)
    commit_all(repo, {"outputs/o.txt": "q\n"}, "another output")
    push = push_unchecked(repo, "origin", "--force", "rewritten:main")
    assert push.returncode != 0 and f"remote: {REVERTED}" in push.stderr
    assert _rev(bare, "main") == tip
    # Other refs may be rewound (they could be deleted and created again): what they bring is
    # judged by the default branch's policy, and a backport onto an older line must land.
    assert push_unchecked(repo, "origin", f"{tip}:refs/heads/topic").returncode == 0
    assert push_unchecked(repo, "origin", "--force", f"{base}:refs/heads/topic").returncode == 0


def test_a_rewind_that_only_drops_outputs_or_redoes_the_change_lands(
    amended: tuple[Path, Path, str, str],
) -> None:
    repo, bare, _, amendment = amended
    assert push_unchecked(repo, "origin", "--force", f"{amendment}:main").returncode == 0
    assert _rev(bare, "main") == amendment
    # A rebase onto a moved base keeps the protected change: nothing is undone.
    git(repo, "checkout", "-q", "-b", "topic", amendment)
    commit_all(repo, {"outputs/t.txt": "t\n"}, "topic output")
    assert push_unchecked(repo, "origin", "topic").returncode == 0
    git(repo, "checkout", "-q", "main")
    git(repo, "reset", "-q", "--hard", amendment)
    main = commit_all(repo, {"outputs/m.txt": "m\n"}, "main output")
    assert push_unchecked(repo, "origin", "main").returncode == 0
    git(repo, "checkout", "-q", "topic")
    git(repo, "rebase", "-q", "--no-verify", "main")
    assert _rev(repo, "topic~1") == main
    push = push_unchecked(repo, "origin", "--force", "topic")
    assert push.returncode == 0, push.stderr
    assert _rev(bare, "refs/heads/topic") == _rev(repo, "topic")


def test_the_pre_push_hook_and_ci_refuse_the_rewind_too(
    amended: tuple[Path, Path, str, str], tmp_path: Path
) -> None:
    repo, bare, base, _ = amended
    tip = _rev(bare, "main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "remote", "set-head", "origin", "main")
    assert catalytic("install", "--hook-type", "pre-push", "--force", cwd=repo).returncode == 0
    push = git(repo, "push", "--force", "origin", f"{base}:main", check=False)
    assert push.returncode != 0
    assert REVERTED in push.stderr and "remote:" not in push.stderr  # refused before sending
    assert _rev(bare, "main") == tip
    # CI after a force push to the default branch: the event's `before` is the old tip.
    event = tmp_path / "push.json"
    event.write_text(
        json.dumps(
            {"ref": "refs/heads/main", "before": tip, "repository": {"default_branch": "main"}}
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "GITLAB_"))}
    env.update(CI="true", GITHUB_ACTIONS="true", GITHUB_EVENT_NAME="push")
    env.update(GITHUB_EVENT_PATH=str(event), GITHUB_REF="refs/heads/main")
    git(repo, "checkout", "-q", "--detach", base)
    ci = catalytic("check", "--ci", cwd=repo, env=env)
    assert ci.returncode == 1 and REVERTED in ci.stdout + ci.stderr
    # A range that is not one ref's before and after (a topic behind the default branch, as a
    # pull request or pre-commit's `--from-ref origin/HEAD` gives it) is only what it brings.
    git(repo, "checkout", "-q", "-b", "topic", base)
    commit_all(repo, {"outputs/t.txt": "t\n"}, "topic output")
    behind = catalytic("check", "--from-ref", tip, "--to-ref", "topic", cwd=repo)
    assert behind.returncode == 0, behind.stdout + behind.stderr


def _tree_with(repo: Path, rev: str, name: bytes, blob: str) -> str:
    """`rev`'s root tree plus one entry of any name, written as git's tree format (`git mktree`
    refuses such names: this is what a hand-made pack can carry)."""
    entries = []
    for line in git(repo, "ls-tree", "-z", rev).stdout.split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            mode, _, oid = meta.split()
            entries.append((path.encode(), mode.encode(), bytes.fromhex(oid)))
    entries.append((name, b"100644", bytes.fromhex(blob)))

    def key(e: tuple[bytes, bytes, bytes]) -> bytes:
        return e[0] + (b"/" if e[1] == b"40000" else b"")

    entries.sort(key=key)
    data = b"".join(mode + b" " + path + b"\0" + oid for path, mode, oid in entries)
    return subprocess.run(
        ["git", "hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        cwd=repo, input=data, capture_output=True, check=True,
    ).stdout.decode().strip()  # fmt: skip


def test_a_tree_entry_git_would_not_check_out_never_reaches_the_gate(
    make_repo, tmp_path: Path
) -> None:
    """An entry named `outputs/../data/x.csv` reads as a path under the durable root; `install
    --server` turns on git's own object checks, which refuse it before the gate runs."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    bare = _serve(repo, tmp_path)
    assert git(bare, "config", "receive.fsckObjects").stdout.strip() == "true"
    doctor = catalytic("doctor", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert "receive.fsckObjects" in doctor.stdout
    blob = git(repo, "hash-object", "-w", "--stdin", input="forged\n").stdout.strip()
    tree = _tree_with(repo, "HEAD", b"outputs/../data/x.csv", blob)
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "durable?").stdout.strip()
    tip = _rev(bare, "main")
    push = push_unchecked(repo, "origin", f"{commit}:refs/heads/main")
    assert push.returncode != 0
    assert "fullPathname" in push.stderr or "full pathnames" in push.stderr, push.stderr
    assert _rev(bare, "main") == tip
    assert git(bare, "cat-file", "-e", commit, check=False).returncode != 0
    # With the setting turned off, doctor says so and how to turn it back on.
    git(bare, "config", "receive.fsckObjects", "false")
    doctor = catalytic("doctor", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert doctor.returncode != 0
    assert "receive.fsckObjects" in doctor.stdout and "config receive.fsckObjects true" in (
        doctor.stdout
    )


def test_a_submodule_under_a_run_root_is_refused(make_repo, tmp_path: Path) -> None:
    """A gitlink where a run would be: the run it names lives in another repository, so no
    bundle is ever verified, and whoever updates submodules gets an unverified run."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    bare = _serve(repo, tmp_path)
    tip = _rev(bare, "main")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{tip},_runs/run-1")
    git(repo, "commit", "-q", "--no-verify", "-m", "a run, elsewhere")
    push = push_unchecked(repo, "origin", "main")
    assert push.returncode != 0
    assert "remote: _runs/run-1: a submodule (gitlink) at, under or above a run root" in push.stderr
    assert _rev(bare, "main") == tip


# -- found by a review of the rules above: octopus merges, HEAD naming no branch, criss-cross
# merge bases, backports, a tree bomb under a durable root, nested run roots ------------------

LAX = 'durable_roots = ["outputs", "data"]\n'


def _show(where: Path, rev: str, path: str) -> str:
    return git(where, "show", f"{rev}:{path}", check=False).stdout


def _dangling_head_server(repo: Path, tmp_path: Path) -> Path:
    """`git init --bare` with HEAD on master while the team pushes main (what gated_server in
    tests/helpers.py builds when init.defaultBranch is unset)."""
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(bare, "symbolic-ref", "HEAD", "refs/heads/master")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "origin", "main")
    installed = catalytic("install", "--server", "--git-dir", str(bare), cwd=tmp_path)
    assert installed.returncode == 0
    # install says at once that HEAD leads to no policy, and how to fix it
    assert "warning: HEAD names refs/heads/master, which does not exist" in installed.stdout
    assert "fix: git symbolic-ref HEAD refs/heads/main" in installed.stdout
    return bare


def _push_octopus(repo: Path, bare: Path, old: str) -> subprocess.CompletedProcess[str]:
    """A fast-forward of the server's main: an octopus merge of `old`, main's tip and a side
    commit, whose tree is `old`'s."""
    tip = _rev(bare, "main")
    side = commit_all(repo, {"outputs/s.txt": "s\n"}, "side")
    parents = [arg for p in (old, tip, side) for arg in ("-p", p)]
    octo = git(repo, "commit-tree", f"{old}^{{tree}}", *parents, "-m", "octopus").stdout.strip()
    return push_unchecked(repo, "origin", f"{octo}:refs/heads/main")


def test_an_octopus_fast_forward_undoes_an_amendment(amended) -> None:
    """A fast-forward (old main is a parent), so no rewind check; the octopus's first parent is
    the commit before the amendment and its tree is that commit's: against its first parent
    alone it changed nothing. Against each of its parents it undoes the amendment."""
    repo, bare, base, _ = amended
    push = _push_octopus(repo, bare, base)
    assert push.returncode != 0 and "(octopus merge, vs each of its parents)" in push.stderr
    assert _show(bare, "main", "data/x.csv") == "2\n", "amendment undone by an octopus merge"


def test_an_octopus_fast_forward_brings_back_a_laxer_policy_and_trust_file(
    make_repo, tmp_path: Path
) -> None:
    trust = ".catalytic/allowed_validators"
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n", trust: "old-key\n"}, policy=LAX)
    lax = _rev(repo, "HEAD")
    commit_all(repo, {".catalytic.toml": POLICY, trust: "new-key\n"}, "tighten, rotate keys")
    bare = _serve(repo, tmp_path)
    assert _push_octopus(repo, bare, lax).returncode != 0
    assert _show(bare, "main", ".catalytic.toml") == POLICY, "policy rolled back by an octopus"
    assert _show(bare, "main", trust) == "new-key\n", "trust file rolled back by an octopus"


def test_creating_the_missing_head_branch_at_an_old_commit_takes_over_governance(
    make_repo, tmp_path: Path
) -> None:
    """HEAD names master, which does not exist: creating it at an old commit brought no commit,
    so it was accepted, and HEAD then led to the old policy, which judged every other ref (main
    included). Creating it must start from the newest governed tip."""
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=LAX)
    lax = _rev(repo, "HEAD")
    commit_all(repo, {".catalytic.toml": POLICY}, "data is protected from now on")
    bare = _dangling_head_server(repo, tmp_path)
    commit_all(repo, {"data/x.csv": "forged\n"}, "forged")
    assert push_unchecked(repo, "origin", "main").returncode != 0  # refused, as it should be
    takeover = push_unchecked(repo, "origin", f"{lax}:refs/heads/master")
    assert takeover.returncode != 0 and "must contain the newest governed tip" in takeover.stderr
    assert _rev(bare, "refs/heads/master") == ""
    push_unchecked(repo, "origin", "main")
    assert _show(bare, "main", "data/x.csv") == "1\n", "main judged by master's old policy"
    # Creating it from main's tip forward is how the pointer gets fixed.
    tip = _rev(bare, "main")
    assert push_unchecked(repo, "origin", f"{tip}:refs/heads/master").returncode == 0


def test_a_criss_cross_merge_base_hides_a_rewind(make_repo, tmp_path: Path) -> None:
    """Accepted history (each protected change an amendment): data 1 -> 2 (A1); a topic reverts
    it (R) and is merged (M0); then 2 again (A3). A fresh copy of M0 (same parents X and R, a new
    message) is clean vs git's merge of its parents, and has two merge bases with A3: X and R.
    `git merge-base` returns X (the newer), where data is 2, so rewind_findings counts data as
    changed by the new side, and the push that takes main back to data 1 lands."""

    def at(date: str) -> dict[str, str]:
        return {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}

    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=POLICY)
    a1 = commit_all(repo, {"data/x.csv": "2\n"}, "A1 amendment")
    git(repo, "checkout", "-q", "-b", "revert", a1)
    (repo / "data/x.csv").write_text("1\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "R revert", env=at("2030-01-01T00:00:00"))
    r = _rev(repo, "HEAD")
    git(repo, "checkout", "-q", "main")
    (repo / "outputs/o.txt").write_text("x\n")
    git(repo, "commit", "-q", "--no-verify", "-am", "X output", env=at("2030-01-02T00:00:00"))
    x = _rev(repo, "HEAD")
    git(repo, "merge", "-q", "--no-verify", "--no-edit", "revert")
    commit_all(repo, {"data/x.csv": "2\n"}, "A3 amendment")
    bare = _serve(repo, tmp_path)
    tip = _rev(bare, "main")
    copy = git(
        repo, "commit-tree", "HEAD~1^{tree}", "-p", x, "-p", r, "-m", "M0 again"
    ).stdout.strip()
    assert len(git(repo, "merge-base", "--all", tip, copy).stdout.split()) == 2
    assert git(repo, "merge-base", tip, copy).stdout.strip() == x
    push_unchecked(repo, "origin", "--force", f"{copy}:main")
    assert _show(bare, "main", "data/x.csv") == "2\n", "A3 undone through a criss-cross merge base"
    assert _rev(bare, "main") == tip


def test_retargeting_a_topic_onto_an_older_release_branch_lands(amended) -> None:
    """A backport (`git rebase --onto release main topic`, then a force push) lands: the topic
    then holds what release holds, judged when it landed there. Refused as a rewind, the only
    way out was a signed amendment re-doing what release already holds."""
    repo, bare, base, _ = amended
    git(repo, "checkout", "-q", "-b", "release", base)
    commit_all(repo, {"outputs/r.txt": "r\n"}, "release output")
    assert push_unchecked(repo, "origin", "release").returncode == 0
    git(repo, "checkout", "-q", "-b", "topic", "main")
    commit_all(repo, {"outputs/fix.txt": "fix\n"}, "the fix")
    assert push_unchecked(repo, "origin", "topic").returncode == 0
    git(repo, "rebase", "-q", "--no-verify", "--onto", "release", "main", "topic")
    push = push_unchecked(repo, "origin", "--force", "topic")
    assert push.returncode == 0, push.stderr
    assert _rev(bare, "refs/heads/topic") == _rev(repo, "topic")


def _bomb(repo: Path, n: int) -> str:
    """A tree of n^3 paths from a few KB of objects."""
    blob = git(repo, "hash-object", "-w", "--stdin", input="b\n").stdout.strip()
    entries = "".join(f"100644 blob {blob}\tf{i}\n" for i in range(n))
    t = git(repo, "mktree", input=entries).stdout.strip()
    for _ in range(2):
        t = git(repo, "mktree", input="".join(f"040000 tree {t}\td{i}\n" for i in range(n))).stdout
        t = t.strip()
    return t


def test_a_force_push_past_a_durable_tree_bomb(amended) -> None:
    """A tree bomb under a durable root is accepted in under a second (durable roots are left
    out of the commit diffs); the force push of main that drops it diffed the whole trees (about
    19 s on 2 cores, then CHANGE_TOO_LARGE). The rewind's diffs leave those roots out too."""
    repo, _, _, _ = amended
    tip = _rev(repo, "main")
    git(repo, "read-tree", tip)
    git(repo, "update-index", "--add", "--cacheinfo", f"040000,{_bomb(repo, 127)},outputs/b")
    tree = git(repo, "write-tree").stdout.strip()
    bombed = git(repo, "commit-tree", tree, "-p", tip, "-m", "outputs").stdout.strip()
    assert push_unchecked(repo, "origin", f"{bombed}:refs/heads/main").returncode == 0
    redo = git(repo, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "redo").stdout.strip()
    push = push_unchecked(repo, "origin", "--force", f"{redo}:refs/heads/main")
    assert push.returncode == 0, push.stderr


def test_a_submodule_above_a_nested_run_root_is_refused(make_repo, tmp_path: Path) -> None:
    """run_roots = outputs/runs: a gitlink at `outputs` holds the run root in another repository,
    as a gitlink at `outputs/runs` would; _submodule_runs only looks at and below run roots."""
    policy = 'durable_roots = ["outputs"]\nrun_roots = ["outputs/runs"]\n'
    repo = make_repo({"data/x.csv": "1\n", "outputs/o.txt": "o\n"}, policy=policy)
    _serve(repo, tmp_path)
    tip = _rev(repo, "main")
    git(repo, "rm", "-q", "-r", "--cached", "outputs")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{tip},outputs")
    git(repo, "commit", "-q", "--no-verify", "-m", "outputs (and its runs), elsewhere")
    push = push_unchecked(repo, "origin", "main")
    assert push.returncode != 0, "a gitlink above the run root was accepted"


def test_a_rewind_through_an_alias_or_the_update_hook_is_refused(amended, tmp_path: Path) -> None:
    repo, bare, base, _ = amended
    tip = _rev(bare, "main")
    git(bare, "symbolic-ref", "refs/heads/master", "refs/heads/main")
    p = push_unchecked(repo, "origin", "--force", f"{base}:refs/heads/master")
    assert p.returncode != 0 and _rev(bare, "refs/heads/main") == tip, p.stderr
    p = push_unchecked(repo, "origin", ":refs/heads/master")
    assert p.returncode != 0 and _rev(bare, "refs/heads/main") == tip, p.stderr
    git(bare, "symbolic-ref", "--delete", "refs/heads/master")
    assert catalytic("uninstall", "--server", "--git-dir", str(bare), cwd=tmp_path).returncode == 0
    assert not (bare / "hooks" / "pre-receive").exists()
    installed = catalytic("install", "--hook-type", "update", "--git-dir", str(bare), cwd=tmp_path)
    assert installed.returncode == 0
    p = push_unchecked(repo, "origin", "--force", f"{base}:main")
    assert p.returncode != 0 and "non-fast-forward update" in p.stderr, p.stderr
    assert _rev(bare, "main") == tip
