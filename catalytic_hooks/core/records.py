"""Compact manifests: the sorted `path:value\\n` records of a tree digest (docs/FORMATS.md §1) kept
as one bytes buffer with two integer arrays, instead of a dict of 100,000 (or 1,000,000) string
pairs.

A dict of 1M entries costs about 250 MB and a second or more to build, and most digests never need
it: a clean working tree is exactly the index snapshot, whose digest is stored, and a run only
needs the few entries it changed. `Records` answers lookups by binary search on the buffer (UTF-8
byte order is code-point order), and `Overlay` is a base plus a few removed and replaced entries,
hashed segment by segment without copying the base.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate

_MAGIC = b"catalytic-records v2\n"
# Every byte json.dumps(ensure_ascii=False) leaves as it is (the newline is the records' own).
_JSON_PLAIN = bytes(
    b for b in range(256) if not ((b < 0x20 and b != 0x0A) or b in (0x22, 0x5C, 0x7F))
)


_json_memo: dict[str, bytes] = {}


def _not_utf8(exc: UnicodeEncodeError) -> Exception:
    # Imported here: the digest's quick path loads records without the error machinery (enum).
    from catalytic_hooks.core.errors import CatalyticError, ErrorCode

    return CatalyticError(ErrorCode.DIGEST_COMPUTATION_FAILED, f"a path is not valid UTF-8: {exc}")


def encode_path(path: str) -> bytes:
    """A path's record key; the digest's error for a path that is not UTF-8."""
    try:
        return path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _not_utf8(exc) from exc


class Records:
    """Sorted records in `text`; record i spans `starts[i]:starts[i + 1]` and its path is the
    first `klens[i]` bytes. Paths are checked by the caller (no newline, CR or NUL)."""

    __slots__ = ("digest", "klens", "starts", "text")

    def __init__(self, text: bytes | bytearray, starts: array[int], klens: array[int], digest: str):
        self.text, self.starts, self.klens, self.digest = text, starts, klens, digest

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> Records:
        keys = sorted(values)
        vals = [values[k] for k in keys]
        try:
            text = "".join(map("{}:{}\n".format, keys, vals)).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _not_utf8(exc) from exc
        if len(text) == sum(map(len, keys)) + sum(map(len, vals)) + 2 * len(keys):
            klens = array("Q", map(len, keys))  # all ASCII: characters are bytes
        else:
            klens = array("Q", (len(k.encode()) for k in keys))
        starts = array(
            "Q", accumulate((k + len(v) + 2 for k, v in zip(klens, vals, strict=True)), initial=0)
        )
        return cls(text, starts, klens, hashlib.sha256(text).hexdigest())

    @classmethod
    def from_arrays(cls, text: bytes, starts: bytes, klens: bytes) -> Records:
        """Records rendered and sorted elsewhere (a hashing worker's piece of a listing), with
        their arrays as array("Q") bytes."""
        s, k = array("Q"), array("Q")
        s.frombytes(starts)
        k.frombytes(klens)
        return cls(text, s, k, hashlib.sha256(text).hexdigest())

    def __len__(self) -> int:
        return len(self.klens)

    def key(self, i: int) -> bytes | bytearray:
        s = self.starts[i]
        return self.text[s : s + self.klens[i]]

    def value(self, i: int) -> str:
        return self.text[self.starts[i] + self.klens[i] + 1 : self.starts[i + 1] - 1].decode()

    def find(self, key: bytes) -> int:
        """Index of the first record whose path is >= key (bisect_left)."""
        lo, hi = 0, len(self.klens)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def get(self, path: str) -> str | None:
        kb = encode_path(path)
        i = self.find(kb)
        return self.value(i) if i < len(self.klens) and self.key(i) == kb else None

    def items(self) -> Iterator[tuple[str, str]]:
        text, starts, klens = self.text, self.starts, self.klens
        for i in range(len(klens)):
            s, k = starts[i], klens[i]
            yield text[s : s + k].decode(), text[s + k + 1 : starts[i + 1] - 1].decode()

    def dump(self, meta: str) -> tuple[bytes, bytes]:
        """File form, in two parts so that loading copies nothing: the index (magic, SHA-256 of
        the rest, the caller's `meta` text, the digest, the arrays) and the records themselves
        (checked on load against the digest, which is their SHA-256)."""
        head = json.dumps([meta, self.digest, len(self.klens)]).encode()
        body = len(head).to_bytes(8, "little") + head + self.starts.tobytes() + self.klens.tobytes()
        return _MAGIC + hashlib.sha256(body).digest() + body, bytes(self.text)

    @classmethod
    def load(cls, index: bytes, text: bytes) -> tuple[str, Records] | None:
        """(meta, records), or None for anything that is not exactly what `dump` wrote."""
        n0 = len(_MAGIC) + 32
        if not index.startswith(_MAGIC) or len(index) < n0 + 8:
            return None
        view = memoryview(index)
        if hashlib.sha256(view[n0:]).digest() != index[len(_MAGIC) : n0]:
            return None  # corrupt or truncated: never trusted, rebuilt by the caller
        hlen = int.from_bytes(index[n0 : n0 + 8], "little")
        try:
            meta, digest, n = json.loads(index[n0 + 8 : n0 + 8 + hlen])
        except ValueError:
            return None
        if not isinstance(meta, str) or not isinstance(digest, str) or not isinstance(n, int):
            return None
        pos = n0 + 8 + hlen
        starts, klens = array("Q"), array("Q")
        size = starts.itemsize
        if len(index) != pos + (2 * n + 1) * size:
            return None
        starts.frombytes(view[pos : pos + (n + 1) * size])
        klens.frombytes(view[pos + (n + 1) * size :])
        if starts[n] != len(text) or hashlib.sha256(text).hexdigest() != digest:
            return None
        return meta, cls(text, starts, klens, digest)

    @classmethod
    def concat(cls, parts: Iterable[Records]) -> Records:
        """Records of consecutive key ranges joined in one buffer (each part sorted, the parts
        in order; parts are consumed one by one, so a caller can stream them); anything out
        of order is sorted as a whole instead."""
        text, starts, klens = bytearray(), array("Q", [0]), array("Q")
        last: bytes | bytearray | None = None
        ordered = True
        for p in parts:
            if not len(p):
                continue
            ordered = ordered and (last is None or last < p.key(0))
            last = p.key(len(p) - 1)
            base = len(text)
            starts.extend(s + base for s in p.starts[1:])
            klens.extend(p.klens)
            text += p.text
        whole = cls(text, starts, klens, hashlib.sha256(text).hexdigest())
        return whole if ordered else cls.from_values(dict(Overlay(whole).items()))


class Overlay(Mapping[str, str]):
    """A manifest given as `base` minus `removed` plus `added` (an added path replaces the base's
    value). Nothing of the base is copied; the digest hashes the base between the changes. A
    read-only mapping of path to digest value; `canonical_bytes` renders it without a dict."""

    __slots__ = ("_count", "added", "base", "removed")

    def __init__(
        self,
        base: Records,
        removed: frozenset[str] = frozenset(),
        added: Mapping[str, str] | None = None,
    ):
        self.base, self.removed, self.added = base, removed, dict(added or {})
        self._count: int | None = None

    def __getitem__(self, path: str) -> str:
        value = self.get(path)
        if value is None:
            raise KeyError(path)
        return value

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items())

    def __len__(self) -> int:
        if self._count is None:
            self._count = self.count()
        return self._count

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def canonical_json(self) -> bytes:
        # A run renders PRE and POST, which are usually the same records: render them once.
        digest = self.digest()
        if digest not in _json_memo:
            _json_memo.clear()
            _json_memo[digest] = self.json()
        return _json_memo[digest]

    @property
    def touched(self) -> frozenset[str]:
        return self.removed | self.added.keys()

    def _cuts(self) -> list[tuple[int, int, str, str | None]]:
        """(first, end, path, new value) in base record indexes, in order: records
        first..end-1 (none or the one for `path`) are replaced by `path` (None: by nothing)."""
        cuts: list[tuple[int, int, str, str | None]] = []
        b = self.base
        for path in sorted(self.touched):
            kb = encode_path(path)
            i = b.find(kb)
            present = i < len(b) and b.key(i) == kb
            value = self.added.get(path)
            if present or value is not None:
                cuts.append((i, i + 1 if present else i, path, value))
        return cuts

    def digest(self) -> str:
        if not self.touched:
            return self.base.digest
        h = hashlib.sha256()
        for piece in self._pieces():
            h.update(piece)
        return h.hexdigest()

    def _pieces(self) -> Iterator[bytes | memoryview]:
        """The records' text in order: runs of the base, no copy, and the added records."""
        view, starts, pos = memoryview(self.base.text), self.base.starts, 0
        for first, end, path, value in self._cuts():
            yield view[starts[pos] : starts[first]]
            if value is not None:
                yield encode_path(path) + b":" + value.encode("ascii") + b"\n"
            pos = end
        yield view[starts[pos] :]

    def count(self) -> int:
        return len(self.base) + sum(
            (v is not None) - (end - first) for first, end, _, v in self._cuts()
        )

    def get(self, path: str, default: None = None) -> str | None:  # type: ignore[override]
        if path in self.added:
            return self.added[path]
        return None if path in self.removed else self.base.get(path)

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        b, pos = self.base, 0
        for first, end, path, value in self._cuts():
            for i in range(pos, first):
                yield b.key(i).decode(), b.value(i)
            if value is not None:
                yield path, value
            pos = end
        for i in range(pos, len(b)):
            yield b.key(i).decode(), b.value(i)

    def to_dict(self) -> dict[str, str]:
        return dict(self.items())

    def materialize(self) -> Records:
        """The manifest as Records of its own (the base's unchanged records shifted)."""
        if not self.touched:
            return self.base
        b = self.base
        starts, klens = array("Q", [0]), array("Q")
        pos, shift = 0, 0
        for first, end, path, value in self._cuts():
            starts.extend(s + shift for s in b.starts[pos + 1 : first + 1])
            klens.extend(b.klens[pos:first])
            shift -= b.starts[end] - b.starts[first]
            if value is not None:
                kb = encode_path(path)
                rec_len = len(kb) + len(value) + 2
                starts.append(starts[-1] + rec_len)
                klens.append(len(kb))
                shift += rec_len
            pos = end
        starts.extend(s + shift for s in b.starts[pos + 1 :])
        klens.extend(b.klens[pos:])
        text = self.text()
        return Records(text, starts, klens, hashlib.sha256(text).hexdigest())

    def text(self) -> bytes | bytearray:
        """The records of the manifest, as the digest hashes them."""
        if not self.touched:
            return self.base.text
        return b"".join(self._pieces())

    def json(self) -> bytes:
        """The canonical JSON of the manifest object (sorted keys, no spaces, UTF-8): the bytes
        `canonical_bytes` gives for the dict, without building it.

        When every value is a plain 64-hex SHA-256 (no `symlink:`/`gitlink:` anywhere) and no
        byte needs escaping, each record's separator is the colon 65 bytes before its end, so
        the members are sliced out of the records directly."""
        text = self.text()
        if b"symlink:" in text or b"gitlink:" in text or text.translate(None, _JSON_PLAIN):
            return json.dumps(
                self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        if not text:
            return b"{}"
        lines = text.split(b"\n")
        lines.pop()
        return b'{"' + b'","'.join([r[:-65] + b'":"' + r[-64:] for r in lines]) + b'"}'


def diff(pre: Overlay, post: Overlay) -> dict[str, list[str]]:
    """`added`/`removed`/`changed` paths between two manifests; when both patch the same base
    only the paths either one touched can differ, so only those are compared."""
    if pre.base is post.base:
        keys: Iterator[str] | frozenset[str] = pre.touched | post.touched
    else:
        keys = frozenset(k for k, _ in pre.items()) | frozenset(k for k, _ in post.items())
    out: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for k in sorted(keys):
        a, b = pre.get(k), post.get(k)
        if a is None and b is not None:
            out["added"].append(k)
        elif a is not None and b is None:
            out["removed"].append(k)
        elif a != b:
            out["changed"].append(k)
    return out
