"""`archive create`: one deterministic file for a run (docs/FORMATS.md §9).

The bundle must verify (valid; trust is the reader's business) before it is archived. Every
byte comes from the run directory, the outputs (content store first, then the project, as the
verifier reads them) and the commit's objects; nothing from the clock, the locale, the umask or
the files' metadata, so two archives of one run are the same bytes on any machine.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import signal
import stat
import tempfile
import threading
import zlib
from collections.abc import Iterator
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
    signed_contents,
    tag_files,
    unsigned_files,
)
from catalytic_hooks.archive.zipfmt import (
    LOCAL_LEN,
    MAX_U32,
    WRITEBACK,
    Entry,
    ZipWriter,
    local_header,
    pwritev_all,
)
from catalytic_hooks.bundle.model import (
    SHA256_REF,
    STORE_DIR,
    DirSource,
    OutputRead,
    project_root_for,
    run_id_problem,
    store_path,
)
from catalytic_hooks.bundle.verify import Verified, verify_bundle
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.lfs import MAX_POINTER, pointer_oid
from catalytic_hooks.core.paths import name_part, relpath_problem
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
    size: int = -1  # as located before writing (the second writer's offsets depend on it)


def _run_files(run_dir: Path) -> list[tuple[str, int]]:
    """Every regular file of the run directory, relative, with its size, sorted; a symlink or
    special file is refused (an archive carries bytes, never links)."""
    found: list[tuple[str, int]] = []
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
                    try:
                        rel.encode("utf-8")
                    except UnicodeEncodeError:
                        # a name the file system holds as bytes that are not UTF-8: a zip
                        # entry's name is UTF-8 (FORMATS §9), so it cannot be archived as is
                        raise CatalyticError(
                            ErrorCode.ARTIFACT_MALFORMED,
                            f"{rel!r} in the run directory is not a UTF-8 name; an archive "
                            "names its entries in UTF-8",
                            artifact=rel.encode("utf-8", "backslashreplace").decode(),
                        ) from None
                    found.append((rel, e.stat(follow_symlinks=False).st_size))
    return sorted(found, key=lambda f: name_key(f[0]))


def default_output(run_id: str, archive_dir: Path) -> Path:
    return archive_dir / f"{name_part(run_id, 255 - len(SUFFIX))}{SUFFIX}"


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
        if not self._no_store and expected and SHA256_REF.match(expected):
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
                in_store=base is self.run_dir,
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
    files = _run_files(run_dir)
    extra = unsigned_files(
        [rel for rel, _ in files], v.status, signed_contents(v.task_spec, v.hashes)
    )
    if extra:
        raise CatalyticError(
            ErrorCode.ARTIFACT_EXTRA,
            f"{extra[0]} in the run directory is not part of its signed bundle; an archive "
            "carries only what the signature covers (move it out of the run directory)",
            artifact=extra[0],
        )
    # A stored content's bytes must be the hash its name is (a lock file's are checked nowhere
    # else), as the reader will require.
    sources = {
        prefix + rel: _Source(
            prefix + rel, base=src.run_dir, rel=rel, size=size, expected=_stored_hash(rel)
        )
        for rel, size in files
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
            sources[name] = _Source(name, base=base, rel=rel, expected=expected, size=sizes[key])
        elif have.base == base and have.rel == rel:
            have.expected = expected
        else:
            checks.append((base, rel, expected))
    return list(sources.values()), sizes, checks


def _stored_hash(rel: str) -> str | None:
    """The hex SHA-256 a content-store path names (`objects/sha256/ab/cdef...`), else None."""
    parts = rel.split("/")
    if len(parts) == 4 and parts[:2] == ["objects", "sha256"]:
        return parts[2] + parts[3]
    return None


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


def _open_source(src: DirSource, s: _Source) -> int:
    assert s.base is not None
    try:
        return _open_regular(src, s.base, s.rel)
    except OSError as exc:
        # located a moment ago: replaced, removed or turned into a link meanwhile
        raise CatalyticError(
            ErrorCode.OUTPUT_MISSING if s.expected is not None else ErrorCode.ARTIFACT_MISSING,
            f"{s.base / s.rel} changed while it was archived: {exc.strerror or exc}",
            path=str(s.base / s.rel),
        ) from exc


def _check_digest(s: _Source, digest: str) -> None:
    if s.expected is not None and digest != s.expected:
        assert s.base is not None
        raise CatalyticError(
            ErrorCode.HASH_MISMATCH,
            f"{s.base / s.rel} does not match its signed hash "
            "(changed after the run, or while it was archived)",
            path=str(s.base / s.rel),
        )


def _write_entry(w: ZipWriter, zip_name: str, s: _Source, src: DirSource) -> Item:
    if s.data is not None:
        w.add(zip_name, s.data)
        return Item(s.name, len(s.data), hashlib.sha256(s.data).hexdigest())
    fd = _open_source(src, s)
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
    _check_digest(s, digest)
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
    try:
        with _collector_paused():
            return _create(run_dir, output, src, history)
    finally:
        src.close()  # its cached directory fds, whatever happened


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while an archive is made. The per-entry tables (10,000
    outputs: about 40,000 tracked objects) made it run about 150 collections, 40-60 ms of the
    command, to find cycles that this code does not make;
    reference counting still frees everything as it goes (the peak RSS measured the same, 60
    MiB, either way), and the second writer's copy-on-write pages are not touched by it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _create(run_dir: Path, output: Path, src: _Locating, history: bool) -> dict[str, Any]:
    run_id = run_dir.name
    v = verify_bundle(src)
    commit = v.task_spec.get("git_commit") if isinstance(v.task_spec, dict) else None
    if output.exists() or output.is_symlink():
        raise CatalyticError(
            ErrorCode.USAGE, f"{output} exists; an archive is never overwritten", path=str(output)
        )
    why = run_id_problem(run_id, v.status)
    if why is not None:
        raise CatalyticError(
            ErrorCode.ARTIFACT_MALFORMED,
            f"the run directory is named {run_id!r}, but {why}; an archive names the run as "
            "its bundle does (rename the directory back)",
            artifact="STATUS.json",
        )
    sources, sizes, checks = _sources(run_dir, v, src)
    for base, rel, expected in checks:
        _check_only(src, base, rel, expected)
    output.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{name_part(run_id)}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=output.parent)
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
    except OSError as exc:  # a full disk, a file size limit, an I/O error: nothing is left
        raise CatalyticError(
            ErrorCode.IO_ERROR,
            f"cannot create the archive {output}: {exc.strerror or exc}",
            path=str(output),
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
            packf.flush()
            packf.seek(0)
        in_crate = run_path(run_id).removeprefix("data/") + "/"  # the crate lies in data/
        crate = render_crate(
            run_id=run_id,
            task_spec=v.task_spec,
            status=v.status,
            hashes=v.hashes,
            sizes=sizes,
            validator_id=v.validator_id,
            commit=commit if isinstance(commit, str) else None,
            store_paths={k: in_crate + store_path(h) for k, h in v.hashes.items()},
        )
        payload = [*sources, _Source(CRATE, data=crate, size=len(crate))]
        if pack_info is not None:
            payload.append(_Source(PACK, opener=packf, size=os.fstat(packf.fileno()).st_size))
        ordered = sorted(payload, key=lambda s: name_key(s.name))
        plan = _plan(ordered, run_id)
        second = _Second.start(out, ordered, plan, src, run_id) if plan is not None else None
        with contextlib.ExitStack() as stack:
            # every exit stops and reaps the second writer, even one where closing the zip
            # writer raises its thread's failure (callbacks run last in, first out, all of them)
            if second is not None:
                stack.callback(second.stop)
            # the writing thread starts after the fork: a child of a threaded process is not
            w = ZipWriter(out)
            stack.callback(w.close)
            mine = ordered[: plan.split] if plan is not None else ordered
            for s in mine:
                zip_name = f"{run_id}/{s.name}"
                if s.opener is not None:
                    item = _write_stream(w, zip_name, s.name, s.opener)
                else:
                    item = _write_entry(w, zip_name, s, src)
                if plan is not None and item.size != s.size:
                    raise _changed(s)
                items.append(item)
            if second is not None:
                assert plan is not None
                w.skip(plan.end)
                for entry, item in second.finish():
                    w.adopt(entry)
                    items.append(item)
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
            if second is not None:
                second.stop(done=True)  # waits for its sync of the data (the stack's stop: none)
    return {
        "size": size,
        "entries": len(items) + 1,
        "writers": 1 if second is None else 2,
        "commit": pack_info.commit if pack_info else None,
        "git_objects": pack_info.objects if pack_info else 0,
    }


def _changed(s: _Source) -> CatalyticError:
    assert s.base is not None
    return CatalyticError(
        ErrorCode.OUTPUT_MISSING if s.expected is not None else ErrorCode.ARTIFACT_MISSING,
        f"{s.base / s.rel} changed while it was archived (its size)",
        path=str(s.base / s.rel),
    )


# -- two writers ------------------------------------------------------------------------------
#
# Stored entries with sizes known beforehand have known places: each local header's offset is
# the sum of the entries before it. So the last part of the payload is written by a forked
# process (pwrite at those offsets) while this one writes the first part, on two cores: with
# 10,000 outputs the per-file work (open, read, SHA-256, CRC-32, framing) is most of `archive
# create`, and it is Python's, which threads would serialise. The bytes are the same as one
# writer's (tests/test_archive_create.py compares them); an entry whose size differs from the
# plan fails the archive like any change during archiving.

_SPLIT_FILES = 512  # fewer file entries than this: one writer (a fork would cost more)
_ENTRY_COST = 16 * 1024  # bytes a file's fixed per-entry work is worth, when sharing the work
# The first writer's part: its writes run on a thread of their own, so it keeps up with a larger
# part than the second writer, which waits for each pwrite (measured: at 0.5 the first waited
# 0.15-0.25 s for the second on 10,000 outputs, at 0.6 about 0.05 s).
_FIRST_SHARE = 0.6


@dataclass(frozen=True)
class _Plan:
    split: int  # the first entry the second writer writes
    offsets: list[int]  # each payload entry's local header offset
    end: int  # the offset after the payload


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _plan(ordered: list[_Source], run_id: str) -> _Plan | None:
    """Where each payload entry goes, and where to share the work; None for one writer: few
    files, one core, no fork, threads already running (a forked child of a threaded process
    may inherit a lock some other thread held), or SIGCHLD ignored (the kernel would reap the
    second writer itself, and its pid could be reused before it is waited for)."""
    if (
        sum(1 for s in ordered if s.base is not None) < _SPLIT_FILES
        or not hasattr(os, "fork")
        or threading.active_count() > 1
        or signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
        or _cpus() < 2
        or os.environ.get("CATALYTIC_ONE_WRITER")
    ):
        return None
    offsets, pos = [], 0
    for s in ordered:
        offsets.append(pos)
        pos += LOCAL_LEN + len(f"{run_id}/{s.name}".encode()) + s.size
    if pos > MAX_U32:
        return None  # one writer reports it
    share, done, split = sum(s.size + _ENTRY_COST for s in ordered) * _FIRST_SHARE, 0, len(ordered)
    for i, s in enumerate(ordered):
        if done >= share:
            split = i
            break
        done += s.size + _ENTRY_COST
    return _Plan(split, offsets, pos)


class _Second:
    """The forked writer of the payload's last part. It answers, on a pipe, one JSON
    document: each entry's size, CRC-32 and SHA-256, or the CatalyticError that stopped it."""

    def __init__(self, pid: int, answer: int, ordered: list[_Source], plan: _Plan, run_id: str):
        self.pid, self.answer = pid, answer
        self.ordered, self.plan, self.run_id = ordered, plan, run_id
        self.reaped = False

    @classmethod
    def start(
        cls, out: int, ordered: list[_Source], plan: _Plan, src: DirSource, run_id: str
    ) -> _Second:
        r, w = os.pipe()
        # Signals wait until the child is inside its try: one arriving between the fork and
        # it would run the parent's cleanup (unlink the archive's temporary file) in the child.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # the child: never returns
            status = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                os.close(r)
                doc = _second_part(out, ordered, plan, src, run_id)
                _answer(w, doc)
                os.close(w)
                if "rows" in doc:
                    # The archive's data on its way to the disk while the first writer, which
                    # has the answer now, makes the tag files and the central directory: the
                    # command's own fsync then waits for what is left, if anything.
                    with contextlib.suppress(OSError):
                        os.fdatasync(out)
                status = 0
            finally:
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(w)
        return cls(pid, r, ordered, plan, run_id)

    def finish(self) -> list[tuple[Entry, Item]]:
        """The last part's entries, once its writer is done; its error raised as ours."""
        chunks = []
        while chunk := os.read(self.answer, 1 << 20):
            chunks.append(chunk)
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError:
            doc = None
        expected = len(self.ordered) - self.plan.split
        whole = isinstance(doc, dict) and (
            (isinstance(doc.get("rows"), list) and len(doc["rows"]) == expected)
            or isinstance(doc.get("error"), dict)
        )
        if not whole:
            _, status = os.waitpid(self.pid, 0)  # it ended without a whole answer
            self.reaped = True
            raise CatalyticError(
                ErrorCode.IO_ERROR,
                f"the second archive writer ended without an answer (wait status {status})",
            )
        if "error" in doc:
            err = doc["error"]
            raise CatalyticError(ErrorCode(err["code"]), err["message"], **err["details"])
        out = []
        for i, (size, crc, sha) in enumerate(doc["rows"], start=self.plan.split):
            s = self.ordered[i]
            zip_name = f"{self.run_id}/{s.name}"
            out.append((Entry(zip_name, self.plan.offsets[i], size, crc), Item(s.name, size, sha)))
        return out

    def stop(self, *, done: bool = False) -> None:
        """Reaped, the pipe closed: waited for when `done` (its answer was used: it is only
        syncing the data), else killed first (this side failed)."""
        if not self.reaped:
            if not done:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True
        if self.answer >= 0:
            os.close(self.answer)
            self.answer = -1


def _answer(fd: int, doc: dict[str, Any]) -> None:
    view = memoryview(json.dumps(doc, default=str).encode())
    while view:
        view = view[os.write(fd, view) :]


def _second_part(
    out: int, ordered: list[_Source], plan: _Plan, src: DirSource, run_id: str
) -> dict[str, Any]:
    rows = []
    flushed = plan.offsets[plan.split] if plan.split < len(ordered) else plan.end
    batch = _Batch(out)
    try:
        for i in range(plan.split, len(ordered)):
            rows.append(_write_placed(out, ordered[i], plan.offsets[i], run_id, src, batch))
            done = plan.offsets[i + 1] if i + 1 < len(ordered) else plan.end
            if done - flushed >= WRITEBACK and hasattr(os, "posix_fadvise"):
                # as the first writer's thread does: the final fsync then waits for a tail only
                batch.flush()
                os.posix_fadvise(out, flushed, done - flushed, os.POSIX_FADV_DONTNEED)
                flushed = done
        batch.flush()
    except CatalyticError as exc:
        return {"error": {"code": exc.code.value, "message": exc.message, "details": exc.details}}
    except OSError as exc:
        return {
            "error": {
                "code": ErrorCode.IO_ERROR.value,
                "message": f"cannot create the archive: {exc.strerror or exc}",
                "details": {},
            }
        }
    return {"rows": rows}


class _Batch:
    """The second writer's whole entries gathered into one pwritev per MiB, as the first
    writer's are: the plan lays them out end to end. (A streamed entry is written apart: the
    spans are disjoint, so the order of the writes does not matter.)"""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pieces: list[bytes] = []
        self.start = self.end = 0

    def add(self, offset: int, pieces: list[bytes]) -> None:
        if self.pieces and offset != self.end:
            self.flush()
        if not self.pieces:
            self.start = self.end = offset
        self.pieces += pieces
        self.end += sum(map(len, pieces))
        if self.end - self.start >= CHUNK or len(self.pieces) >= 512:
            self.flush()

    def flush(self) -> None:
        if self.pieces:
            pwritev_all(self.fd, self.pieces, self.start)
            self.pieces = []


def _write_placed(
    out: int, s: _Source, offset: int, run_id: str, src: DirSource, batch: _Batch
) -> tuple[int, int, str]:
    """One entry written at its planned offset: (size, CRC-32, SHA-256), checked as
    `_write_entry` checks it, and its size against the plan."""
    name = f"{run_id}/{s.name}".encode()
    if s.data is not None:
        crc = zlib.crc32(s.data)
        batch.add(offset, [local_header(name, crc, len(s.data)), s.data])
        return len(s.data), crc, hashlib.sha256(s.data).hexdigest()
    if s.opener is not None:  # the pack, read by offset: its file position is the parent's
        fd, own = s.opener.fileno(), False
    else:
        fd, own = _open_source(src, s), True
    try:
        h, crc, got, at = hashlib.sha256(), 0, 0, offset + LOCAL_LEN + len(name)
        while True:
            chunk = os.pread(fd, CHUNK, got) if not own else os.read(fd, CHUNK)
            if got == 0 and len(chunk) < CHUNK:  # the whole file: header and data at once
                h.update(chunk)
                crc = zlib.crc32(chunk)
                got = len(chunk)
                batch.add(offset, [local_header(name, crc, got), chunk])
                break
            if not chunk:
                pwritev_all(out, [local_header(name, crc, got)], offset)
                break
            pwritev_all(out, [chunk], at + got)
            h.update(chunk)
            crc = zlib.crc32(chunk, crc)
            got += len(chunk)
    finally:
        if own:
            os.close(fd)
    digest = h.hexdigest()
    _check_digest(s, digest)
    if got != s.size:
        raise _changed(s)
    return got, crc, digest


def _write_stream(w: ZipWriter, name: str, bag_name: str, fh: Any) -> Item:
    h = hashlib.sha256()
    w.begin(name)
    while chunk := fh.read(CHUNK):
        w.write(chunk)
        h.update(chunk)
    entry = w.end()
    return Item(bag_name, entry.size, h.hexdigest())
