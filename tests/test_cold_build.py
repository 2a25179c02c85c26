"""A snapshot built from nothing (git.listing: the hashing workers parse pieces of the listing,
hash the files and render the records) gives the records FORMATS.md §1 gives when written out by
hand from git's own objects: in this process or on the worker pool, however the listing is cut,
and whatever the disk says about an entry (modified, missing, a directory, a symlink, a filter's
bytes, all read from the object database instead)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.core.records import Records
from catalytic_hooks.git import listing, snapshot
from catalytic_hooks.git.repo import Repo

from .helpers import DEFAULT_POLICY, catalytic, git

FILES: dict[str, str | bytes] = {
    **{f"src/m{i}.py": f"v{i}\n" for i in range(40)},
    "docs/a b.md": "spaces\n",
    "é/ünïcode.txt": "unicode\n",
    "data/bin.dat": bytes(range(256)) * 64,
    "outputs/o.txt": "durable\n",
    "_tmp/t.txt": "tmp\n",
    ".gitattributes": "*.crlf text eol=crlf\n",
    "x.crlf": "one\ntwo\n",
    "empty": "",
}
NOT_PROTECTED = ("outputs/", "_tmp/", "_runs/", ".catalytic/")


def by_hand(repo: Path) -> list[tuple[str, str]]:
    """docs/FORMATS.md §1 records of the index's protected entries, from `git ls-files -s` and
    `git cat-file`, sharing no code with the package."""
    out = git(repo, "ls-files", "-s", "-z").stdout
    lines, blobs = [], []
    for rec in out.split("\0"):
        if not rec:
            continue
        meta, path = rec.split("\t", 1)
        mode, oid, _ = meta.split(" ")
        if path.startswith(NOT_PROTECTED):
            continue
        if mode == "160000":
            lines.append((path, f"gitlink:{oid}"))
        else:
            blobs.append((path, mode, oid))
    # One `git cat-file --batch` for all blobs (a process per blob took 10 s for 3,000 files).
    batch = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input="".join(f"{oid}\n" for _, _, oid in blobs).encode(),
        check=True,
        capture_output=True,
    ).stdout
    at = 0
    for path, mode, oid in blobs:
        header_end = batch.index(b"\n", at)
        got, kind, size = batch[at:header_end].decode().split(" ")
        assert (got, kind) == (oid, "blob")
        blob = batch[header_end + 1 : header_end + 1 + int(size)]
        at = header_end + 1 + int(size) + 1  # the blob, then a newline
        sha = hashlib.sha256(blob).hexdigest()
        lines.append((path, f"symlink:{sha}" if mode == "120000" else sha))
    return sorted(lines)


def text_of(lines: list[tuple[str, str]]) -> bytes:
    return "".join(f"{p}:{v}\n" for p, v in lines).encode()


def built(repo: Path) -> Records:
    r = Repo.discover(repo)
    return snapshot._full(r, load_policy(repo), snapshot.index_tree(r))


@pytest.fixture
def cut_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool for any listing, pieces of a few bytes (records cut anywhere, most pieces
    holding no whole record), one job in flight per worker, a fetch group every 3 entries."""
    monkeypatch.setattr(listing, "_PIECE", 5)
    monkeypatch.setattr(listing, "_POOL_MIN_BYTES", 0)
    monkeypatch.setattr(listing, "_AHEAD", 1)
    monkeypatch.setattr(snapshot, "CHUNK", 3)


@pytest.fixture
def awkward(make_repo) -> Path:
    """Every way the disk can disagree with the index, and entries of every kind."""
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    (repo / "x.crlf").unlink()
    git(repo, "checkout", "x.crlf")  # written by git's filter this time
    os.symlink("src/m0.py", repo / "link")
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    git(repo, "add", "link")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/sub")
    (repo / "src/m5.py").write_text("staged\n")
    git(repo, "add", "src/m5.py")
    (repo / "src/m1.py").write_text("modified, not staged\n")
    (repo / "src/m2.py").unlink()
    (repo / "src/m3.py").unlink()
    (repo / "src/m3.py").mkdir()
    (repo / "src/m4.py").unlink()
    os.symlink("m0.py", repo / "src/m4.py")
    (repo / "link").unlink()
    (repo / "link").write_text("src/m0.py")  # a file holding a link's target: the same blob
    assert (repo / "x.crlf").read_bytes() == b"one\r\ntwo\r\n"  # the filter's bytes, not the blob's
    return repo


@pytest.mark.parametrize("where", ["in-process", "pool", "one core"])
def test_built_records_are_the_hand_written_ones(
    awkward: Path, where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where != "in-process":
        request.getfixturevalue("cut_small")
    if where == "one core":  # every piece digested here, one at a time
        monkeypatch.setattr(listing, "worker_count", lambda: 1)
    lines = by_hand(awkward)
    want = text_of(lines)
    got = built(awkward)
    assert bytes(got.text) == want
    assert got.digest == hashlib.sha256(want).hexdigest()
    assert list(got.klens) == [len(p.encode()) for p, _ in lines]
    assert list(got.starts) == [0, *(len(text_of(lines[: i + 1])) for i in range(len(lines)))]
    assert b"src/m3.py:" in want and b"vendor/sub:gitlink:" in want  # left-overs were kept


@pytest.mark.usefixtures("cut_small")
@pytest.mark.parametrize("name", [b"bad\nname.py", b"bad\rname.py", b"not-utf8-\xff.py"])
def test_a_path_no_record_can_hold_fails_closed_on_the_pool(make_repo, name: bytes) -> None:
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    with open(os.path.join(os.fsencode(repo), name), "wb") as f:
        f.write(b"x\n")
    git(repo, "add", "-A")
    with pytest.raises(CatalyticError) as info:
        built(repo)
    assert info.value.code.value == "DIGEST_COMPUTATION_FAILED"


def test_the_default_pool_path_through_the_command(make_repo) -> None:
    """Enough files for the worker pool with the shipped thresholds, one of them modified."""
    files: dict[str, str | bytes] = {f"d{i % 25}/f{i}.txt": f"{i}\n" * (i % 7) for i in range(3000)}
    repo = make_repo(files, policy=DEFAULT_POLICY)
    (repo / "d3/f3.txt").write_text("changed on disk\n")
    listed = git(repo, "ls-files", "-s", "-z").stdout
    assert len(listed) > listing._POOL_MIN_BYTES
    want = hashlib.sha256(text_of(by_hand(repo))).hexdigest()
    shutil.rmtree(repo / ".git/catalytic", ignore_errors=True)
    proc = catalytic("digest", "--index", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["details"]["digest"] == want


def test_special_files_standing_for_entries_are_never_opened(
    make_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO, and (as root) a character device, where the index has files: the build takes
    those entries from the object database and never opens the nodes (opening a device can act:
    a tape rewinds, a line hangs up). os.open is wrapped to watch, not replaced."""
    repo = make_repo(FILES, policy=DEFAULT_POLICY)
    (repo / "src/m1.py").unlink()
    os.mkfifo(repo / "src/m1.py")
    specials = [str(repo / "src/m1.py")]
    if os.geteuid() == 0:
        (repo / "src/m2.py").unlink()
        os.mknod(repo / "src/m2.py", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
        specials.append(str(repo / "src/m2.py"))
    opened: list[str] = []
    real_open = os.open

    def watched(path, flags, *a, **kw):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", watched)
    got = built(repo)
    monkeypatch.undo()
    assert bytes(got.text) == text_of(by_hand(repo))
    assert any(p.endswith("src/m0.py") for p in opened)  # the watch sees the files it reads
    assert not set(opened) & set(specials)
