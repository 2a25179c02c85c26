"""`archive create`'s quick paths: the Typer-free start (the same options and results as the
Typer command), outputs located by lstat with anything unusual sent down the verifier's own path,
and the streamed entries written by the writing thread with their headers patched in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from catalytic_hooks.archive.create import create_archive
from catalytic_hooks.archive.read import inspect
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.cli.fastpath import ARCHIVE_CREATE_OPTIONS, parse_archive_create
from catalytic_hooks.core.errors import CatalyticError, ErrorCode

from .helpers import archive_command_table, catalytic, imported_by, make_bundle, take_files

MIB = 1 << 20


def test_archive_create_option_table_is_the_typer_commands() -> None:
    table, arguments = archive_command_table("create")
    assert arguments == ["run_dir"]
    assert table == ARCHIVE_CREATE_OPTIONS


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["a", "b"],
        ["-o"],
        ["-oX", "run"],
        ["--bogus", "run"],
        ["--json=yes", "run"],
        ["--", "run"],
    ],
)
def test_anything_unusual_goes_to_typer(argv: list[str]) -> None:
    assert parse_archive_create(argv) is None


def test_the_fast_parser_reads_every_option() -> None:
    args = parse_archive_create(
        ["--json", "_runs/r", "-o", "x.zip", "--history", "--project-root=p"]
    )
    assert args is not None
    assert (args.run_dir, args.output, args.history, args.project_root, args.json_mode) == (
        Path("_runs/r"),
        Path("x.zip"),
        True,
        Path("p"),
        True,
    )


CASES = [
    ["RUN", "-o", "OUT", "--json"],
    ["--output=OUT", "RUN", "--project-root", "."],
    ["RUN", "--json"],  # the default output: ./e1.catalytic.zip outside a repository
    ["RUN", "-o", "EXISTS", "--json"],  # refused: an archive is never overwritten
    ["_runs/missing", "-o", "OUT", "--json"],
    ["RUN", "--bogus"],  # Typer's own usage error, on both paths
]
# Two interpreter starts per case (one of them Typer's): the default run keeps the first.
PARAMS = [
    pytest.param(c, id=" ".join(c), marks=() if i == 0 else pytest.mark.slow)
    for i, c in enumerate(CASES)
]


@pytest.mark.parametrize("argv", PARAMS)
def test_fast_and_typer_paths_agree(tmp_path: Path, argv: list[str]) -> None:
    run = make_bundle(tmp_path / "_runs" / "e1", tmp_path, {"out/a.txt": b"a\n"})
    (tmp_path / "EXISTS").write_bytes(b"not an archive")
    results = []
    for fast in (True, False):
        env = dict(os.environ)
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        names = {"RUN": str(run), "OUT": str(tmp_path / "o.zip"), "--output=OUT": "--output=o.zip"}
        line = [names.get(a, a) for a in argv]
        proc = catalytic("archive", "create", *line, cwd=tmp_path, env=env)
        written = take_files(tmp_path, ("o.zip", "e1.catalytic.zip"))
        results.append((proc.returncode, proc.stdout, proc.stderr, written))
    assert results[0] == results[1]
    assert (tmp_path / "EXISTS").read_bytes() == b"not an archive"
    if argv[-1] == "--json" and argv[0] == "RUN" and "EXISTS" not in argv:
        assert results[0][0] == 0 and results[0][3], results[0]


def test_the_fast_path_imports_no_cli_framework(tmp_path: Path) -> None:
    run = make_bundle(tmp_path / "_runs" / "e1", tmp_path, {"out/a.txt": b"a\n"})
    loaded = imported_by("archive", "create", str(run), "-o", str(tmp_path / "a.zip"), cwd=tmp_path)
    for heavy in ("typer", "rich", "click"):
        assert heavy not in loaded, heavy


def test_streamed_and_whole_entries_are_the_same_canonical_bytes(tmp_path: Path) -> None:
    """Entries above, at and below the read size (1 MiB): the large ones stream through the
    writing thread with their headers patched in order; both archives are the same bytes, the
    strict reader accepts them and every entry holds its output's bytes."""
    outputs = {
        "out/big.bin": bytes(range(256)) * (5 * MIB // 512),  # 2.5 MiB
        "out/exact.bin": b"\x01" * MIB,
        "out/empty.txt": b"",
        "out/small.txt": b"small\n",
    }
    outputs.update({f"out/many/{i:04d}.txt": f"{i}\n".encode() * 40 for i in range(600)})
    run = make_bundle(tmp_path / "_runs" / "s1", tmp_path, outputs)
    one, two = tmp_path / "one.zip", tmp_path / "two.zip"
    create_archive(run, one, project_root=tmp_path)
    create_archive(run, two, project_root=tmp_path)
    assert one.read_bytes() == two.read_bytes()
    doc, digest, size = inspect(one, Limits())
    assert size == one.stat().st_size
    import hashlib

    assert digest == hashlib.sha256(one.read_bytes()).hexdigest()
    by_hash = {hashlib.sha256(d).hexdigest(): d for d in outputs.values()}
    with zipfile.ZipFile(one) as zf:
        stored = {
            i.filename.rsplit("/", 2)[-2] + i.filename.rsplit("/", 1)[-1]: zf.read(i)
            for i in zf.infolist()
            if "/objects/sha256/" in i.filename
        }
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert stored == by_hash
    assert {e["name"] for e in doc["entries"]} >= {
        f"data/runs/s1/objects/sha256/{h[:2]}/{h[2:]}" for h in by_hash
    }


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "linked-parent"])
def test_an_output_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """What the lstat does not find to be a plain regular file takes the verifier's own open,
    so the refusal and its message are the verifier's; nothing is written."""
    run = make_bundle(
        tmp_path / "_runs" / "n1", tmp_path, {"out/a.txt": b"a\n", "out/sub/b.txt": b"b\n"}
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_bytes(b"a\n")
    (elsewhere / "b.txt").write_bytes(b"b\n")
    if kind == "symlink":
        (tmp_path / "out/a.txt").unlink()
        (tmp_path / "out/a.txt").symlink_to(elsewhere / "a.txt")
    elif kind == "fifo":
        (tmp_path / "out/a.txt").unlink()
        os.mkfifo(tmp_path / "out/a.txt")
    elif kind == "directory":
        (tmp_path / "out/a.txt").unlink()
        (tmp_path / "out/a.txt").mkdir()
    else:
        (tmp_path / "out/sub/b.txt").unlink()
        (tmp_path / "out/sub").rmdir()
        (tmp_path / "out/sub").symlink_to(elsewhere)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "bad.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.OUTPUT_MISSING
    assert "not a regular file" in err.value.message
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_a_missing_output_is_refused(tmp_path: Path) -> None:
    run = make_bundle(tmp_path / "_runs" / "m1", tmp_path, {"out/a.txt": b"a\n"})
    (tmp_path / "out/a.txt").unlink()
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "bad.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.OUTPUT_MISSING
    assert err.value.message.endswith("is missing")
    assert not (tmp_path / "bad.zip").exists()


@pytest.mark.parametrize(
    "extra",
    ["conftest.py", "notes/README.md", "objects/sha256/00/" + "0" * 62, "RESTORE_UNDO.json"],
)
def test_a_file_the_signature_does_not_cover_is_not_carried(tmp_path: Path, extra: str) -> None:
    """Only what the bundle's signature covers (or what checks itself) travels: a file beside
    the artifacts, a content-store blob no output names, a receipt STATUS does not name."""
    run = make_bundle(tmp_path / "_runs" / "x1", tmp_path, {"out/a.txt": b"a\n"})
    (run / extra).parent.mkdir(parents=True, exist_ok=True)
    (run / extra).write_bytes(b"print('not signed')\n")
    proc = catalytic("archive", "create", str(run), "--json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["code"], doc["details"]["artifact"]) == (
        1,
        "ARTIFACT_EXTRA",
        extra,
    ), proc.stdout + proc.stderr
    assert not (tmp_path / "x1.catalytic.zip").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".zip", ".tmp"))] == []


def test_a_declared_lock_file_travels_and_its_bytes_are_checked(tmp_path: Path) -> None:
    """A lock file TASK_SPEC declares travels in the content store under its hash (the
    signature covers it through TASK_SPEC); its bytes are checked against that hash by the
    writer and by the reader, since bundle verification never reads them."""
    import hashlib

    from catalytic_hooks.archive.read import opened_archive

    from .archive_corpus import bag_files, repack

    lock = b"tinylib==1.0 --hash=sha256:" + b"a" * 64 + b"\n"
    ref = hashlib.sha256(lock).hexdigest()
    spec = {"task_id": "k1", "environment": {"lock_files": {"requirements.lock": f"sha256:{ref}"}}}
    run = make_bundle(
        tmp_path / "_runs" / "k1",
        tmp_path,
        {"out/a.txt": b"a\n"},
        task_spec=json.dumps(spec).encode(),
    )
    stored = run / "objects/sha256" / ref[:2] / ref[2:]
    stored.parent.mkdir(parents=True)
    stored.write_bytes(lock)
    create_archive(run, tmp_path / "k1.zip", project_root=tmp_path)
    with opened_archive(tmp_path / "k1.zip", Limits(), parent=tmp_path) as (opened, _):
        assert (opened.run_dir / stored.relative_to(run)).read_bytes() == lock

    # other bytes under the lock file's name: the reader refuses them, even in a consistent repack
    run_id, files = bag_files((tmp_path / "k1.zip").read_bytes())
    name = f"data/runs/k1/objects/sha256/{ref[:2]}/{ref[2:]}"
    (tmp_path / "forged.zip").write_bytes(repack({**files, name: b"evil==6.6.6\n"}, run_id))
    with (
        pytest.raises(CatalyticError) as err,
        opened_archive(tmp_path / "forged.zip", Limits(), parent=tmp_path),
    ):
        pass
    assert (err.value.code, err.value.details["reason"]) == (
        ErrorCode.ARCHIVE_INVALID,
        "UNSIGNED_ENTRY",
    )
    # and the writer will not carry them
    stored.write_bytes(b"evil==6.6.6\n")
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "k2.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.HASH_MISMATCH
    assert not (tmp_path / "k2.zip").exists()


def test_a_run_directory_renamed_from_its_recorded_run_id_is_refused(tmp_path: Path) -> None:
    run = make_bundle(
        tmp_path / "_runs" / "release-1",
        tmp_path,
        {"out/a.txt": b"a\n"},
        status={"status": "success", "cmp01": "pass", "run_id": "draft-7"},
    )
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "r.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.RUN_ID_MISMATCH  # found by the verification it starts with
    assert "records run id 'draft-7', not 'release-1'" in err.value.message
    assert not (tmp_path / "r.zip").exists()


def test_the_json_document_names_the_archive(tmp_path: Path) -> None:
    run = make_bundle(tmp_path / "_runs" / "j1", tmp_path, {"out/a.txt": b"a\n"})
    proc = catalytic("archive", "create", str(run), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["details"]["archive"] == str(tmp_path / "j1.catalytic.zip")
    assert (tmp_path / "j1.catalytic.zip").is_file()


@pytest.mark.parametrize("change", ["symlink", "removed"])
def test_an_output_changed_between_locating_and_writing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """An output swapped for a link, or removed, after verification located it and before its
    bytes are read: a stable code, never an internal error, and no archive. The swap is
    injected by wrapping the step between the two passes (`_sources`): a concurrent writer
    cannot otherwise be made to act in that window deterministically."""
    import catalytic_hooks.archive.create as create

    run = make_bundle(tmp_path / "_runs" / "w1", tmp_path, {"out/a.txt": b"a\n" * 100})
    real = create._sources

    def then_change(*args: object, **kwargs: object) -> object:
        got = real(*args, **kwargs)  # type: ignore[arg-type]
        (tmp_path / "out/a.txt").unlink()
        if change == "symlink":
            (tmp_path / "elsewhere.txt").write_bytes(b"a\n" * 100)
            (tmp_path / "out/a.txt").symlink_to(tmp_path / "elsewhere.txt")
        return got

    monkeypatch.setattr(create, "_sources", then_change)
    with pytest.raises(CatalyticError) as err:
        create_archive(run, tmp_path / "bad.zip", project_root=tmp_path)
    assert err.value.code is ErrorCode.OUTPUT_MISSING
    assert "changed while it was archived" in err.value.message
    assert not (tmp_path / "bad.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _many_outputs() -> dict[str, bytes]:
    """Enough files for two writers (512 or more), of mixed sizes: empty, small, exactly one
    read (1 MiB) and streamed (2.5 MiB), so both halves get both kinds wherever the split
    falls (the content store orders them by hash)."""
    outputs = {f"out/many/{i:04d}.txt": f"{i}\n".encode() * (1 + i % 97) for i in range(600)}
    outputs.update({f"out/big{i}.bin": bytes([i]) * (5 * MIB // 2) for i in range(2)})
    outputs.update({f"out/exact{i}.bin": bytes([i + 8]) * MIB for i in range(2)})
    outputs["out/empty.txt"] = b""
    return outputs


def _two_cpus() -> None:
    """Two writers need two CPUs. CI has two, so there a missing one fails the test; on a
    one-CPU machine elsewhere it is skipped with the reason (it could not test anything)."""
    if len(os.sched_getaffinity(0)) >= 2:
        return
    if os.environ.get("CI"):
        pytest.fail("CI: two writers need two CPUs; this runner has one")
    pytest.skip("one CPU: archive create uses one writer here, so there is no second to test")


def test_two_writers_write_exactly_the_bytes_of_one(tmp_path: Path) -> None:
    """With 512 files or more on two cores, a forked second writer writes the second half of
    the payload at its planned offsets: the archive is byte for byte the one-writer archive."""
    _two_cpus()
    run = make_bundle(tmp_path / "_runs" / "t1", tmp_path, _many_outputs())
    made = {}
    for writers, env in ((2, dict(os.environ)), (1, {**os.environ, "CATALYTIC_ONE_WRITER": "1"})):
        out = tmp_path / f"w{writers}.zip"
        proc = catalytic(
            "archive", "create", str(run), "-o", str(out), "--json", cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["details"]["writers"] == writers
        made[writers] = out.read_bytes()
    assert made[2] == made[1]
    doc, _, size = inspect(tmp_path / "w2.zip", Limits())
    assert size == len(made[2]) and len(doc["entries"]) > 600
    with zipfile.ZipFile(tmp_path / "w2.zip") as zf:
        assert zf.testzip() is None  # every entry's CRC-32, as the standard library checks it


@pytest.mark.parametrize("half", ["first", "second"])
def test_a_tampered_output_in_either_half_fails_and_leaves_nothing(
    tmp_path: Path, half: str
) -> None:
    """The output whose stored copy comes first (or last) in the archive changed after the run
    (same size, other bytes): the writer of that half refuses it, the other writer is stopped,
    and neither the archive nor its temporary file is left."""
    import hashlib

    _two_cpus()
    outputs = _many_outputs()
    run = make_bundle(tmp_path / "_runs" / "t2", tmp_path, outputs)
    by_hash = sorted((hashlib.sha256(d).hexdigest(), k) for k, d in outputs.items())
    key = by_hash[0][1] if half == "first" else by_hash[-1][1]
    target = tmp_path / key
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    target.write_bytes(bytes(data))
    dest = tmp_path / "archives"
    dest.mkdir()
    proc = catalytic(
        "archive", "create", str(run), "-o", str(dest / "t2.zip"), "--json", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "HASH_MISMATCH"
    assert doc["details"]["path"] == str(target)
    assert "Traceback" not in proc.stderr
    assert list(dest.iterdir()) == []


def test_the_crate_is_canonical_json_whatever_the_names() -> None:
    """The crate's File entities and id lists are rendered directly, not through json.dumps:
    parsed and rendered again by canonical_bytes, the crate must be the same bytes, for names
    that need escaping, outputs sharing one stored file (alternateName) and none at all."""
    from catalytic_hooks.archive.crate import render_crate
    from catalytic_hooks.core.canonical import canonical_bytes

    same = "sha256:" + "ab" * 32
    hashes = {
        'out/quote"and\\back.txt': "sha256:" + "01" * 32,
        "out/ünï cödé ✓.txt": same,
        "out/copy of it.txt": same,
        "out/tab\there.txt": "sha256:" + "02" * 32,
        "out/€/nested/deep.bin": "sha256:" + "03" * 32,
    }
    for outputs in (hashes, {}):
        crate = render_crate(
            run_id="r-1",
            task_spec={"command": ["python", "job.py", '--x="1"']},
            status={"status": "success", "cmp01": "pass", "finished_at": "2026-12-01T00:00:00Z"},
            hashes=outputs,
            sizes={k: 7 for k in outputs},
            validator_id="cd" * 32,
            commit="ef" * 20,
            store_paths={
                k: f"runs/r-1/objects/sha256/{h[7:9]}/{h[9:]}" for k, h in outputs.items()
            },
        )
        assert canonical_bytes(json.loads(crate)) == crate
    crate = render_crate(
        run_id="r-1",
        task_spec={"command": ["python"]},
        status={},
        hashes=hashes,
        sizes={k: 7 for k in hashes},
        validator_id="cd" * 32,
        commit=None,
        store_paths={k: f"runs/r-1/objects/sha256/{h[7:9]}/{h[9:]}" for k, h in hashes.items()},
    )
    files = [e for e in json.loads(crate)["@graph"] if e["@type"] == "File"]
    shared = next(f for f in files if f["sha256"] == "ab" * 32)
    assert shared["name"] == "out/copy of it.txt"
    assert shared["alternateName"] == ["out/ünï cödé ✓.txt"]
    assert len(files) == 4 and all(f["contentSize"] == "7" for f in files)


def test_archive_json_is_canonical_json_whatever_the_names() -> None:
    """ARCHIVE.json's entries render their own JSON: parsed and rendered again by
    canonical_bytes, the document is the same bytes, in name order, for names that need
    escaping, and with no entry at all."""
    from catalytic_hooks.archive.layout import Item, render_archive_json
    from catalytic_hooks.core.canonical import canonical_bytes

    items = [
        Item('data/quote"and\\back', 3, "01" * 32),
        Item("data/ünï cödé ✓", 0, "02" * 32),
        Item("data/tab\there", 12345678901, "03" * 32),
        Item("bagit.txt", 55, "04" * 32),
    ]
    for entries in (items, []):
        doc = render_archive_json(
            run_id="r-1",
            commit="ef" * 20,
            tree="ab" * 20,
            object_format="sha1",
            history=False,
            bundle_root="cd" * 32,
            validator_id="cd" * 32,
            items=entries,
        )
        assert canonical_bytes(json.loads(doc)) == doc
    parsed = json.loads(
        render_archive_json(
            run_id="r-1",
            commit=None,
            tree=None,
            object_format=None,
            history=True,
            bundle_root="cd" * 32,
            validator_id="cd" * 32,
            items=items,
        )
    )
    assert [e["name"] for e in parsed["entries"]] == sorted(
        (i.name for i in items), key=lambda n: n.encode()
    )
    assert parsed["entries"][-1] == {"name": "data/ünï cödé ✓", "sha256": "02" * 32, "size": 0}


@pytest.mark.parametrize("writers", ["1", "2"])
def test_a_file_size_limit_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, writers: str
) -> None:
    """A write refused by the kernel (RLIMIT_FSIZE, as a full disk would) while one writer or
    two write: IO_ERROR (exit 2), never INTERNAL, and neither the archive nor its temporary
    file is left."""
    _two_cpus()
    run = make_bundle(tmp_path / "_runs" / "f1", tmp_path, _many_outputs())
    dest = tmp_path / "archives"
    dest.mkdir()
    env = {**os.environ, "CATALYTIC_ONE_WRITER": "1" if writers == "1" else ""}
    proc = subprocess.run(
        [
            "bash",
            "-c",
            "ulimit -f 3000; trap '' XFSZ; exec \"$@\"",
            "bash",
            *(sys.executable, "-m", "catalytic_hooks", "archive", "create", str(run)),
            *("-o", str(dest / "f1.zip"), "--json"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "IO_ERROR" and "File too large" in doc["message"]
    assert list(dest.iterdir()) == []


_REAPED = """
import os, resource, signal, sys, json
from pathlib import Path
from catalytic_hooks.archive.create import create_archive
from catalytic_hooks.core.errors import CatalyticError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))
fds = sorted(os.listdir("/proc/self/fd"))
try:
    create_archive(Path(sys.argv[1]), Path(sys.argv[2]), project_root=Path(sys.argv[3]))
    code = None
except CatalyticError as exc:
    code = exc.code.value
try:
    left = os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    left = None
same = sorted(os.listdir("/proc/self/fd")) == fds
print(json.dumps({"code": code, "children": left, "fds": same}))
"""


def test_a_failed_first_writer_still_stops_and_reaps_the_second(tmp_path: Path) -> None:
    """When the first writer's own write fails, the second writer is stopped and reaped and the
    pipe it answers on is closed (the failure used to skip that cleanup: a zombie or an orphan
    still writing, and leaked descriptors)."""
    _two_cpus()
    run = make_bundle(tmp_path / "_runs" / "z1", tmp_path, _many_outputs())
    proc = subprocess.run(
        [sys.executable, "-c", _REAPED, str(run), str(tmp_path / "z1.zip"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CATALYTIC_ONE_WRITER": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"code": "IO_ERROR", "children": None, "fds": True}
    assert not (tmp_path / "z1.zip").exists()


def test_with_sigchld_ignored_one_writer_archives(tmp_path: Path) -> None:
    """SIGCHLD ignored (a supervisor's `trap '' CHLD`): the kernel would reap a second writer
    itself and its pid could be reused before it is waited for, so one writer does it all."""
    run = make_bundle(tmp_path / "_runs" / "c1", tmp_path, _many_outputs())
    proc = subprocess.run(
        [
            "bash",
            "-c",
            "trap '' CHLD; exec \"$@\"",
            "bash",
            *(sys.executable, "-m", "catalytic_hooks", "archive", "create", str(run)),
            *("-o", str(tmp_path / "c1.zip"), "--json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["details"]["writers"] == 1
    doc, _, _ = inspect(tmp_path / "c1.zip", Limits())
    assert len(doc["entries"]) > 600


def test_a_short_option_with_an_equals_sign_goes_to_typer() -> None:
    """Click reads `-o=x` as the value `=x`; the fast path leaves such a spelling to Typer."""
    from catalytic_hooks.cli.fastpath import parse_archive_pull

    assert parse_archive_create(["RUN", "-o=x.zip"]) is None
    assert parse_archive_pull(["oci://h/n:t", "-o=x.zip"]) is None
    assert parse_archive_create(["RUN", "--output=x.zip"]).output == Path("x.zip")


def test_a_run_file_whose_name_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    """A file in the run directory named by bytes that are not UTF-8: ARTIFACT_MALFORMED with
    exit 1 (it was an internal error), and no archive."""
    run = make_bundle(tmp_path / "_runs" / "u1", tmp_path, {"out/a.txt": b"a\n"})
    with open(os.path.join(os.fsencode(run), b"extra-\xff.txt"), "wb") as fh:
        fh.write(b"x")
    proc = catalytic(
        "archive", "create", str(run), "-o", str(tmp_path / "u1.zip"), "--json", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["code"] == "ARTIFACT_MALFORMED" and "not a UTF-8 name" in doc["message"]
    assert not (tmp_path / "u1.zip").exists()
