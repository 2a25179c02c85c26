"""`archive create`: one deterministic file for a run (docs/FORMATS.md §9).

The bundle must verify (valid; trust is the reader's business) before it is archived. Every
byte comes from the run directory, the outputs (content store first, then the project, as the
verifier reads them) and the commit's objects; nothing from the clock, the locale, the umask or
the files' metadata, so two archives of one run are the same bytes on any machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.crate import render_crate
from catalytic_hooks.archive.layout import (
    ARCHIVE_JSON,
    CRATE,
    PACK,
    SUFFIX,
    Item,
    name_key,
    render_archive_json,
    run_path,
    tag_files,
)
from catalytic_hooks.archive.zipfmt import ZipWriter
from catalytic_hooks.bundle.model import (
    SHA256_REF,
    STORE_DIR,
    DirSource,
    OutputRead,
    project_root_for,
    store_path,
)
from catalytic_hooks.bundle.verify import Verified, verify_bundle
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.lfs import MAX_POINTER, pointer_oid
from catalytic_hooks.core.paths import relpath_problem
from catalytic_hooks.fs.dirfd import FILE_FLAGS
from catalytic_hooks.fs.files import CHUNK, fsync_dir, read_fd, sha256_fd
from catalytic_hooks.git.pack import write_pack
from catalytic_hooks.git.repo import Repo


@dataclass
class _Source:
    """Where one payload entry's bytes come from: in-memory bytes, a file below one of the
    verifier's bases (the run directory or the project root), or an open stream."""

    name: str
    data: bytes | None = None
    base: Path | None = None
    rel: str = ""
    expected: str | None = None  # the SHA-256 the bytes must have (an output's)
    opener: Any = None


def _run_files(run_dir: Path) -> list[str]:
    """Every regular file of the run directory, relative, sorted; a symlink or special file
    is refused (an archive carries bytes, never links)."""
    found: list[str] = []
    todo = [""]
    while todo:
        prefix = todo.pop()
        with os.scandir(os.path.join(run_dir, prefix) if prefix else run_dir) as it:
            for e in it:
                rel = prefix + e.name
                if e.is_dir(follow_symlinks=False):
                    todo.append(rel + "/")
                elif not e.is_file(follow_symlinks=False):
                    raise CatalyticError(
                        ErrorCode.ARTIFACT_MALFORMED,
                        f"{rel} in the run directory "
                        "is not a regular file; an archive holds only files",
                        artifact=rel,
                    )
                else:
                    found.append(rel)
    return sorted(found, key=name_key)


def default_output(run_id: str, archive_dir: Path) -> Path:
    return archive_dir / f"{run_id}{SUFFIX}"


class _Locating(DirSource):
    """Verification whose last step (10, outputs) only locates each output, its size, and
    whether it is an LFS pointer: the bytes are hashed once, as they stream into the archive,
    against the same signed hash (`_write_entry`, `_check_only`), which refuses the archive on
    any difference. Reading 200 MB twice was a third of `archive create`; an lstat through the
    cached directory fds locates a regular file without opening it, and anything else (a link,
    a FIFO, a directory on the way that is not one) takes the verifier's own path, so the
    verdict and its message are the verifier's."""

    def __init__(self, run_dir: Path, project_root: Path):
        super().__init__(run_dir, project_root)
        self.located: dict[str, tuple[Path, str, int]] = {}
        self._no_store: bool | None = None

    def output(self, key: str) -> OutputRead:
        expected = self.hashes.get(key)
        candidates = [(self.project_root, key)]
        if self._no_store is None:
            try:
                self.lstat_at(self.run_dir, STORE_DIR)
                self._no_store = False
            except FileNotFoundError:
                self._no_store = True  # an unpacked run: no output is looked for there
            except OSError:
                self._no_store = False
        if expected and SHA256_REF.match(expected) and not self._no_store:
            candidates.insert(0, (self.run_dir, store_path(expected)))
        for base, rel in candidates:
            try:
                st = self.lstat_at(base, rel)
            except FileNotFoundError:
                continue
            except OSError:
                return self._slow(key)
            if not stat.S_ISREG(st.st_mode):
                return self._slow(key)
            if st.st_size <= MAX_POINTER:
                return self._slow(key)
            self.located[key] = (base, rel, st.st_size)
            return OutputRead(
                expected.removeprefix("sha256:") if expected else None,
                in_store=base == self.run_dir,
            )
        return OutputRead(None, "missing")

    def _slow(self, key: str) -> OutputRead:
        """The verifier's own open, for the unusual: what is there but is not a plain regular
        file, and a file small enough to be an LFS pointer."""
        try:
            found = self.find(key)
            if found is None:
                return OutputRead(None, "missing")
            base, rel, fd = found
        except OSError as exc:
            return OutputRead(None, f"not a regular file ({exc.strerror or exc})")
        try:
            size = os.fstat(fd).st_size
            if size <= MAX_POINTER:
                lfs = pointer_oid(read_fd(fd))
                if lfs is not None and self.hashes.get(key) == "sha256:" + lfs:
                    return OutputRead(
                        None, "an LFS pointer: its content is not here (run `git lfs pull`)"
                    )
        finally:
            os.close(fd)
        self.located[key] = (base, rel, size)
        return OutputRead(self.hashes[key].removeprefix("sha256:"), in_store=base == self.run_dir)


def _sources(
    run_dir: Path, v: Verified, src: _Locating
) -> tuple[list[_Source], dict[str, int], list[tuple[Path, str, str]]]:
    """The payload from the run directory and the outputs (one stored file per content), each
    output's size, and the outputs whose bytes are checked without being stored again (a second
    file with the same content)."""
    run_id = run_dir.name
    prefix = run_path(run_id) + "/"
    sources = {
        prefix + rel: _Source(prefix + rel, base=src.run_dir, rel=rel)
        for rel in _run_files(run_dir)
    }
    sizes: dict[str, int] = {}
    checks: list[tuple[Path, str, str]] = []
    for key in sorted(v.hashes):
        ref = v.hashes[key]
        expected = ref.removeprefix("sha256:")
        name = prefix + store_path(ref)
        base, rel, sizes[key] = src.located[key]
        have = sources.get(name)
        if have is None:
            sources[name] = _Source(name, base=base, rel=rel, expected=expected)
        elif have.base == base and have.rel == rel:
            have.expected = expected
        else:
            checks.append((base, rel, expected))
    return list(sources.values()), sizes, checks


def _check_only(src: DirSource, base: Path, rel: str, expected: str) -> None:
    fd = src.open_at(base, rel)
    try:
        if sha256_fd(fd) != expected:
            raise CatalyticError(
                ErrorCode.HASH_MISMATCH,
                f"{base / rel} does not match its signed hash",
                path=str(base / rel),
            )
    finally:
        os.close(fd)


def _open_regular(src: DirSource, base: Path, rel: str) -> int:
    """`src.open_at` without making the fd blocking (two fcntl calls per file): it is read
    only once it is known to be a regular file, where O_NONBLOCK changes nothing."""
    dfd, name = src.parent_at(base, rel)
    fd = os.open(name, FILE_FLAGS, dir_fd=dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{rel} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_entry(w: ZipWriter, zip_name: str, s: _Source, src: DirSource) -> Item:
    if s.data is not None:
        w.add(zip_name, s.data)
        return Item(s.name, len(s.data), hashlib.sha256(s.data).hexdigest())
    assert s.base is not None
    try:
        fd = _open_regular(src, s.base, s.rel)
    except OSError as exc:
        # located a moment ago: replaced, removed or turned into a link meanwhile
        raise CatalyticError(
            ErrorCode.OUTPUT_MISSING if s.expected is not None else ErrorCode.ARTIFACT_MISSING,
            f"{s.base / s.rel} changed while it was archived: {exc.strerror or exc}",
            path=str(s.base / s.rel),
        ) from exc
    try:
        first = os.read(fd, CHUNK)
        if len(first) < CHUNK:  # the whole file in hand: written once, never patched
            h = hashlib.sha256(first)
            size = w.add(zip_name, first).size
        else:
            h = hashlib.sha256(first)
            w.begin(zip_name)
            w.write(first)
            while chunk := os.read(fd, CHUNK):
                w.write(chunk)
                h.update(chunk)
            size = w.end().size
    finally:
        os.close(fd)
    digest = h.hexdigest()
    if s.expected is not None and digest != s.expected:
        raise CatalyticError(
            ErrorCode.HASH_MISMATCH,
            f"{s.base / s.rel} does not match its signed hash "
            "(changed after the run, or while it was archived)",
            path=str(s.base / s.rel),
        )
    return Item(s.name, size, digest)


def create_archive(
    run_dir: Path, output: Path, *, history: bool = False, project_root: Path | None = None
) -> dict[str, Any]:
    """Write the archive of `run_dir` to `output` (which must not exist)."""
    run_dir = run_dir.resolve()
    run_id = run_dir.name
    if relpath_problem(run_id) is not None or "/" in run_id:
        raise CatalyticError(ErrorCode.USAGE, f"run id {run_id!r} cannot name an archive")
    src = _Locating(run_dir, project_root_for(run_dir, project_root))
    v = verify_bundle(src)
    commit = v.task_spec.get("git_commit") if isinstance(v.task_spec, dict) else None
    if output.exists() or output.is_symlink():
        raise CatalyticError(
            ErrorCode.USAGE, f"{output} exists; an archive is never overwritten", path=str(output)
        )
    sources, sizes, checks = _sources(run_dir, v, src)
    for base, rel, expected in checks:
        _check_only(src, base, rel, expected)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{run_id}.", suffix=".tmp", dir=output.parent)
    tmp = Path(tmp_name)
    umask = os.umask(0o022)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # an ordinary file (mkstemp's is private)
    try:
        try:
            info = _write(fd, run_dir, v, src, sources, sizes, commit, history)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, output)  # never replaces an archive that appeared meanwhile
        fsync_dir(output.parent)
    except FileExistsError as exc:
        raise CatalyticError(
            ErrorCode.USAGE, f"{output} exists; an archive is never overwritten", path=str(output)
        ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return {**info, "archive": str(output), "run_id": run_id, "bundle_root": v.bundle_root}


def _write(
    out: int,
    run_dir: Path,
    v: Verified,
    src: DirSource,
    sources: list[_Source],
    sizes: dict[str, int],
    commit: Any,
    history: bool,
) -> dict[str, Any]:
    w = ZipWriter(out)
    try:
        return _write_all(w, run_dir, v, src, sources, sizes, commit, history)
    finally:
        w.close()


def _write_all(
    w: ZipWriter,
    run_dir: Path,
    v: Verified,
    src: DirSource,
    sources: list[_Source],
    sizes: dict[str, int],
    commit: Any,
    history: bool,
) -> dict[str, Any]:
    run_id = run_dir.name
    items: list[Item] = []
    pack_info = None
    with tempfile.TemporaryFile() as packf:
        if isinstance(commit, str):
            repo = Repo.discover(run_dir.parent)
            if repo.rev_parse(commit) is None:
                raise CatalyticError(
                    ErrorCode.GIT_FAILED, f"the recorded commit {commit} is not in {repo.top}"
                )
            pack_info = write_pack(repo, commit, packf, history=history)
            packf.seek(0)
        crate = render_crate(
            run_id=run_id,
            task_spec=v.task_spec,
            status=v.status,
            hashes=v.hashes,
            sizes=sizes,
            validator_id=v.validator_id,
            commit=commit if isinstance(commit, str) else None,
            store_paths={
                k: run_path(run_id, store_path(h)).removeprefix("data/")
                for k, h in v.hashes.items()
            },
        )
        payload = [*sources, _Source(CRATE, data=crate)]
        if pack_info is not None:
            payload.append(_Source(PACK, opener=packf))
        for s in sorted(payload, key=lambda s: name_key(s.name)):
            if s.opener is not None:
                items.append(_write_stream(w, f"{run_id}/{s.name}", s.name, s.opener))
            else:
                items.append(_write_entry(w, f"{run_id}/{s.name}", s, src))
    tags = tag_files(run_id, items, v.status)
    for name, data in tags:
        w.add(f"{run_id}/{name}", data)
        items.append(Item(name, len(data), hashlib.sha256(data).hexdigest()))
    doc = render_archive_json(
        run_id=run_id,
        commit=pack_info.commit if pack_info else None,
        tree=pack_info.tree if pack_info else None,
        object_format=pack_info.object_format if pack_info else None,
        history=history,
        bundle_root=v.bundle_root,
        validator_id=v.validator_id,
        items=items,
    )
    w.add(f"{run_id}/{ARCHIVE_JSON}", doc)
    size = w.finish()
    return {
        "size": size,
        "entries": len(items) + 1,
        "commit": pack_info.commit if pack_info else None,
        "git_objects": pack_info.objects if pack_info else 0,
    }


def _write_stream(w: ZipWriter, name: str, bag_name: str, fh: Any) -> Item:
    h = hashlib.sha256()
    w.begin(name)
    while chunk := fh.read(CHUNK):
        w.write(chunk)
        h.update(chunk)
    entry = w.end()
    return Item(bag_name, entry.size, h.hexdigest())
