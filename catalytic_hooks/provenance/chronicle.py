"""The chronicle (docs/FORMATS.md §6): an append-only, hash-chained ledger of runs, signings,
verifications, restores and replays.

Each line is canonical JSON with `seq` (its position), `prev` (the SHA-256 of the previous line's
bytes) and `self` (the SHA-256 of the record without `self`), so an edit anywhere, a deletion,
insertion or reordering breaks the chain at a line `verify` names. The last line has no successor
to vouch for it, so a head file beside the chronicle (`<chronicle>.head`) records the last `seq`
and line hash: deleting or replacing the last line is detected too. Appends take an exclusive lock
and are fsynced; a torn final line (a crash mid-write) is reported, never silently extended.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes, canonical_hash, loads_strict, sha256_hex
from catalytic_hooks.core.clock import stamp_micros
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.fs.dirfd import open_regular_at
from catalytic_hooks.fs.files import atomic_write, read_fd, write_all
from catalytic_hooks.fs.untrusted import read_named

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChronicleCheck:
    ok: bool
    records: int
    bad_line: int | None = None
    reason: str | None = None


def _bad(line: int, reason: str) -> CatalyticError:
    return CatalyticError(ErrorCode.CHRONICLE_INVALID, f"line {line}: {reason}", line=line)


RECORD_KEYS = frozenset({"data", "kind", "prev", "self", "seq", "time"})
_SELF = b',"self":"'
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _load(line: bytes, n: int) -> dict[str, Any]:
    """The record of a line that is exactly its own canonical form. The stdlib parser plus that
    equality accepts what `loads_strict` plus it did, several times faster (a report reads
    every line): duplicate keys or a BOM make the re-rendered bytes differ, and NaN, an
    infinity or a lone surrogate cannot be rendered at all."""
    try:
        doc = json.loads(line)
        ok = isinstance(doc, dict) and canonical_bytes(doc) == line
    except (ValueError, RecursionError) as exc:  # UnicodeError and JSONDecodeError included
        raise _bad(n, f"not a JSON record ({type(exc).__name__})") from exc
    except CatalyticError as exc:  # parsed, but holds what JSON cannot carry (NaN, ...)
        raise _bad(n, f"not a JSON record ({exc.message})") from exc
    if not ok:
        raise _bad(n, "not a canonical record (edited)")
    record: dict[str, Any] = doc
    return record


# Between lines in the one-document form of a whole chronicle (see _load_all). It has neither
# brace, so no occurrence of it can overlap a record's first or last character.
_SEP = '"\\u0000 line"'
_JOIN = "," + _SEP + ","
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _load_all(data: bytes, count: int) -> list[dict[str, Any]] | None:
    """Every line's record in two C calls instead of 2 x `count` (a report reads 10,000 lines),
    or None when anything is off: then `_load` runs line by line and names the first bad one.

    The lines are parsed as one JSON array with the separator string between them, and that
    array is rendered canonically again. When the rendering equals the input split at the
    separator, line for line, each line is exactly the canonical form of its own record (what
    `_load` checks): a record is an object, so it begins with `{` and ends with `}`; a separator
    met inside a record's rendering would add a piece, and none can straddle a record's edge. A
    line holding two records, half of one, a duplicate key, NaN, a BOM or a lone surrogate makes
    the rendering differ (or the parse or the decoding fail)."""
    if count == 0:
        return None
    try:
        lines = data.decode("utf-8").split("\n")[:count]
        doc = json.loads("[" + _JOIN.join(lines) + "]")
        if not isinstance(doc, list) or len(doc) != 2 * count - 1:
            return None
        records = doc[0::2]
        if not all(type(r) is dict for r in records):
            return None
        sep = json.loads(_SEP)
        if not all(type(x) is str and x == sep for x in doc[1::2]):
            return None
        if _ENCODER.encode(doc)[1:-1].split(_JOIN) != lines:
            return None
    except (ValueError, RecursionError):  # UnicodeError and JSONDecodeError included
        return None
    return records


def _self_hash(doc: dict[str, Any], line: bytes) -> str:
    """canonical_hash(the record without `self`). For a record of the appender's shape, those
    bytes are the line without its `,"self":"<hex>"` member (the last one in the line: only an
    int and a string follow it), so nothing is rendered twice."""
    if (
        doc.keys() == RECORD_KEYS
        and isinstance(doc["seq"], int)
        and isinstance(doc["time"], str)
        and isinstance(doc["self"], str)
        and _HEX64.fullmatch(doc["self"])
    ):
        i = line.rfind(_SELF)
        j = i + len(_SELF) + 64
        return sha256_hex(line[:i] + line[j + 1 :])
    return canonical_hash({k: v for k, v in doc.items() if k != "self"})


def _parse_line(line: bytes, n: int, prev: str) -> dict[str, Any]:
    return _check_chain(_load(line, n), line, n, prev)


def _check_chain(doc: dict[str, Any], line: bytes, n: int, prev: str) -> dict[str, Any]:
    if doc.get("self") != _self_hash(doc, line):
        raise _bad(n, "its content does not match its own hash (edited)")
    if doc.get("seq") != n:
        raise _bad(n, f"has seq {doc.get('seq')!r} (lines inserted, deleted or reordered)")
    if doc.get("prev") != prev:
        raise _bad(
            n, "does not chain to the line before it (edited, inserted, deleted or reordered)"
        )
    return doc


def open_regular_at_path(path: Path) -> int:
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_regular_at(dfd, path.name)
    finally:
        os.close(dfd)


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _read_head(path: Path) -> dict[str, Any] | None:
    try:
        # The safe reader: `verify` records into the chronicle of the repository holding the
        # bundle, which may be a download whose head is a link to /dev/zero or a FIFO.
        doc = loads_strict(read_named(head_path(path), 1 << 20), what="chronicle head")
    except FileNotFoundError:
        return None
    except (OSError, CatalyticError) as exc:
        raise CatalyticError(
            ErrorCode.CHRONICLE_INVALID, f"the chronicle head is unreadable: {exc}"
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("seq"), int):
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, "the chronicle head is malformed")
    return doc


def _read_bytes(path: Path) -> bytes:
    try:
        fd = open_regular_at_path(path)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"cannot read {path}: {exc}") from exc
    try:
        return read_fd(fd)
    except OSError as exc:
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot read {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _read_lines(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    return parse_chain(_read_bytes(path))


def parse_chain(data: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a chronicle's bytes and each line's hash; raises CHRONICLE_INVALID naming
    the first line that breaks the chain (without the head, which only a local file has)."""
    records, hashes, error = _parse_prefix(data)
    if error is not None:
        raise error
    return records, hashes


def _parse_prefix(data: bytes) -> tuple[list[dict[str, Any]], list[str], CatalyticError | None]:
    """The records up to the first line that breaks the chain, and that line's error."""
    if not data:
        return [], [], None
    lines = data.split(b"\n")
    bulk = _load_all(data, len(lines) - 1)
    records: list[dict[str, Any]] = []
    hashes: list[str] = []
    prev = GENESIS
    for n, line in enumerate(lines[:-1], 1):
        try:
            if bulk is not None:
                records.append(_check_chain(bulk[n - 1], line, n, prev))
            else:
                records.append(_parse_line(line, n, prev))
        except CatalyticError as exc:
            return records, hashes, exc
        prev = sha256_hex(line)
        hashes.append(prev)
    if lines[-1] != b"":
        return (
            records,
            hashes,
            _bad(len(lines), "torn (no final newline: an interrupted append or a truncation)"),
        )
    return records, hashes, None


def read(path: Path) -> list[dict[str, Any]]:
    """Every record, checked against the chain and the head; raises CHRONICLE_INVALID naming
    the first bad line."""
    records, hashes = _read_lines(path)
    _check_head(path, records, hashes)
    return records


@dataclass(frozen=True)
class ChronicleView:
    """What a reader may show of a chronicle: every record when it verifies, else only the
    records before the first bad line (nothing after it is vouched for)."""

    records: list[dict[str, Any]]
    check: ChronicleCheck
    sha256: str  # of the bytes read
    lines: int  # lines in the file (a torn tail counts as one)


def inspect(path: Path) -> ChronicleView:
    """One read of the chronicle: the verified records and the verdict, for reports."""
    data = _read_bytes(path)
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    records, hashes, error = _parse_prefix(data)
    if error is None:
        try:
            _check_head(path, records, hashes)
        except CatalyticError as exc:
            error = exc
    if error is None:
        return ChronicleView(records, ChronicleCheck(True, len(records)), sha256_hex(data), lines)
    bad = error.details.get("line")
    keep = records[: bad - 1] if isinstance(bad, int) and bad >= 1 else []
    return ChronicleView(
        keep,
        ChronicleCheck(False, len(keep), bad if isinstance(bad, int) else None, error.message),
        sha256_hex(data),
        lines,
    )


def _check_head(path: Path, records: list[dict[str, Any]], hashes: list[str]) -> None:
    head = _read_head(path)
    n = len(records)
    if head is None:
        if n:
            raise _bad(n, "the chronicle head is missing")
        return
    if head["seq"] > n:
        raise _bad(n + 1, f"missing: the head says {head['seq']} record(s) (deleted or truncated)")
    if head["seq"] < n:
        raise _bad(
            head["seq"] + 1,
            "beyond the head (appended without advancing the head: an "
            "interrupted append, or an insertion)",
        )
    if n and head.get("line_sha256") != hashes[-1]:
        raise _bad(n, "does not match the head (the last line was replaced)")


def verify(path: Path) -> ChronicleCheck:
    try:
        records = read(path)
    except CatalyticError as exc:
        return ChronicleCheck(False, 0, exc.details.get("line"), exc.message)
    return ChronicleCheck(True, len(records))


def _last_line(fd: int) -> bytes | None:
    """The last complete line (without its newline), read backwards from the end; None for an
    empty file. A torn tail (no final newline) is returned as is, so it fails the head check."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    end = size - 1 if os.pread(fd, 1, size - 1) == b"\n" else size
    buf, pos = b"", end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n")
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


def append(path: Path, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW and a regular-file check: a chronicle committed as a symlink (or a FIFO) must
    # not redirect the append to a file of the attacker's choosing, nor hang it.
    try:
        fd = os.open(
            path,
            os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
            0o644,
        )
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.CHRONICLE_INVALID,
            f"cannot open the chronicle {path}: {exc.strerror} (a symlink is never followed)",
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CatalyticError(ErrorCode.CHRONICLE_INVALID, f"{path} is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)  # serialises appenders across processes
        head = _read_head(path)
        last = _last_line(fd)
        last_hash = sha256_hex(last) if last is not None else GENESIS
        count = head["seq"] if head is not None else 0
        # Never extend a chronicle whose tail does not match its head (torn, truncated, edited).
        if (head is None) != (last is None) or (
            head is not None and head.get("line_sha256") != last_hash
        ):
            raise CatalyticError(
                ErrorCode.CHRONICLE_INVALID,
                "the chronicle does not match its "
                "head; run `catalytic chronicle verify` before appending",
            )
        body = {
            "seq": count + 1,
            "prev": last_hash,
            "kind": kind,
            "time": stamp_micros(),
            "data": data,
        }
        record = {**body, "self": canonical_hash(body)}
        line = canonical_bytes(record)
        write_all(fd, line + b"\n")
        os.fsync(fd)
        atomic_write(
            head_path(path),
            canonical_bytes({"seq": record["seq"], "line_sha256": sha256_hex(line)}),
        )
    finally:
        os.close(fd)  # closing releases the lock
    return record


def record(repo_top: Path, policy: Policy, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Append one record to the chronicle of the repository at `repo_top` (the engines call
    this themselves, so a library caller cannot skip the ledger)."""
    return append(repo_top / policy.chronicle, kind, data)


def record_for(start: Path, kind: str, data: dict[str, Any]) -> None:
    """Record into the chronicle of the repository containing `start`, if there is one."""
    from catalytic_hooks.core.policy import load_policy
    from catalytic_hooks.git.repo import Repo

    repo = Repo.find(start)
    if repo is not None:
        record(repo.top, load_policy(repo.top), kind, data)
