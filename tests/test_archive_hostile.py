"""Hostile archives (issue 28, item 6): every crafted file of the corpus (tests/archive_corpus.py)
is refused with ARCHIVE_INVALID and the class in `details.reason`, leaves nothing behind and
prints no traceback; and the test says how many the standard library's `extractall` takes."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from catalytic_hooks.archive.create import create_archive
from catalytic_hooks.archive.read import opened_archive
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.pack import write_pack
from catalytic_hooks.git.repo import Repo

from .archive_corpus import corpus
from .helpers import git, make_bundle

# What `zipfile.ZipFile(f).extractall(d)` (Python 3.11.7) did with the corpus when this test was
# written: it accepted (extracted without an error) this many of the crafted files. The test
# measures it again and prints it; the exact count is asserted so a change is noticed.
STDLIB_ACCEPTED = 70


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes, str, Limits | None]]:
    base = tmp_path_factory.mktemp("hostile")
    plain_run = make_bundle(
        base / "plain" / "_runs" / "h1",
        base / "plain",
        {"out/a.txt": b"alpha\n", "out/b.txt": b"beta\n"},
    )
    create_archive(plain_run, base / "plain.zip", project_root=base / "plain")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="T",
        GIT_COMMITTER_NAME="T",
        GIT_AUTHOR_EMAIL="t@e.invalid",
        GIT_COMMITTER_EMAIL="t@e.invalid",
    )
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", env=env)
    (repo / "src.txt").write_text("one\n")
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-qm", "one", env=env)
    first = git(repo, "rev-parse", "HEAD", env=env).stdout.strip()
    (repo / "src.txt").write_text("two\n")
    git(repo, "commit", "-qam", "two", env=env)
    second = git(repo, "rev-parse", "HEAD", env=env).stdout.strip()
    run = make_bundle(
        repo / "_runs" / "g1",
        repo,
        {"out/c.txt": b"gamma\n"},
        task_spec=json.dumps({"task_id": "g1", "git_commit": second}).encode(),
    )
    create_archive(run, base / "git.zip", project_root=repo)
    other = io.BytesIO()
    write_pack(Repo.discover(repo), first, other)
    return corpus(
        (base / "plain.zip").read_bytes(), (base / "git.zip").read_bytes(), other.getvalue()
    )


def test_the_corpus_is_large_and_covers_every_class(cases: list) -> None:
    assert len(cases) >= 40
    reasons = {c[2] for c in cases}
    for cls in (
        "NAME_ABSOLUTE",
        "NAME_TRAVERSAL",
        "NAME_BACKSLASH",
        "NAME_DRIVE",
        "NAME_CONTROL",
        "NAME_NOT_UTF8",
        "NAME_NOT_NFC",
        "NAME_DUPLICATE",
        "NAME_COLLISION",
        "LINK",
        "SPECIAL_FILE",
        "ENCRYPTED",
        "DATA_DESCRIPTOR",
        "OVERLAP",
        "LOCAL_HEADER_MISMATCH",
        "PREPENDED_DATA",
        "GAP",
        "TRAILING_DATA",
        "COMMENT",
        "NOT_IN_MANIFEST",
        "MANIFEST_MISMATCH",
        "TOO_MANY_ENTRIES",
        "ENTRY_TOO_LARGE",
        "TOTAL_TOO_LARGE",
        "RATIO",
        "GIT_OBJECTS",
        "PACK_NOT_CANONICAL",
        "UNSIGNED_ENTRY",
        "TRUNCATED",
        "CRC_MISMATCH",
    ):
        assert cls in reasons, cls


def test_every_hostile_archive_is_refused_and_leaves_nothing(cases: list, tmp_path: Path) -> None:
    wrong = []
    for cid, data, reason, limits in cases:
        path = tmp_path / f"{cid}.zip"
        path.write_bytes(data)
        sandbox = tmp_path / f"sandbox-{cid}"
        sandbox.mkdir()
        try:
            with opened_archive(path, limits or Limits(), parent=sandbox):
                wrong.append((cid, "accepted"))
        except CatalyticError as exc:
            if exc.code is not ErrorCode.ARCHIVE_INVALID or exc.details.get("reason") != reason:
                wrong.append((cid, exc.code.value, exc.details.get("reason"), exc.message))
        assert list(sandbox.iterdir()) == [], cid  # nothing left inside the target
        path.unlink()
    assert wrong == []
    # nothing written outside the targets either (traversal, absolute names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"sandbox-{c[0]}" for c in cases)


def test_the_command_line_refuses_them_without_a_traceback(cases: list, tmp_path: Path) -> None:
    from .helpers import inproc

    # One case of each kind through the whole command (the reader's own test above covers all).
    chosen = {
        "truncated",
        "comment",
        "quoted-overlap",
        "local-crc-differs",
        "symlink",
        "encrypted",
        "traversal",
        "case-collision",
        "ratio-bomb",
        "declared-1-tib",
        "content-differs-from-manifest",
        "crate-edited",
        "pack-of-another-commit",
        "pack-delta-bomb",
        "zip64-torn-extra",
    }
    for cid, data, reason, _ in cases:
        if cid not in chosen:
            continue
        path = tmp_path / f"{cid}.zip"
        path.write_bytes(data)
        got = inproc("verify", str(path), "--json", cwd=tmp_path)
        assert got.returncode == 1, (cid, got.stdout, got.stderr)
        assert "Traceback" not in got.stderr
        row = json.loads(got.stdout)["details"]["results"][0]
        assert (row["code"], row["error_details"]["reason"]) == ("ARCHIVE_INVALID", reason), cid
        path.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_how_many_the_standard_library_would_accept(
    cases: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same files given to `zipfile.ZipFile(f).extractall(d)`; the 100,000-entry one is
    only opened (its 100,000 empty files would be extracted as well)."""
    accepted = []
    for cid, data, _, _ in cases:
        target = tmp_path / cid
        target.mkdir()
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if cid == "100000-entries":
                    assert len(zf.infolist()) == 100_000
                else:
                    zf.extractall(target)
            accepted.append(cid)
        except Exception:
            pass
    with capsys.disabled():
        print(
            f"\nzipfile.extractall accepted {len(accepted)} of {len(cases)} hostile archives "
            f"that catalytic refuses: {', '.join(accepted)}"
        )
    assert len(accepted) == STDLIB_ACCEPTED


def test_archive_list_shows_no_forged_claim(cases: list, tmp_path: Path) -> None:
    """`archive list` prints ARCHIVE.json's claims without verifying them: a signer that is not
    64 hex (a number, terminal escapes) makes the row ARCHIVE_INVALID, never a crash of the
    whole listing or bytes a terminal would act on."""
    from .helpers import inproc

    store = tmp_path / "store"
    store.mkdir()
    forged = {"signer-not-a-string", "signer-with-terminal-escapes", "bundle-root-not-hex"}
    for cid, data, _, _ in cases:
        if cid in forged:
            (store / f"{cid}.zip").write_bytes(data)
    human = inproc("archive", "list", str(store), cwd=tmp_path)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "\x1b" not in human.stdout and "Traceback" not in human.stderr
    assert human.stdout.count("ARCHIVE_INVALID") == 3, human.stdout
    got = inproc("archive", "list", str(store), "--json", cwd=tmp_path)
    rows = json.loads(got.stdout)["details"]["archives"]
    assert sorted(r["archive"] for r in rows) == sorted(f"{c}.zip" for c in forged)
    assert all(r["code"] == "ARCHIVE_INVALID" and r["signer"] is None for r in rows), rows


def test_a_pack_bomb_costs_git_no_memory(cases: list, tmp_path: Path) -> None:
    """The delta bomb declares a 1 GiB object in a few hundred bytes; before the canonical-pack
    check, `git index-pack` allocated and filled that GiB (11 s here) before the archive was
    refused. The whole command, git included, must now stay small: measured as the largest
    resident size of any process below a wrapper (RUSAGE_CHILDREN counts waited-for
    descendants)."""
    import subprocess
    import sys

    data = next(d for cid, d, _, _ in cases if cid == "pack-delta-bomb")
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(data)
    wrapper = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "print(p.stdout)\n"
    )
    cmd = [sys.executable, "-m", "catalytic_hooks", "verify", str(bomb), "--json"]
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, cwd=tmp_path
    ).stdout
    status, _, report = out.partition("\n")
    code, peak_kib = (int(x) for x in status.split())
    row = json.loads(report)["details"]["results"][0]
    assert (code, row["code"], row["error_details"]["reason"]) == (
        1,
        "ARCHIVE_INVALID",
        "PACK_NOT_CANONICAL",
    )
    assert peak_kib < 200 * 1024, f"a process below the command reached {peak_kib} KiB"


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_every_pack_this_tool_writes_is_canonical(tmp_path: Path, object_format: str) -> None:
    """The check before git reads a pack must take every pack `write_pack` makes: both object
    formats (their trailers differ in length), an empty blob, blobs of exactly one and two
    full stored blocks and one byte more, and git then indexes it."""
    from catalytic_hooks.git.pack import import_pack, init_repository, pack_problem

    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", f"--object-format={object_format}", str(repo))
    sizes = [0, 1, 65_535, 65_536, 131_070, 131_071]
    for n in sizes:
        (repo / f"f{n}").write_bytes(bytes(i % 251 for i in range(n)))
    for who in ("user.name=T", "user.email=t@e.invalid"):
        git(repo, "config", *who.split("="))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sizes")
    commit = git(repo, "rev-parse", "HEAD").stdout.strip()
    pack = tmp_path / "p.pack"
    with open(pack, "wb") as out:
        info = write_pack(Repo.discover(repo), commit, out)
    assert info.objects == 2 + len(sizes)  # the commit, its tree, the blobs
    assert pack_problem(pack, object_format) is None
    target = init_repository(tmp_path / "t", object_format, bare=True)
    got = import_pack(target, pack, commit, history=False, problem=lambda r, m: AssertionError(m))
    assert got.objects == info.objects


def test_names_no_bundle_has_are_refused_before_anything_is_written(
    cases: list, tmp_path: Path
) -> None:
    """Entries in the run directory that no signed bundle could hold (here 20 of them, each
    400 directories deep) were only refused after extraction, which had created 8,000
    directories first. The names alone refuse them now: `inspect`, which writes nothing,
    already does."""
    from catalytic_hooks.archive.read import inspect

    data = next(d for cid, d, _, _ in cases if cid == "deep-unsigned-names")
    path = tmp_path / "deep.zip"
    path.write_bytes(data)
    with pytest.raises(CatalyticError) as exc:
        inspect(path, Limits())
    assert (exc.value.code, exc.value.details["reason"]) == (
        ErrorCode.ARCHIVE_INVALID,
        "UNSIGNED_ENTRY",
    )


def test_a_central_directory_declared_huge_costs_no_memory(tmp_path: Path) -> None:
    """A sparse file of 1 GiB (4 KiB on disk) whose end record declares a central directory of
    all of it: read whole before any record was checked, it cost `archive list` 3 GiB of
    memory. Its size is checked against its record count first."""
    import struct
    import subprocess
    import sys

    store = tmp_path / "store"
    store.mkdir()
    size = 1 << 30
    with open(store / "sparse.zip", "wb") as fh:
        fh.truncate(size - 22)
        fh.seek(size - 22)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, size - 22, 0, 0))
    out = tmp_path / "out.json"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "catalytic_hooks", "archive", "list", str(store), "--json"],
            cwd=tmp_path,
            stdout=fh,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0
    rows = json.loads(out.read_text())["details"]["archives"]
    assert [(r["code"], r["message"].split(":")[0]) for r in rows] == [
        ("ARCHIVE_INVALID", "archive refused (CENTRAL_DIRECTORY)")
    ]
    assert usage.ru_maxrss < 256 * 1024  # KiB: the interpreter and the tool, not the GiB


def test_a_disk_that_refuses_the_extraction_is_an_io_error_not_a_bug(tmp_path: Path) -> None:
    """Extraction failing on the disk (full, out of inodes or descriptors) ended as INTERNAL,
    "a bug in catalytic-hooks", and a multi-archive `verify` lost every row. The kernel refuses
    the writes here through RLIMIT_FSIZE (files over 64 bytes: EFBIG), as a full disk would
    refuse them without root and a mount: IO_ERROR, the honest archive's row kept."""
    import errno
    import resource
    import subprocess
    import sys

    project = tmp_path / "p"
    run = make_bundle(project / "_runs" / "h1", project, {"out/a.txt": b"alpha\n" * 100})
    create_archive(run, tmp_path / "a.zip", project_root=project)
    (tmp_path / "cwd").mkdir()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    args = ["verify", str(tmp_path / "a.zip"), "--json", "--allow-untrusted"]
    proc = subprocess.run(
        [sys.executable, "-m", "catalytic_hooks", *args],
        cwd=tmp_path / "cwd",
        preexec_fn=small_files,
        capture_output=True,
        text=True,
    )
    doc = json.loads(proc.stdout)
    assert doc["code"] != "INTERNAL", doc
    row = doc["details"]["results"][0]
    assert (row["code"], row["error_details"]["errno"]) == ("IO_ERROR", errno.EFBIG), row
    assert "Traceback" not in proc.stderr
