"""The canonical zip of an archive (docs/FORMATS.md §9): written here, and parsed here from the
raw bytes by a reader that accepts exactly that form and rejects, never repairs.

Canonical: every entry stored (method 0), flags 0x0800 (UTF-8 names) and nothing else, time and
date fixed at 1980-01-01 00:00, version needed 20, made by 0x0314 (UNIX, 2.0), external
attributes `0o100644 << 16`, no extra field, no comment anywhere, no data descriptor, no
directory entry, no ZIP64; the entries tile the file: the first local header at offset 0, each
entry's data followed at once by the next local header, the last by the central directory (in the
same order), followed at once by the end record, which ends the file.

The reader (`parse`) checks all of that from the central directory and every local header before
anything is extracted, so a zip that another tool would read differently (overlapping or
"quoted" entries, a local header that disagrees with the central directory, data before, between
or after the structure, a prepended stub) never gets as far as a write. Sizes are then enforced
again while the data streams (read.py), never trusted from a header.
"""

from __future__ import annotations

import os
import queue
import stat
import struct
import threading
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
END_SIG = 0x06054B50
ZIP64_LOCATOR_SIG = 0x07064B50
VERSION_NEEDED = 20
VERSION_MADE_BY = (3 << 8) | 20
FLAGS = 0x0800  # bit 11: names are UTF-8
DOS_TIME = 0
DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
EXTERNAL = (stat.S_IFREG | 0o644) << 16
LOCAL_LEN = 30
CENTRAL_LEN = 46
END_LEN = 22
MAX_NAME = 1024
MAX_U32 = 0xFFFFFFFF

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")


def invalid(reason: str, message: str, **details: object) -> CatalyticError:
    """The one error of a refused archive: `details.reason` names the class."""
    return CatalyticError(
        ErrorCode.ARCHIVE_INVALID,
        f"archive refused ({reason}): {message}",
        reason=reason,
        **details,
    )


@dataclass(frozen=True)
class Limits:
    """What an archive may hold (README "Archives"; policy keys `archive_max_*`)."""

    max_entries: int = 50_000
    max_entry_bytes: int = 4 * 1024**3 - 1
    max_total_bytes: int = 4 * 1024**3 - 1
    max_ratio: int = 100  # declared uncompressed/compressed; only stored entries are read at all


@dataclass(frozen=True)
class Entry:
    name: str
    offset: int  # of the local header
    size: int
    crc: int

    @property
    def data_offset(self) -> int:
        return self.offset + LOCAL_LEN + len(self.name.encode())

    @property
    def end(self) -> int:
        return self.data_offset + self.size


# -- writing ----------------------------------------------------------------------------------


_FLUSH_BYTES = 1 << 20  # pending bytes written with one writev
_FLUSH_PIECES = 512  # well under IOV_MAX (1024 on Linux)
_IN_FLIGHT = 16  # batches queued for the writing thread: at most about 16 MiB held
WRITEBACK = 8 << 20  # bytes written between two requests to start their writeback


def pwritev_all(fd: int, pieces: list[bytes], offset: int) -> int:
    """Every byte of `pieces`, in order, from `offset` (pwritev may write less than asked:
    loop); the offset after them."""
    i = 0
    while i < len(pieces):
        n = os.pwritev(fd, pieces[i:] if i else pieces, offset)
        offset += n
        while i < len(pieces) and n >= len(pieces[i]):
            n -= len(pieces[i])
            i += 1
        if n:
            pieces = [pieces[i][n:], *pieces[i + 1 :]]
            i = 0
    return offset


def local_header(raw_name: bytes, crc: int, size: int) -> bytes:
    """An entry's local header, canonical (stored, fixed time and flags), with its name."""
    return (
        _LOCAL.pack(
            LOCAL_SIG,
            VERSION_NEEDED,
            FLAGS,
            0,
            DOS_TIME,
            DOS_DATE,
            crc,
            size,
            size,
            len(raw_name),
            0,
        )
        + raw_name
    )


class _Drain:
    """The zip's batches written in order by one thread while the caller reads and hashes the
    next ones: pwritev releases the GIL, and once the page cache holds its share of dirty pages
    every write is held to the disk's pace, so a large archive's writes would otherwise add to
    its hashing instead of overlapping it. Every write names its offset (nothing depends on the
    file position, which a second writer of other entries would share). Memory: `_IN_FLIGHT`
    batches."""

    def __init__(self, fd: int):
        self.fd = fd
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[list[bytes], int] | None] = queue.Queue(_IN_FLIGHT)
        self._flushed = 0
        self.thread = threading.Thread(target=self._run, name="zip-writer", daemon=True)
        self.thread.start()

    def _early_writeback(self, end: int) -> None:
        """Start the disk writes of every full `WRITEBACK` bytes just written, without waiting
        for them: the caller fsyncs the archive before linking it into place, and 200 MB the
        kernel had not yet begun to write made that fsync the last second of `archive create`.
        POSIX_FADV_DONTNEED on pages still dirty starts their writeback (Linux) and drops
        nothing; where the call is missing, the fsync does it all."""
        if end - self._flushed >= WRITEBACK and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, self._flushed, end - self._flushed, os.POSIX_FADV_DONTNEED)
            self._flushed = end

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # failed: drain without writing, so the caller never blocks
            pieces, offset = item
            try:
                self._early_writeback(pwritev_all(self.fd, pieces, offset))
            except BaseException as exc:  # handed to the caller, raised there
                self.error = exc

    def put(self, pieces: list[bytes], offset: int) -> None:
        """Write `pieces` from `offset`, in order after everything put before."""
        self.check()
        self.queue.put((pieces, offset))

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Everything put is written (or the first failure raised); the thread has ended."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self.check()


class ZipWriter:
    """Writes a canonical zip through a file descriptor. A whole entry (most are small) is
    queued with its final header, and the queue goes to the writing thread (`_Drain`) one
    batch of about a MiB at a time, never copied into a buffer; a streamed entry's local header
    is written first with the size and CRC left open and patched in place (pwrite, in order)
    once the data has gone through, so an entry is read once and the zip needs no data
    descriptor. `skip` leaves a span that another writer fills (archive/create.py's second
    process) and `adopt` records the entries it wrote there. `close()` (which `finish()`
    calls) must end every writer."""

    def __init__(self, fd: int):
        self.entries: list[Entry] = []
        self.pos = 0  # bytes of the zip so far, queued or written
        self._queue: list[bytes] = []
        self._queued = 0
        self._drain = _Drain(fd)

    def _put(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued += len(data)
        if self._queued >= _FLUSH_BYTES or len(self._queue) >= _FLUSH_PIECES:
            self.flush()

    def flush(self) -> None:
        # the queue is the bytes just before `pos`: they start at `pos - _queued`
        if self._queue:
            self._drain.put(self._queue, self.pos - self._queued)
            self._queue = []
            self._queued = 0

    def close(self) -> None:
        """Every queued byte written; the writing thread ended; its first failure raised."""
        self.flush()
        self._drain.close()

    def skip(self, end: int) -> None:
        """Continue at `end`: the bytes from here to there are another writer's."""
        self.flush()
        self.pos = end

    def adopt(self, entry: Entry) -> None:
        """An entry another writer wrote, in its place in the central directory."""
        self.entries.append(entry)

    def _local(self, name: bytes, crc: int, size: int) -> bytes:
        return local_header(name, crc, size)

    def begin(self, name: str) -> None:
        raw = name.encode()
        self._open = (name, self.pos)
        self.pos += LOCAL_LEN + len(raw)  # before _put: a flush places the queue by `pos`
        self._put(self._local(raw, 0, 0))
        self._crc = 0
        self._size = 0

    def write(self, data: bytes) -> None:
        self.pos += len(data)
        self._put(data)
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)

    def end(self) -> Entry:
        name, offset = self._open
        if self._size > MAX_U32 or self.pos > MAX_U32:
            raise CatalyticError(
                ErrorCode.USAGE,
                "the archive would exceed 4 GiB, the limit of this format version (no ZIP64)",
            )
        self.flush()
        self._drain.put([self._local(name.encode(), self._crc, self._size)], offset)
        entry = Entry(name, offset, self._size, self._crc)
        self.entries.append(entry)
        return entry

    def add(self, name: str, data: bytes) -> Entry:
        """A whole entry at once: its header is written final, nothing is patched."""
        raw = name.encode()
        entry = Entry(name, self.pos, len(data), zlib.crc32(data))
        if entry.size > MAX_U32 or self.pos + LOCAL_LEN + len(raw) + len(data) > MAX_U32:
            raise CatalyticError(
                ErrorCode.USAGE,
                "the archive would exceed 4 GiB, the limit of this format version (no ZIP64)",
            )
        self._queue += (self._local(raw, entry.crc, entry.size), data)
        self._queued += LOCAL_LEN + len(raw) + len(data)
        self.pos += LOCAL_LEN + len(raw) + len(data)
        self.entries.append(entry)
        if self._queued >= _FLUSH_BYTES or len(self._queue) >= _FLUSH_PIECES:
            self.flush()
        return entry

    def finish(self) -> int:
        """Central directory and end record; returns the archive's size."""
        cd_start = self.pos
        for e in self.entries:
            raw = e.name.encode()
            self.pos += CENTRAL_LEN + len(raw)
            self._put(
                _CENTRAL.pack(
                    CENTRAL_SIG,
                    VERSION_MADE_BY,
                    VERSION_NEEDED,
                    FLAGS,
                    0,
                    DOS_TIME,
                    DOS_DATE,
                    e.crc,
                    e.size,
                    e.size,
                    len(raw),
                    0,
                    0,
                    0,
                    0,
                    EXTERNAL,
                    e.offset,
                )
                + raw
            )
        n = len(self.entries)
        if n > 0xFFFE:
            raise CatalyticError(
                ErrorCode.USAGE,
                f"{n} entries: more than this format version holds (65,534, no ZIP64)",
            )
        end = _END.pack(END_SIG, 0, 0, n, n, self.pos - cd_start, cd_start, 0)
        self.pos += END_LEN
        self._put(end)
        self.close()
        return self.pos


# -- reading ----------------------------------------------------------------------------------


def _pread(fd: int, size: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _find_end(fd: int, size: int) -> int:
    """Offset of the end record, which must end the file exactly (no comment, nothing after)."""
    if size < END_LEN:
        raise invalid("TRUNCATED", f"{size} bytes is too short for a zip")
    tail_len = min(size, 65535 + END_LEN + 1024)
    tail = _pread(fd, tail_len, size - tail_len)
    at = tail_len - END_LEN
    if struct.unpack_from("<I", tail, at)[0] == END_SIG:
        comment = struct.unpack_from("<H", tail, at + 20)[0]
        if comment:
            raise invalid("COMMENT", "the archive has a comment")
        return size - END_LEN
    found = tail.rfind(struct.pack("<I", END_SIG))
    if found < 0:
        raise invalid("TRUNCATED", "no end of central directory record (not a zip, or cut short)")
    comment = struct.unpack_from("<H", tail, found + 20)[0] if found + END_LEN <= tail_len else 0
    if found + END_LEN + comment == tail_len and comment:
        raise invalid("COMMENT", "the archive has a comment")
    raise invalid("TRAILING_DATA", "bytes follow the end of the zip structure")


def _check_end(fd: int, end_at: int, limits: Limits) -> tuple[int, int, int]:
    _, disk, cd_disk, n_disk, n, cd_size, cd_off, _ = _END.unpack(_pread(fd, END_LEN, end_at))
    if disk or cd_disk or n_disk != n:
        raise invalid("MULTI_DISK", "a multi-disk (spanned) zip")
    if n > limits.max_entries:
        raise invalid(
            "TOO_MANY_ENTRIES",
            f"{n}{'+' if n == 0xFFFF else ''} entries, over the limit of {limits.max_entries}",
            entries=n,
            limit=limits.max_entries,
        )
    locator = (
        end_at >= 20 and struct.unpack("<I", _pread(fd, 4, end_at - 20))[0] == ZIP64_LOCATOR_SIG
    )
    if locator or MAX_U32 in (cd_size, cd_off):
        raise invalid("ZIP64", "ZIP64 records (this format version has none)")
    if n == 0:
        raise invalid("LAYOUT", "the zip holds no entry")
    # Read whole next: its size must fit n records (no extra field nor comment is allowed),
    # or a sparse file declaring GiBs would cost that much memory before any record is read.
    if not n * CENTRAL_LEN <= cd_size <= n * (CENTRAL_LEN + MAX_NAME):
        raise invalid(
            "CENTRAL_DIRECTORY", f"a central directory of {cd_size} bytes cannot hold {n} records"
        )
    if cd_off + cd_size > end_at:
        raise invalid("TRUNCATED", "the central directory runs past the end record")
    if cd_off + cd_size < end_at:
        raise invalid("GAP", "data between the central directory and the end record")
    return n, cd_off, cd_size


def _name_problem(raw: bytes) -> tuple[str, str] | None:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "NAME_NOT_UTF8", "a name is not UTF-8"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "NAME_CONTROL", f"name {name!r} holds a NUL or control character"
    if "\\" in name:
        return "NAME_BACKSLASH", f"name {name!r} holds a backslash"
    if name.startswith("/"):
        return "NAME_ABSOLUTE", f"name {name!r} is absolute"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "NAME_DRIVE", f"name {name!r} starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "NAME_TRAVERSAL", f"name {name!r} has a '..' component"
    if name.endswith("/"):
        return "DIRECTORY_ENTRY", f"{name!r} is a directory entry"
    if (
        any(p in ("", ".") for p in parts)
        or len(raw) > MAX_NAME
        or any(len(p.encode()) > 255 for p in parts)
        or has_git_component(name)
    ):
        return "NAME_UNSAFE", f"name {name!r} is not a safe relative path"
    if unicodedata.normalize("NFC", name) != name:
        return "NAME_NOT_NFC", f"name {name!r} is not in Unicode normal form C"
    return None


def fold(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def _check_central(rec: tuple[int, ...], raw_name: bytes, extra: bytes, limits: Limits) -> None:
    """One central directory record, field by field (the order decides which class a record
    that breaks several rules is refused as)."""
    (
        _,
        made_by,
        needed,
        flags,
        method,
        time_,
        date,
        _crc,
        csize,
        usize,
        _nl,
        el,
        cl,
        disk,
        internal,
        external,
        _off,
    ) = rec
    if flags & 0x41 or method == 99:
        raise invalid("ENCRYPTED", "an encrypted entry")
    if flags & 0x08:
        raise invalid("DATA_DESCRIPTOR", "an entry with a data descriptor")
    if MAX_U32 in (csize, usize):
        declared = _zip64_size(extra)
        if declared is not None and declared > limits.max_entry_bytes:
            raise invalid(
                "ENTRY_TOO_LARGE",
                f"an entry declares {declared} bytes, over the limit of {limits.max_entry_bytes}",
                declared=declared,
            )
        raise invalid("ZIP64", "ZIP64 entry sizes (this format version has none)")
    if usize > limits.max_entry_bytes:
        raise invalid(
            "ENTRY_TOO_LARGE",
            f"an entry declares {usize} bytes, over the limit of {limits.max_entry_bytes}",
            declared=usize,
        )
    if method != 0:
        if csize and usize > limits.max_ratio * csize:
            raise invalid(
                "RATIO",
                f"an entry declares a compression ratio over {limits.max_ratio}",
                ratio=usize // csize,
            )
        raise invalid(
            "COMPRESSED", f"an entry is compressed (method {method}); archives store every entry"
        )
    kind = stat.S_IFMT(external >> 16)
    if kind == stat.S_IFLNK or _has_extra(extra, 0x000D):
        raise invalid("LINK", "a symbolic or hard link entry")
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        raise invalid("SPECIAL_FILE", "a device, FIFO or socket entry")
    if kind == stat.S_IFDIR or external & 0x10:
        raise invalid("DIRECTORY_ENTRY", "a directory entry")
    problem = _name_problem(raw_name)
    if problem is not None:
        raise invalid(*problem)
    if el:
        raise invalid("EXTRA_FIELD", "an entry has an extra field")
    if cl:
        raise invalid("ENTRY_COMMENT", "an entry has a comment")
    if disk:
        raise invalid("MULTI_DISK", "an entry on another disk")
    if csize != usize:
        raise invalid("SIZE_MISMATCH", "a stored entry's sizes differ")
    for field, got, want in (
        ("flags", flags, FLAGS),
        ("version_made_by", made_by, VERSION_MADE_BY),
        ("version_needed", needed, VERSION_NEEDED),
        ("time", time_, DOS_TIME),
        ("date", date, DOS_DATE),
        ("internal_attributes", internal, 0),
        ("external_attributes", external, EXTERNAL),
    ):
        if got != want:
            raise invalid("NOT_CANONICAL", f"{field} is {got:#x}, not {want:#x}", field=field)


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    """(header id, data) of each extra field that lies wholly inside `extra`; a field whose
    declared length runs past the end stops the walk (the entry is refused for having extra
    fields at all, so nothing is lost by not reading a torn one)."""
    pos = 0
    while pos + 4 <= len(extra):
        hid, hlen = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + hlen > len(extra):
            return
        yield hid, extra[pos + 4 : pos + 4 + hlen]
        pos += 4 + hlen


def _has_extra(extra: bytes, wanted: int) -> bool:
    return any(hid == wanted for hid, _ in _extra_fields(extra))


def _zip64_size(extra: bytes) -> int | None:
    for hid, data in _extra_fields(extra):
        if hid == 0x0001 and len(data) >= 8:
            return int(struct.unpack_from("<Q", data)[0])
    return None


def _read_central(fd: int, n: int, cd_off: int, cd_size: int, limits: Limits) -> list[Entry]:
    blob = _pread(fd, cd_size, cd_off)
    if len(blob) != cd_size:
        raise invalid("TRUNCATED", "the central directory is cut short")
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    folded: dict[str, str] = {}
    pos = 0
    for _ in range(n):
        if pos + CENTRAL_LEN > cd_size or struct.unpack_from("<I", blob, pos)[0] != CENTRAL_SIG:
            raise invalid("CENTRAL_DIRECTORY", "a central directory record is damaged")
        rec = _CENTRAL.unpack_from(blob, pos)
        nl, el, cl = rec[10], rec[11], rec[12]
        end = pos + CENTRAL_LEN + nl + el + cl
        if end > cd_size:
            raise invalid("CENTRAL_DIRECTORY", "a central directory record runs past its end")
        raw = blob[pos + CENTRAL_LEN : pos + CENTRAL_LEN + nl]
        _check_central(rec, raw, blob[pos + CENTRAL_LEN + nl : pos + CENTRAL_LEN + nl + el], limits)
        name = raw.decode()
        if name in seen:
            raise invalid("NAME_DUPLICATE", f"{name!r} appears twice", name=name)
        key = fold(name)
        if key in folded:
            raise invalid(
                "NAME_COLLISION",
                f"{name!r} and {folded[key]!r} are the same name "
                "after case folding or Unicode normalisation",
                name=name,
            )
        seen[name] = name
        folded[key] = name
        entries.append(Entry(name, rec[16], rec[9], rec[7]))
        pos = end
    if pos != cd_size:
        raise invalid("GAP", "data inside the central directory after its last record")
    return entries


def _check_local(fd: int, e: Entry) -> None:
    head = _pread(fd, LOCAL_LEN + len(e.name.encode()), e.offset)
    if len(head) < LOCAL_LEN or struct.unpack_from("<I", head)[0] != LOCAL_SIG:
        raise invalid(
            "LOCAL_HEADER_MISMATCH",
            f"no local header where the central directory puts {e.name!r}",
            name=e.name,
        )
    (_, needed, flags, method, time_, date, crc, csize, usize, nl, el) = _LOCAL.unpack_from(head)
    want = (
        VERSION_NEEDED,
        FLAGS,
        0,
        DOS_TIME,
        DOS_DATE,
        e.crc,
        e.size,
        e.size,
        len(e.name.encode()),
    )
    if (needed, flags, method, time_, date, crc, csize, usize, nl) != want or head[
        LOCAL_LEN:
    ] != e.name.encode():
        raise invalid(
            "LOCAL_HEADER_MISMATCH",
            f"the local header of {e.name!r} disagrees with the central directory",
            name=e.name,
        )
    if el:
        raise invalid(
            "EXTRA_FIELD", f"the local header of {e.name!r} has an extra field", name=e.name
        )


def _check_overlap(entries: list[Entry], cd_off: int) -> None:
    """No byte belongs to two entries (nor to an entry and the central directory), and the
    central directory lists the entries in file order: a "quoted" entry, whose local header
    sits inside another entry's data, or two records naming one entry, are refused here."""
    at = 0
    for e in entries:
        if e.offset < at or e.offset >= cd_off:
            raise invalid("OVERLAP", f"{e.name!r} overlaps the entry before it", name=e.name)
        at = e.end
    if at > cd_off:
        raise invalid("OVERLAP", "the last entry overlaps the central directory")


def _check_gaps(entries: list[Entry], cd_off: int) -> None:
    """Entries tile the file from offset 0 to the central directory: no byte before, between
    or after them belongs to no entry (a prepended stub, hidden data)."""
    at = 0
    for e in entries:
        if e.offset > at:
            raise invalid(
                "PREPENDED_DATA" if at == 0 else "GAP",
                f"{e.offset - at} bytes before {e.name!r} belong to no entry",
                name=e.name,
            )
        at = e.end
    if at < cd_off:
        raise invalid("GAP", "bytes between the last entry and the central directory")


def parse(fd: int, size: int, limits: Limits) -> list[Entry]:
    """Every structural rule, from the raw bytes, before anything is written; the entries in
    file order. Raises ARCHIVE_INVALID with `details.reason` naming the broken rule."""
    end_at = _find_end(fd, size)
    n, cd_off, cd_size = _check_end(fd, end_at, limits)
    entries = _read_central(fd, n, cd_off, cd_size, limits)
    total = sum(e.size for e in entries)
    if total > limits.max_total_bytes:
        raise invalid(
            "TOTAL_TOO_LARGE",
            f"entries declare {total} bytes, over the limit of {limits.max_total_bytes}",
            declared=total,
        )
    _check_overlap(entries, cd_off)
    for e in entries:
        _check_local(fd, e)
    _check_gaps(entries, cd_off)
    return entries
