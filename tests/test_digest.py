"""Tree digests over every view: same bytes, same digest; fail closed on what is ambiguous."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pygit2
import pytest

from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.git import hashing
from catalytic_hooks.git.digests import tree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.views import index_view, rev_view, worktree_view

from .helpers import DEFAULT_POLICY, catalytic, git

FILES: dict[str, str | bytes] = {
    "src/a.py": "print('a')\n",
    "src/b.py": "print('b')\n",
    "data/raw/x.csv": "1,2,3\n",
    "data/bin.dat": bytes(range(256)) * 40,
    "README.md": "# hi\n",
    "é/ünïcode.txt": "unicode name\n",
    "outputs/result.txt": "durable\n",
}


def independent_digest(records: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    """docs/FORMATS.md §1 written out by hand, sharing no code with the package."""
    lines = []
    for path, content in records.items():
        lines.append((path, hashlib.sha256(content).hexdigest()))
    for path, target in (links or {}).items():
        lines.append((path, "symlink:" + hashlib.sha256(target.encode()).hexdigest()))
    text = "".join(f"{p}:{h}\n" for p, h in sorted(lines))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_of(cwd: Path, *args: str) -> dict:
    proc = catalytic("digest", "--json", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["details"]


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo(FILES, policy=DEFAULT_POLICY)
    os.symlink("src/a.py", r / "link-to-a")
    os.chmod(r / "src/a.py", 0o755)
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "link")
    return r


def test_same_bytes_same_digest_across_views(repo: Path) -> None:
    views = {
        "rev": digest_of(repo, "--rev", "HEAD"),
        "index": digest_of(repo, "--index"),
        "worktree": digest_of(repo, "--worktree"),
        "dir": digest_of(repo, "--dir", "."),
    }
    digests = {k: v["digest"] for k, v in views.items()}
    assert len(set(digests.values())) == 1, digests
    records = {p: (repo / p).read_bytes() for p in FILES if not p.startswith("outputs/")}
    records[".catalytic.toml"] = (repo / ".catalytic.toml").read_bytes()
    assert digests["dir"] == independent_digest(records, {"link-to-a": "src/a.py"})
    manifest = views["worktree"]["file_manifest"]
    assert "outputs/result.txt" not in manifest
    assert manifest["link-to-a"].startswith("symlink:")
    assert views["worktree"]["file_count"] == len(records) + 1


def test_plain_directory_matches_formula(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    files = {"b.txt": b"bee\n", "a/z.bin": b"\x00\x01", "a/y.txt": b"", "Z": b"upper"}
    for rel, content in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(content)
    out = digest_of(tmp_path, "--dir", str(d))
    assert out["digest"] == independent_digest(files)
    assert out["file_count"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert digest_of(tmp_path, "--dir", str(empty))["digest"] == hashlib.sha256(b"").hexdigest()


def test_fresh_clone_touch_and_chmod_do_not_change_digest(repo: Path, tmp_path: Path) -> None:
    before = digest_of(repo, "--worktree")["digest"]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert digest_of(clone, "--worktree")["digest"] == before
    assert digest_of(clone, "--dir", ".")["digest"] == before
    for p in clone.rglob("*"):
        if ".git" in p.parts or p.is_symlink():
            continue
        os.utime(p, (1_000_000_000, 1_000_000_000))
        if p.is_file():
            os.chmod(p, 0o600)
    assert digest_of(clone, "--worktree")["digest"] == before


def test_digest_changes_only_for_protected_bytes(repo: Path) -> None:
    base = digest_of(repo)["digest"]
    (repo / "outputs/result.txt").write_text("changed durable\n")
    (repo / "_tmp").mkdir()
    (repo / "_tmp/scratch").write_text("scratch")
    assert digest_of(repo)["digest"] == base
    data = bytearray((repo / "data/bin.dat").read_bytes())
    data[5000] ^= 1
    (repo / "data/bin.dat").write_bytes(bytes(data))
    changed = digest_of(repo)["digest"]
    assert changed != base
    assert digest_of(repo, "--index")["digest"] == base  # not staged yet
    git(repo, "add", "data/bin.dat")
    assert digest_of(repo, "--index")["digest"] == changed


def test_untracked_and_ignored_files(repo: Path) -> None:
    base = digest_of(repo)
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "debug.log").write_text("noise")
    (repo / "new.txt").write_text("new")
    wt = digest_of(repo)
    assert "new.txt" in wt["file_manifest"] and "debug.log" not in wt["file_manifest"]
    assert "debug.log" in digest_of(repo, "--ignored")["file_manifest"]
    assert wt["digest"] != base["digest"]


def test_symlink_out_of_repo_is_never_followed(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(str(secret), repo / "escape")
    first = digest_of(repo)
    expected = "symlink:" + hashlib.sha256(str(secret).encode()).hexdigest()
    assert first["file_manifest"]["escape"] == expected
    secret.write_text("changed secret")
    assert digest_of(repo)["digest"] == first["digest"]
    secret.unlink()  # dangling link: still just a link
    assert digest_of(repo)["digest"] == first["digest"]


def test_newline_in_name_fails_closed(repo: Path, tmp_path: Path) -> None:
    (repo / "evil\nname.txt").write_text("x")
    err = tmp_path / "err.json"
    proc = catalytic("digest", "--json", "--error-receipt", str(err), cwd=repo)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["code"] == "DIGEST_COMPUTATION_FAILED"
    receipt = json.loads(err.read_text())
    assert receipt["verdict"] == "ERROR"
    assert receipt["error_code"] == "DIGEST_COMPUTATION_FAILED"
    assert receipt["operation"] == "digest"
    assert set(receipt) == {
        "verdict",
        "error_code",
        "operation",
        "exception_type",
        "exception_message",
        "module_version",
        "module_version_hash",
        "config_snapshot",
    }


def test_unreadable_file_fails_closed(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = repo / "src/secret.py"
    target.write_text("x = 1\n")
    os.chmod(target, 0)
    readable = os.access(target, os.R_OK)  # root reads anything: inject the fault instead
    from catalytic_hooks.cli.main import main

    if readable:
        real_open = os.open

        def failing_open(path, flags, *a, **kw):  # type: ignore[no-untyped-def]
            if os.fspath(path).endswith("src/secret.py"):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(hashing.os, "open", failing_open)
    monkeypatch.chdir(repo)
    err = tmp_path / "err.json"
    code = main(["digest", "--error-receipt", str(err)])
    assert code == 2
    receipt = json.loads(err.read_text())
    assert receipt["error_code"] == "HASH_FAILED"
    assert "src/secret.py" in receipt["exception_message"]


def test_repo_without_commits(make_repo) -> None:
    r = make_repo({"a.txt": "a"}, commit=False)
    assert digest_of(r)["file_count"] == 1
    assert digest_of(r, "--index")["file_count"] == 0
    git(r, "add", "a.txt")
    assert digest_of(r, "--index")["digest"] == digest_of(r)["digest"]
    proc = catalytic("digest", "--rev", "HEAD", "--json", cwd=r)
    assert proc.returncode == 2 and json.loads(proc.stdout)["code"] == "GIT_FAILED"


def test_linked_worktree(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", str(wt), "HEAD")
    assert digest_of(wt)["digest"] == digest_of(repo)["digest"]
    assert digest_of(wt, "--index")["digest"] == digest_of(repo, "--rev", "HEAD")["digest"]


def test_git_environment_is_honoured(repo: Path, tmp_path: Path) -> None:
    alt_index = tmp_path / "alt-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(alt_index)}
    git(repo, "read-tree", "HEAD", env=env)
    (repo / "src/a.py").write_text("changed\n")
    git(repo, "add", "src/a.py", env=env)
    alt = catalytic("digest", "--index", "--json", cwd=repo, env=env)
    normal = digest_of(repo, "--index")
    assert alt.returncode == 0
    assert json.loads(alt.stdout)["details"]["digest"] != normal["digest"]
    assert json.loads(alt.stdout)["details"]["digest"] == digest_of(repo, "--worktree")["digest"]
    env2 = {**os.environ, "GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(repo)}
    via_gitdir = catalytic("digest", "--rev", "HEAD", "--json", cwd=tmp_path, env=env2)
    assert (
        json.loads(via_gitdir.stdout)["details"]["digest"]
        == digest_of(repo, "--rev", "HEAD")["digest"]
    )


def test_pygit2_built_repository(tmp_path: Path) -> None:
    path = tmp_path / "pg"
    r = pygit2.init_repository(str(path), initial_head="main")
    files = {"a.txt": b"alpha\n", "dir/b.bin": b"\x00beta"}
    tb = r.TreeBuilder()
    sub = r.TreeBuilder()
    sub.insert("b.bin", r.create_blob(files["dir/b.bin"]), pygit2.GIT_FILEMODE_BLOB)
    tb.insert("dir", sub.write(), pygit2.GIT_FILEMODE_TREE)
    tb.insert("a.txt", r.create_blob(files["a.txt"]), pygit2.GIT_FILEMODE_BLOB)
    sig = pygit2.Signature("T", "t@example.invalid")
    r.create_commit("HEAD", sig, sig, "pygit2 commit", tb.write(), [])
    out = digest_of(path, "--rev", "HEAD")  # worktree empty: contents come from the odb
    assert out["digest"] == independent_digest(files)
    r.checkout_head(strategy=pygit2.GIT_CHECKOUT_FORCE)
    assert digest_of(path)["digest"] == out["digest"]


def test_submodule_recorded_by_commit(repo: Path, make_repo, tmp_path: Path) -> None:
    sub = make_repo({"s.txt": "sub"}, name="subsrc")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(repo, "commit", "-q", "-m", "sub")
    head = git(sub, "rev-parse", "HEAD").stdout.strip()
    for args in ((), ("--index",), ("--rev", "HEAD")):
        assert digest_of(repo, *args)["file_manifest"]["vendor/sub"] == f"gitlink:{head}"


class Counter:
    def __init__(self) -> None:
        self.disk = 0
        self.odb = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Count content reads (a spy around the real functions, not a replacement)."""
    c = Counter()
    real_disk, real_blob = hashing.hash_disk, Repo.read_blob

    def disk(*a, **kw):  # type: ignore[no-untyped-def]
        c.disk += 1
        return real_disk(*a, **kw)

    def blob(self, oid):  # type: ignore[no-untyped-def]
        c.odb += 1
        return real_blob(self, oid)

    monkeypatch.setattr(hashing, "hash_disk", disk)
    monkeypatch.setattr(Repo, "read_blob", blob)
    return c


def test_warm_cache_reads_no_content(repo: Path, spy: Counter) -> None:
    r = Repo.discover(repo)
    policy = load_policy(repo)
    cold = tree_digest(worktree_view(r), policy, HashCache.for_repo(r))
    assert spy.disk > 0
    spy.disk = spy.odb = 0
    for view in (index_view(r), rev_view(r, "HEAD"), worktree_view(r)):
        assert tree_digest(view, policy, HashCache.for_repo(r)).digest == cold.digest
    assert (spy.disk, spy.odb) == (0, 0)
    (repo / "src/b.py").write_text("print('changed')\n")
    tree_digest(worktree_view(r), policy, HashCache.for_repo(r))
    assert (spy.disk, spy.odb) == (1, 0)  # only the modified file is read


def test_corrupt_cache_is_detected_and_rebuilt(repo: Path, spy: Counter) -> None:
    r = Repo.discover(repo)
    policy = load_policy(repo)
    good = tree_digest(index_view(r), policy, HashCache.for_repo(r)).digest
    cache_file = r.common_dir / "catalytic" / "blob-sha256"
    data = cache_file.read_bytes()
    # Poison one entry but keep the header: the checksum no longer matches.
    head, body = data.split(b"\n", 1)
    poisoned = body.replace(body[41:105], b"0" * 64, 1)
    cache_file.write_bytes(head + b"\n" + poisoned)
    assert tree_digest(index_view(r), policy, HashCache.for_repo(r)).digest == good
    cache_file.write_bytes(data[: len(data) // 2])  # truncated
    assert tree_digest(index_view(r), policy, HashCache.for_repo(r)).digest == good
    assert HashCache.for_repo(r).entries  # rebuilt and saved again


def test_index_view_without_worktree_files_reads_odb(repo: Path, spy: Counter) -> None:
    r = Repo.discover(repo)
    policy = load_policy(repo)
    expected = tree_digest(rev_view(r, "HEAD"), policy, HashCache(None)).digest
    shutil.rmtree(repo / "src")
    spy.odb = 0
    assert tree_digest(rev_view(r, "HEAD"), policy, HashCache(None)).digest == expected
    assert spy.odb == 2


def test_untracked_directory_where_a_tracked_file_was(repo: Path) -> None:
    # git status in its default untracked mode hides this directory; the digest must not.
    (repo / "src/b.py").unlink()
    (repo / "src/b.py").mkdir()
    (repo / "src/b.py/inner.txt").write_text("inner\n")
    for args in ((), ("--dir", ".")):
        manifest = digest_of(repo, *args)["file_manifest"]
        assert "src/b.py/inner.txt" in manifest and "src/b.py" not in manifest
