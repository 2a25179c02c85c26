"""The chronicle (DESIGN.md §8): an append-only, hash-chained ledger of runs, signings,
verifications, restores and replays.

Each line is canonical JSON carrying `prev`, the SHA-256 of the previous line's bytes, and `seq`,
its position; so an edit, deletion, insertion, reordering or truncation breaks the chain at a line
`verify` names. Appends take an exclusive lock on the file and are fsynced; a torn final line
(a crash mid-write) is reported, never silently extended.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .canonical import canonical_bytes, loads_strict, sha256_hex
from .errors import CatalyticError, ErrorCode
from .fsio import fsync_dir, write_all

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChronicleCheck:
    ok: bool
    records: int
    bad_line: int | None = None
    reason: str | None = None


def _parse_line(line: bytes, n: int, prev: str) -> dict[str, Any]:
    try:
        doc = loads_strict(line, what=f"line {n}")
    except CatalyticError as exc:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, exc.message, line=n) from exc
    if not isinstance(doc, dict) or canonical_bytes(doc) != line:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"line {n} is not a canonical record",
                             line=n)
    if doc.get("prev") != prev:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"line {n} does not chain to the line "
                             "before it (edited, inserted, deleted or reordered)", line=n)
    if doc.get("seq") != n:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"line {n} has seq {doc.get('seq')!r}",
                             line=n)
    return doc


def read(path: Path) -> list[dict[str, Any]]:
    """Every record, checked; raises CHRONICLE_INVALID naming the first bad line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot read {path}: {exc.strerror}") from exc
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"line {len(lines)} is torn (no "
                             "final newline: an interrupted append)", line=len(lines))
    records = []
    prev = GENESIS
    for n, line in enumerate(lines[:-1], 1):
        records.append(_parse_line(line, n, prev))
        prev = sha256_hex(line)
    return records


def verify(path: Path) -> ChronicleCheck:
    try:
        records = read(path)
    except CatalyticError as exc:
        return ChronicleCheck(False, 0, exc.details.get("line"), exc.message)
    return ChronicleCheck(True, len(records))


def _tail(fd: int) -> tuple[int, str]:
    """(seq, sha256) of the last line, reading backwards from the end of the file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    end = os.pread(fd, 1, size - 1)
    if end != b"\n":
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, "the last line is torn (an interrupted "
                             "append); run `catalytic chronicle verify`")
    # Read backwards in blocks until the newline that ends the line before the last one.
    body_end = size - 1  # index of the final newline
    pos, buf = body_end, b""
    while True:
        idx = buf.rfind(b"\n")
        if idx >= 0:
            last = buf[idx + 1:]
            break
        if pos == 0:
            last = buf
            break
        step = min(65536, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    try:
        doc = loads_strict(last)
        seq = int(doc["seq"])
    except (CatalyticError, KeyError, TypeError, ValueError) as exc:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, "the last record is unreadable") \
            from exc
    return seq, sha256_hex(last)


def append(path: Path, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # serialises appenders across processes
        seq, prev = _tail(fd)
        record = {"seq": seq + 1, "prev": prev, "kind": kind,
                  "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "data": data}
        line = canonical_bytes(record) + b"\n"
        write_all(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    if seq == 0:
        fsync_dir(path.parent)
    return record
