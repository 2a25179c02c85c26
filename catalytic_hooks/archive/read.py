"""Reading an archive, which is untrusted input from a stranger (docs/FORMATS.md §9, SECURITY.md).

1. `zipfmt.parse`: every structural rule from the raw bytes (no write yet).
2. ARCHIVE.json (read from its entry, size-capped, strict JSON, canonical bytes) must list every
   other entry, in the canonical order and layout of one bag (no write yet).
3. Extraction into a new directory, one sequential pass over the file: each entry streamed into a
   file created with O_EXCL | O_NOFOLLOW below directory fds (nothing can land outside the
   target), its CRC-32 and SHA-256 checked against the headers and ARCHIVE.json, the limits
   counted on the bytes actually read. Any failure removes the directory: a refused archive
   leaves nothing behind.
4. The derived files (BagIt tag files, RO-Crate, ARCHIVE.json's run id, commit, bundle root and
   validator) must be exactly what the extracted bundle gives.
5. The git objects (`prove_objects`): git computes every id; the commit must be the one TASK_SPEC
   records and the pack must hold exactly its closure.
Then the extracted run directory is a packed run directory: verify, restore and replay use it
unchanged, with an empty project root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.archive import layout
from catalytic_hooks.archive.crate import render_crate
from catalytic_hooks.archive.zipfmt import Entry, Limits, fold, invalid, parse
from catalytic_hooks.bundle.model import (
    IDENTITY,
    OUTPUT_HASHES,
    STATUS,
    TASK_SPEC,
    bundle_root,
    run_id_problem,
    store_path,
)
from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.fs.dirfd import DIR_FLAGS, DirFds, open_beneath, remove_tree
from catalytic_hooks.fs.files import CHUNK, read_fd, write_all
from catalytic_hooks.git.pack import Imported, import_pack, init_repository

MAX_ARCHIVE_JSON = 64 * 1024 * 1024
_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DOC_KEYS = {
    "bundle_root",
    "commit",
    "entries",
    "format",
    "format_version",
    "history",
    "object_format",
    "run_id",
    "tree",
    "validator_id",
}
EMPTY_PROJECT = ".project"


@dataclass
class Opened:
    """An archive checked and extracted: its run directory is a packed run directory."""

    archive: Path
    sha256: str
    size: int
    root: Path  # the directory this reader created (removed by `close`)
    doc: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.doc["run_id"])

    @property
    def bag(self) -> Path:
        return self.root / self.run_id

    @property
    def run_dir(self) -> Path:
        return self.bag / layout.run_path(self.run_id)

    @property
    def project_root(self) -> Path:
        """An empty directory: every output is in the run directory's content store."""
        return self.root / EMPTY_PROJECT

    @property
    def pack(self) -> Path | None:
        return self.bag / layout.PACK if self.doc["commit"] else None

    def source_info(self) -> dict[str, Any]:
        return {"name": self.archive.name, "sha256": self.sha256, "size": self.size}


def open_file(path: Path) -> tuple[int, int]:
    """(fd, size) of the archive file: a regular file, opened without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise CatalyticError(ErrorCode.USAGE, f"cannot open {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CatalyticError(ErrorCode.USAGE, f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd, st.st_size


def _doc(fd: int, entries: list[Entry]) -> tuple[dict[str, Any], bytes]:
    last = entries[-1]
    if not last.name.endswith("/" + layout.ARCHIVE_JSON) or last.name.count("/") != 1:
        raise invalid("LAYOUT", "the last entry is not <run_id>/ARCHIVE.json")
    if last.size > MAX_ARCHIVE_JSON:
        raise invalid("ENTRY_TOO_LARGE", f"ARCHIVE.json is {last.size} bytes")
    raw = os.pread(fd, last.size, last.data_offset)
    if len(raw) != last.size or zlib.crc32(raw) != last.crc:
        raise invalid("CRC_MISMATCH", "ARCHIVE.json does not match its CRC-32")
    try:
        doc = loads_strict(raw, what=layout.ARCHIVE_JSON)
    except CatalyticError as exc:
        raise invalid("MANIFEST_INVALID", exc.message) from exc
    if not isinstance(doc, dict) or set(doc) != _DOC_KEYS:
        raise invalid("MANIFEST_INVALID", "ARCHIVE.json does not have exactly its fields")
    if doc["format"] != layout.FORMAT or doc["format_version"] != layout.FORMAT_VERSION:
        raise invalid(
            "UNSUPPORTED_VERSION",
            f"format {doc['format']!r} version "
            f"{doc['format_version']!r} (this reader knows {layout.FORMAT} "
            f"{layout.FORMAT_VERSION})",
        )
    if canonical_bytes(doc) != raw:
        raise invalid("MANIFEST_INVALID", "ARCHIVE.json is not canonical JSON")
    _check_doc_types(doc)
    return doc, raw


def _check_doc_types(doc: dict[str, Any]) -> None:
    ok = (
        isinstance(doc["run_id"], str)
        # shown by `archive list` before any verification: 64 hex each, nothing a terminal acts on
        and isinstance(doc["validator_id"], str)
        and bool(_HEX64.fullmatch(doc["validator_id"]))
        and isinstance(doc["bundle_root"], str)
        and bool(_HEX64.fullmatch(doc["bundle_root"]))
        and isinstance(doc["history"], bool)
        and isinstance(doc["entries"], list)
        and all(
            isinstance(e, dict)
            and set(e) == {"name", "sha256", "size"}
            and isinstance(e["name"], str)
            and isinstance(e["size"], int)
            and not isinstance(e["size"], bool)
            and isinstance(e["sha256"], str)
            and _HEX64.fullmatch(e["sha256"])
            for e in doc["entries"]
        )
    )
    commit = doc["commit"]
    if commit is not None:
        ok = (
            ok
            and isinstance(commit, str)
            and bool(_OID.match(commit))
            and isinstance(doc["tree"], str)
            and bool(_OID.match(doc["tree"]))
            and doc["object_format"] == ("sha1" if len(commit) == 40 else "sha256")
        )
    else:
        ok = ok and doc["tree"] is None and doc["object_format"] is None
    if not ok:
        raise invalid("MANIFEST_INVALID", "ARCHIVE.json has a field of the wrong type")


def _check_names(entries: list[Entry], doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One bag named by the run id, its layout, ARCHIVE.json listing every other entry, the
    canonical order; no name a directory of another. Returns listed name → its record."""
    run_id = doc["run_id"]
    if "/" in run_id or run_id in ("", ".", "..") or run_id.startswith("."):
        raise invalid("LAYOUT", f"run id {run_id!r} cannot name a bag")
    prefix = run_id + "/"
    bag_names = []
    for e in entries:
        if not e.name.startswith(prefix):
            raise invalid(
                "LAYOUT",
                f"{e.name!r} is outside the bag {prefix!r} (one top-level directory)",
                name=e.name,
            )
        bag_names.append(e.name[len(prefix) :])
    listed = {rec["name"]: rec for rec in doc["entries"]}
    if len(listed) != len(doc["entries"]):
        raise invalid("MANIFEST_INVALID", "ARCHIVE.json lists a name twice")
    present = set(bag_names[:-1])
    for name in bag_names[:-1]:
        if name not in listed:
            raise invalid("NOT_IN_MANIFEST", f"{name!r} is not listed in ARCHIVE.json", name=name)
    for name in listed:
        if name not in present:
            raise invalid(
                "MISSING_ENTRY", f"ARCHIVE.json lists {name!r}, which is not in the zip", name=name
            )
    run_prefix = layout.run_path(run_id) + "/"
    for e, name in zip(entries[:-1], bag_names[:-1], strict=True):
        if listed[name]["size"] != e.size:
            raise invalid(
                "MANIFEST_MISMATCH",
                f"{name!r} is {e.size} bytes, ARCHIVE.json says {listed[name]['size']}",
                name=name,
            )
        in_run = name.startswith(run_prefix)
        if not (name in layout.TAG_ORDER or name in (layout.PACK, layout.CRATE) or in_run):
            raise invalid("LAYOUT", f"{name!r} has no place in an archive", name=name)
        # Before anything is written: a name no signed bundle has (a thousand entries each 500
        # directories deep cost half a million directories before the check after extraction).
        if in_run and not layout.may_be_signed(name.removeprefix(run_prefix)):
            raise invalid(
                "UNSIGNED_ENTRY",
                f"{name!r} is in the run directory but no signed bundle has such a file",
                name=name,
            )
    if bag_names != layout.canonical_order(bag_names):
        raise invalid("NOT_CANONICAL", "the entries are not in the canonical order")
    missing = [n for n in layout.TAG_ORDER if n not in present]
    if (
        missing
        or (layout.CRATE not in present)
        or ((layout.PACK in present) != (doc["commit"] is not None))
    ):
        raise invalid("LAYOUT", f"required entries are missing: {missing or 'crate or pack'}")
    _check_conflicts(bag_names)
    return listed


def _check_conflicts(names: list[str]) -> None:
    files = {fold(n) for n in names}
    for n in names:
        parts = n.split("/")
        for i in range(1, len(parts)):
            if fold("/".join(parts[:i])) in files:
                raise invalid(
                    "NAME_CONFLICT", f"{n!r} lies under the file {'/'.join(parts[:i])!r}", name=n
                )


def extract(path: Path, dest: Path, limits: Limits) -> Opened:
    """Check and extract `path` into `dest` (created here; it must not exist). On any failure
    `dest` is removed again and ARCHIVE_INVALID (or IO_ERROR) raised."""
    fd, size = open_file(path)
    try:
        entries = parse(fd, size, limits)
        doc, _ = _doc(fd, entries)
        listed = _check_names(entries, doc)
        try:
            os.mkdir(dest, 0o700)
        except FileExistsError as exc:
            raise CatalyticError(ErrorCode.USAGE, f"{dest} exists", path=str(dest)) from exc
        try:
            whole = _stream(fd, size, entries, listed, dest, doc["run_id"], limits)
            opened = Opened(path, whole, size, dest, doc)
            os.mkdir(opened.project_root, 0o700)
            _check_derived(opened, listed)
        except OSError as exc:  # the disk full, out of inodes or of file descriptors
            remove_tree(dest)
            raise io_failure(f"extract {path.name} into {dest.parent}", dest.parent, exc) from exc
        except BaseException:
            remove_tree(dest)
            raise
        return opened
    finally:
        os.close(fd)


def inspect(path: Path, limits: Limits) -> tuple[dict[str, Any], str, int]:
    """Every check that needs no extraction, every entry's hash included, without writing
    anything: (ARCHIVE.json, the archive's SHA-256, its size)."""
    fd, size = open_file(path)
    try:
        entries = parse(fd, size, limits)
        doc, _ = _doc(fd, entries)
        listed = _check_names(entries, doc)
        whole = _stream(fd, size, entries, listed, None, doc["run_id"], limits)
        return doc, whole, size
    finally:
        os.close(fd)


def inspect_doc(path: Path, limits: Limits) -> dict[str, Any]:
    """ARCHIVE.json after the structural checks, without hashing the entries (the run id a
    replay directory is named by; extraction then checks everything)."""
    fd, size = open_file(path)
    try:
        entries = parse(fd, size, limits)
        doc, _ = _doc(fd, entries)
        _check_names(entries, doc)
        return doc
    finally:
        os.close(fd)


# No archive of this format is larger: 4 GiB of entries (no ZIP64) and an end record.
LARGEST_ARCHIVE = (1 << 32) + (1 << 16) + 22


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file however broken it is (a quarantine report's), or None; None too
    for a file larger than any archive, which was refused without reading it and is not read
    now (an 8 GB sparse file took 37 s to hash for a refusal that took milliseconds)."""
    try:
        fd, size = open_file(path)
    except CatalyticError:
        return None
    if size > LARGEST_ARCHIVE:
        os.close(fd)
        return None
    try:
        from catalytic_hooks.fs.files import sha256_fd

        return sha256_fd(fd)
    finally:
        os.close(fd)


def limits_for(policy: Any) -> Limits:
    """The reading limits of a policy (its `archive_max_*` keys)."""
    return Limits(
        max_entries=policy.archive_max_entries,
        max_entry_bytes=policy.archive_max_bytes,
        max_total_bytes=policy.archive_max_bytes,
    )


def _stream(
    fd: int,
    size: int,
    entries: list[Entry],
    listed: dict[str, dict[str, Any]],
    dest: Path | None,
    run_id: str,
    limits: Limits,
) -> str:
    """One sequential pass: every byte of the file feeds the archive's SHA-256; each entry's
    data is written (unless `dest` is None: a check without extraction), CRC-checked and
    hashed against ARCHIVE.json."""
    whole = hashlib.sha256()
    rfd = os.open(dest, DIR_FLAGS) if dest is not None else -1
    written = 0
    try:
        with DirFds(rfd, create=True, limit=64) as dirs:
            pos = 0
            for e in entries:
                whole.update(_read(fd, e.data_offset - pos, pos))
                out = -1
                if dest is not None:
                    parts = e.name.split("/")
                    out = os.open(
                        parts[-1],
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o666,
                        dir_fd=dirs.get(parts[:-1]),
                    )
                try:
                    crc, sha = _copy(fd, out, e, whole)
                finally:
                    if out >= 0:
                        os.close(out)
                written += e.size
                if written > limits.max_total_bytes:
                    raise invalid("TOTAL_TOO_LARGE", f"more than {limits.max_total_bytes} bytes")
                if crc != e.crc:
                    raise invalid(
                        "CRC_MISMATCH", f"{e.name!r} does not match its CRC-32", name=e.name
                    )
                bag_name = e.name[len(run_id) + 1 :]
                rec = listed.get(bag_name)
                if rec is not None and rec["sha256"] != sha:
                    raise invalid(
                        "MANIFEST_MISMATCH",
                        f"{bag_name!r} does not match its SHA-256 in ARCHIVE.json",
                        name=bag_name,
                    )
                pos = e.end
            whole.update(_read(fd, size - pos, pos))
    finally:
        if rfd >= 0:
            os.close(rfd)
    return whole.hexdigest()


def _read(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise invalid("TRUNCATED", "the archive ended early (changed while it was read?)")
    return data


def _copy(fd: int, out: int, e: Entry, whole: Any) -> tuple[int, str]:
    crc = 0
    h = hashlib.sha256()
    pos, end = e.data_offset, e.end
    while pos < end:
        chunk = _read(fd, min(CHUNK, end - pos), pos)
        crc = zlib.crc32(chunk, crc)
        h.update(chunk)
        whole.update(chunk)
        if out >= 0:
            write_all(out, chunk)
        pos += len(chunk)
    return crc, h.hexdigest()


def _artifact(run_dir: Path, name: str) -> tuple[bytes, Any] | None:
    try:
        fd = open_beneath(run_dir, name)
        try:
            raw = read_fd(fd, 64 * 1024 * 1024)
        finally:
            os.close(fd)
        return raw, loads_strict(raw, what=name)
    except (OSError, CatalyticError):
        return None


def _check_derived(opened: Opened, listed: dict[str, dict[str, Any]]) -> None:
    """The tag files, the crate and ARCHIVE.json's summary fields are what the extracted
    entries and bundle give, byte for byte (when the bundle's artifacts parse at all; a bundle
    that does not is refused by its own verification)."""
    doc, run_id = opened.doc, opened.run_id
    parsed = {n: _artifact(opened.run_dir, n) for n in (TASK_SPEC, STATUS, OUTPUT_HASHES, IDENTITY)}
    status_read = parsed[STATUS]
    status = status_read[1] if status_read is not None else None
    payload = [
        layout.Item(n, r["size"], r["sha256"])
        for n, r in listed.items()
        if n not in layout.TAG_ORDER
    ]
    for name, data in layout.tag_files(run_id, payload, status):
        if (opened.bag / name).read_bytes() != data:
            raise invalid("METADATA_MISMATCH", f"{name} is not what the entries give", name=name)
    if any(v is None for v in parsed.values()):
        return
    got = {n: p for n, p in parsed.items() if p is not None}
    spec_raw, spec = got[TASK_SPEC]
    hashes_doc, ident = got[OUTPUT_HASHES][1], got[IDENTITY][1]
    hashes = hashes_doc.get("hashes") if isinstance(hashes_doc, dict) else None
    if not (
        isinstance(hashes, dict)
        and isinstance(status, dict)
        and isinstance(ident, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in hashes.items())
    ):
        return
    why = run_id_problem(run_id, status)
    if why is not None:
        raise invalid("METADATA_MISMATCH", f"the archive's bag is named {run_id!r}, but {why}")
    prefix = layout.run_path(run_id) + "/"
    in_run = [n.removeprefix(prefix) for n in listed if n.startswith(prefix)]
    extra = layout.unsigned_files(in_run, status, layout.signed_contents(spec, hashes))
    if extra:
        raise invalid(
            "UNSIGNED_ENTRY",
            f"{prefix}{extra[0]} is in the run directory but not in its signed bundle",
            name=prefix + extra[0],
        )
    for rel in in_run:
        # A stored content is signed by its hash; its bytes (hashed while extracted, against
        # ARCHIVE.json) must be that hash, or a lock file's bytes would go unchecked.
        if (
            rel.startswith("objects/")
            and store_path("sha256:" + listed[prefix + rel]["sha256"]) != rel
        ):
            raise invalid(
                "UNSIGNED_ENTRY",
                f"{prefix}{rel} does not hold the content its name is the hash of",
                name=prefix + rel,
            )
    commit = spec.get("git_commit") if isinstance(spec, dict) else None
    commit = commit if isinstance(commit, str) else None
    if doc["commit"] != commit:
        raise invalid(
            "METADATA_MISMATCH",
            f"ARCHIVE.json names commit {doc['commit']}, TASK_SPEC records {commit}",
        )
    if doc["bundle_root"] != bundle_root(spec_raw, status, hashes) or doc[
        "validator_id"
    ] != ident.get("validator_id"):
        raise invalid(
            "METADATA_MISMATCH", "ARCHIVE.json's bundle root or validator is not the bundle's"
        )
    paths = {k: layout.run_path(run_id, store_path(h)) for k, h in hashes.items()}
    if any(p not in listed for p in paths.values()):
        raise invalid("MISSING_ENTRY", "an output is not in the archive's content store")
    crate = render_crate(
        run_id=run_id,
        task_spec=spec,
        status=status,
        hashes=hashes,
        sizes={k: listed[p]["size"] for k, p in paths.items()},
        validator_id=str(ident.get("validator_id")),
        commit=commit,
        store_paths={k: p.removeprefix("data/") for k, p in paths.items()},
    )
    if (opened.bag / layout.CRATE).read_bytes() != crate:
        raise invalid("METADATA_MISMATCH", "ro-crate-metadata.json is not what the bundle gives")


def prove_objects(opened: Opened, repo_path: Path, *, bare: bool) -> Imported | None:
    """Index the archive's git objects into a new repository at `repo_path` and prove them: the
    ids are git's own computation, never ARCHIVE.json's word."""
    doc = opened.doc
    if doc["commit"] is None or opened.pack is None:
        return None
    repo = init_repository(repo_path, doc["object_format"], bare=bare)
    got = import_pack(
        repo,
        opened.pack,
        doc["commit"],
        history=doc["history"],
        problem=lambda reason, msg: invalid(reason, msg),
    )
    if got.tree != doc["tree"]:
        raise invalid(
            "GIT_OBJECTS", f"the commit's tree is {got.tree}, ARCHIVE.json says {doc['tree']}"
        )
    return got


@contextlib.contextmanager
def opened_archive(
    path: Path, limits: Limits, *, parent: Path | None = None
) -> Iterator[tuple[Opened, Imported | None]]:
    """Check, extract and prove an archive in a fresh temporary directory (under `parent`),
    removed afterwards whatever happens."""
    base = Path(tempfile.mkdtemp(prefix="catalytic-archive-", dir=parent))
    try:
        opened = extract(path, base / "x", limits)
        proved = prove_objects(opened, base / "objects.git", bare=True)
        yield opened, proved
    finally:
        shutil.rmtree(base, ignore_errors=True)
