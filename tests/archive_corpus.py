"""The hostile archive corpus: crafted zips, each breaking one rule of docs/FORMATS.md §9.

Generated, never checked in as binaries: `corpus(valid, valid_with_git)` takes the bytes of two
honest archives and returns `(case id, bytes, expected details.reason, limits or None)`. A raw zip
builder here controls every header field (the project's writer only ever writes the canonical
form), and `repack` plays an attacker who rebuilds a fully consistent archive with the project's
own layout functions around a changed payload.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

from catalytic_hooks.archive import layout
from catalytic_hooks.archive.crate import render_crate
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.bundle.model import store_path

EXTERNAL = 0o100644 << 16


@dataclass
class E:
    """One entry, canonical unless a field says otherwise."""

    name: bytes
    data: bytes
    method: int = 0
    flags: int = 0x0800
    time: int = 0
    date: int = 0x21
    made_by: int = 0x0314
    needed: int = 20
    external: int = EXTERNAL
    internal: int = 0
    extra: bytes = b""
    local_extra: bytes = b""
    comment: bytes = b""
    crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    local_name: bytes | None = None
    local: dict[str, int] = field(default_factory=dict)  # local header fields overridden
    offset: int | None = None  # central directory's offset overridden
    disk: int = 0


def build(
    entries: list[E],
    *,
    prefix: bytes = b"",
    gaps: dict[int, bytes] | None = None,
    before_cd: bytes = b"",
    comment: bytes = b"",
    suffix: bytes = b"",
    count: int | None = None,
    eocd_disk: int = 0,
    zip64_locator: bool = False,
    cd_order: list[int] | None = None,
) -> bytes:
    out = io.BytesIO()
    out.write(prefix)
    offsets = []
    for i, e in enumerate(entries):
        offsets.append(out.tell())
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        csize = len(e.data) if e.csize is None else e.csize
        usize = len(e.data) if e.usize is None else e.usize
        lname = e.name if e.local_name is None else e.local_name
        f = {
            "needed": e.needed,
            "flags": e.flags,
            "method": e.method,
            "time": e.time,
            "date": e.date,
            "crc": crc,
            "csize": csize,
            "usize": usize,
            **e.local,
        }
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                f["needed"],
                f["flags"],
                f["method"],
                f["time"],
                f["date"],
                f["crc"] & 0xFFFFFFFF,
                f["csize"] & 0xFFFFFFFF,
                f["usize"] & 0xFFFFFFFF,
                len(lname),
                len(e.local_extra),
            )
            + lname
            + e.local_extra
            + e.data
        )
        if gaps and i in gaps:
            out.write(gaps[i])
    out.write(before_cd)
    cd_start = out.tell()
    for i in cd_order if cd_order is not None else range(len(entries)):
        e = entries[i]
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        csize = len(e.data) if e.csize is None else e.csize
        usize = len(e.data) if e.usize is None else e.usize
        out.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                e.made_by,
                e.needed,
                e.flags,
                e.method,
                e.time,
                e.date,
                crc & 0xFFFFFFFF,
                csize & 0xFFFFFFFF,
                usize & 0xFFFFFFFF,
                len(e.name),
                len(e.extra),
                len(e.comment),
                e.disk,
                e.internal,
                e.external,
                offsets[i] if e.offset is None else e.offset,
            )
            + e.name
            + e.extra
            + e.comment
        )
    cd_size = out.tell() - cd_start
    if zip64_locator:
        out.write(struct.pack("<IIQI", 0x07064B50, 0, 0, 1))
    n = len(entries) if count is None else count
    out.write(
        struct.pack(
            "<IHHHHIIH",
            0x06054B50,
            eocd_disk,
            0,
            min(n, 0xFFFF),
            min(n, 0xFFFF),
            cd_size,
            cd_start,
            len(comment),
        )
        + comment
    )
    out.write(suffix)
    return out.getvalue()


def entries_of(archive: bytes) -> list[E]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return [E(i.filename.encode(), zf.read(i)) for i in zf.infolist()]


def repack(
    files: dict[str, bytes],
    run_id: str,
    *,
    doc: dict[str, Any] | None = None,
    tags: dict[str, bytes] | None = None,
) -> bytes:
    """A consistent archive around `files` (bag names → bytes; tag files and ARCHIVE.json are
    recomputed unless given), as anyone with this project's layout functions could write it."""
    payload = {n: d for n, d in files.items() if n not in (*layout.TAG_ORDER, layout.ARCHIVE_JSON)}
    items = [layout.Item(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in payload.items()]
    old = json.loads(files[layout.ARCHIVE_JSON])
    status = json.loads(files[layout.run_path(run_id, "STATUS.json")])
    all_files = dict(payload)
    for name, data in layout.tag_files(run_id, items, status):
        all_files[name] = (tags or {}).get(name, data)
    everything = [
        layout.Item(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in all_files.items()
    ]
    fields = {
        k: old[k]
        for k in ("commit", "tree", "object_format", "history", "bundle_root", "validator_id")
    }
    fields.update(doc or {})
    all_files[layout.ARCHIVE_JSON] = layout.render_archive_json(
        run_id=run_id, items=everything, **fields
    )
    order = layout.canonical_order(list(all_files))
    return build([E(f"{run_id}/{n}".encode(), all_files[n]) for n in order])


def relabelled(archive: bytes, new_id: str) -> bytes:
    """The same run presented under another run id, every unsigned file (ARCHIVE.json, the tag
    files and the crate) recomputed for the new name, as a forger would."""
    old_id, files = bag_files(archive)
    prefix = layout.run_path(old_id) + "/"
    moved = {
        (layout.run_path(new_id, n[len(prefix) :]) if n.startswith(prefix) else n): d
        for n, d in files.items()
    }

    def doc(name: str) -> Any:
        return json.loads(moved[layout.run_path(new_id, name)])

    hashes = doc("OUTPUT_HASHES.json")["hashes"]
    paths = {k: layout.run_path(new_id, store_path(h)) for k, h in hashes.items()}
    spec = doc("TASK_SPEC.json")
    moved[layout.CRATE] = render_crate(
        run_id=new_id,
        task_spec=spec,
        status=doc("STATUS.json"),
        hashes=hashes,
        sizes={k: len(moved[p]) for k, p in paths.items()},
        validator_id=doc("VALIDATOR_IDENTITY.json")["validator_id"],
        commit=spec.get("git_commit"),
        store_paths={k: p.removeprefix("data/") for k, p in paths.items()},
    )
    return repack(moved, new_id)


def bag_files(archive: bytes) -> tuple[str, dict[str, bytes]]:
    ents = entries_of(archive)
    run_id = ents[0].name.decode().split("/")[0]
    return run_id, {e.name.decode()[len(run_id) + 1 :]: e.data for e in ents}


def corpus(
    valid: bytes, with_git: bytes, other_pack: bytes
) -> list[tuple[str, bytes, str, Limits | None]]:
    """Every case: (id, bytes, expected reason, limits). `other_pack` is the deterministic pack
    of another commit of the same repository as `with_git`."""
    base = entries_of(valid)
    assert build(base) == valid, "the raw builder must reproduce the canonical form"
    run_id, files = bag_files(valid)
    rid = run_id.encode()
    out: list[tuple[str, bytes, str, Limits | None]] = []

    def case(cid: str, data: bytes, reason: str, limits: Limits | None = None) -> None:
        out.append((cid, data, reason, limits))

    def with_first(**changes: Any) -> list[E]:
        ents = [replace(e) for e in base]
        ents[0] = replace(ents[0], **changes)
        return ents

    def named(name: bytes) -> bytes:  # an extra entry with a hostile name, first in the zip
        return build([E(name, b"x"), *base])

    # -- the zip structure ------------------------------------------------------------------
    case("not-a-zip", b"PK this is not a zip" * 10, "TRUNCATED")
    case("empty-file", b"", "TRUNCATED")
    case("truncated", valid[:-30], "TRUNCATED")
    case("truncated-in-data", valid[: len(valid) // 2], "TRUNCATED")
    case("comment", build(base, comment=b"hello"), "COMMENT")
    case("trailing-data", valid + b"\0" * 64, "TRAILING_DATA")
    case("prepended-stub", build(base, prefix=b"#!/bin/sh\nexit 0\n"), "PREPENDED_DATA")
    case("gap-between-entries", build(base, gaps={0: b"hidden"}), "GAP")
    case("gap-before-central-directory", build(base, before_cd=b"hidden"), "GAP")
    case("multi-disk", build(base, eocd_disk=1), "MULTI_DISK")
    case("zip64-locator", build(base, zip64_locator=True), "ZIP64")
    # ZIP64 sizes whose extra field declares 8 bytes and holds 4 (a reader must not run past it)
    torn = b"\x01\x00\x08\x00" + b"\0" * 4
    case(
        "zip64-torn-extra",
        build(with_first(csize=0xFFFFFFFF, usize=0xFFFFFFFF, extra=torn)),
        "ZIP64",
    )
    case("no-entries", build([]), "LAYOUT")
    ents = [replace(e) for e in base]
    ents[1] = replace(ents[1], offset=0)  # two central records for one local entry
    case("overlap-same-offset", build(ents), "OVERLAP")
    # "quoted overlap": entry 1's data holds a whole local header that entry 2 points into
    inner = E(rid + b"/data/zz-inner", b"payload")
    quoted = build([inner])
    quoted_local = quoted[: 30 + len(inner.name) + len(inner.data)]
    ents = [replace(base[0], data=base[0].data + quoted_local), *base[1:]]
    raw = build(ents)
    at = raw.index(quoted_local)
    ents.insert(1, replace(inner, offset=at))
    case("quoted-overlap", build(ents, cd_order=list(range(len(ents)))), "OVERLAP")
    case("central-out-of-order", build(base, cd_order=[1, 0, *range(2, len(base))]), "OVERLAP")
    case(
        "local-name-differs",
        build(with_first(local_name=base[0].name[:-1] + b"X")),
        "LOCAL_HEADER_MISMATCH",
    )
    case("local-crc-differs", build(with_first(local={"crc": 1})), "LOCAL_HEADER_MISMATCH")
    case("local-size-differs", build(with_first(local={"usize": 1})), "LOCAL_HEADER_MISMATCH")
    case(
        "local-extra-field",
        build(with_first(local_extra=b"\x55\x54\x05\x00\x01\0\0\0\0")),
        "EXTRA_FIELD",
    )
    case("extra-field", build(with_first(extra=b"\x55\x54\x05\x00\x01\0\0\0\0")), "EXTRA_FIELD")
    case("entry-comment", build(with_first(comment=b"note")), "ENTRY_COMMENT")
    case("encrypted", build(with_first(flags=0x0801)), "ENCRYPTED")
    case("aes-encrypted", build(with_first(method=99)), "ENCRYPTED")
    case("data-descriptor", build(with_first(flags=0x0808)), "DATA_DESCRIPTOR")
    deflated = zlib.compressobj(9, zlib.DEFLATED, -15)
    small = deflated.compress(base[0].data) + deflated.flush()
    case(
        "deflated",
        build(
            with_first(method=8, data=small, usize=len(base[0].data), crc=zlib.crc32(base[0].data))
        ),
        "COMPRESSED",
    )
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bomb.compress(b"\0" * 10_000_000) + bomb.flush()
    case("ratio-bomb", build(with_first(method=8, data=zeros, usize=10_000_000, crc=0)), "RATIO")
    case("symlink", build(with_first(external=(0o120777 << 16))), "LINK")
    case("hardlink", build(with_first(extra=b"\x0d\x00\x0c\x00" + b"\0" * 8 + b"../x")), "LINK")
    case("device", build(with_first(external=(0o020644 << 16))), "SPECIAL_FILE")
    case("fifo", build(with_first(external=(0o010644 << 16))), "SPECIAL_FILE")
    case("directory-entry", named(rid + b"/data/dir/"), "DIRECTORY_ENTRY")
    case("non-canonical-time", build(with_first(time=0x6000)), "NOT_CANONICAL")
    case("executable-mode", build(with_first(external=(0o100755 << 16))), "NOT_CANONICAL")
    case("crc-mismatch", build(with_first(crc=zlib.crc32(base[0].data) ^ 1)), "CRC_MISMATCH")
    case(
        "stored-sizes-differ",
        build(with_first(csize=len(base[0].data), usize=len(base[0].data) + 1)),
        "SIZE_MISMATCH",
    )
    # -- names ------------------------------------------------------------------------------
    case("absolute-path", named(b"/etc/cron.d/evil"), "NAME_ABSOLUTE")
    case("traversal", named(rid + b"/../../evil.sh"), "NAME_TRAVERSAL")
    case("traversal-first", named(b"../evil.sh"), "NAME_TRAVERSAL")
    case("backslash", named(rid + b"\\..\\evil"), "NAME_BACKSLASH")
    case("drive-letter", named(b"C:/Windows/evil"), "NAME_DRIVE")
    case("nul-in-name", named(rid + b"/data/a\0b"), "NAME_CONTROL")
    case("newline-in-name", named(rid + b"/data/a\nb"), "NAME_CONTROL")
    case("not-utf8", named(rid + b"/data/\xff\xfe"), "NAME_NOT_UTF8")
    case("not-nfc", named(rid.decode().encode() + "/data/e\u0301".encode()), "NAME_NOT_NFC")
    case("dot-git", named(rid + b"/.git/hooks/post-checkout"), "NAME_UNSAFE")
    case("deep-nesting", named(rid + b"/" + b"d/" * 600 + b"f"), "NAME_UNSAFE")
    case(
        "duplicate-name",
        build([*base[:1], replace(base[0], data=b"other"), *base[1:]]),
        "NAME_DUPLICATE",
    )
    case("case-collision", named(base[0].name.upper()), "NAME_COLLISION")
    case(
        "compatibility-collision",
        build([E(rid + "/data/\ufb01le".encode(), b"x"), E(rid + b"/data/file", b"y"), *base]),
        "NAME_COLLISION",
    )
    case("outside-the-bag", named(b"other/file"), "LAYOUT")
    # -- counts and sizes (limits checked on what is there, never trusted from a header) -----
    many = [E(b"m/%06d" % i, b"") for i in range(100_000)]
    case("100000-entries", build(many), "TOO_MANY_ENTRIES")
    tib = struct.pack("<HHQQ", 0x0001, 16, 1 << 40, 1 << 40)
    case(
        "declared-1-tib",
        build(with_first(csize=0xFFFFFFFF, usize=0xFFFFFFFF, extra=tib)),
        "ENTRY_TOO_LARGE",
    )
    case(
        "entry-over-limit",
        valid,
        "ENTRY_TOO_LARGE",
        Limits(max_entry_bytes=max(len(e.data) for e in base) - 1),
    )
    case(
        "total-over-limit",
        valid,
        "TOTAL_TOO_LARGE",
        Limits(max_total_bytes=sum(len(e.data) for e in base) - 1),
    )
    case("entries-over-limit", valid, "TOO_MANY_ENTRIES", Limits(max_entries=len(base) - 1))
    case("nested-zip", repack({**files, "data/inner.zip": valid}, run_id), "LAYOUT")
    # -- ARCHIVE.json and the derived files ----------------------------------------------------
    doc_name = f"{run_id}/{layout.ARCHIVE_JSON}".encode()
    no_doc = [e for e in base if e.name != doc_name]
    case("no-archive-json", build(no_doc), "LAYOUT")
    case(
        "extra-entry-not-listed",
        build([E(rid + b"/data/runs/" + rid + b"/extra.txt", b"hi"), *base]),
        "NOT_IN_MANIFEST",
    )
    case(
        "listed-entry-missing",
        build([e for e in base if not e.name.endswith(b"/PROOF.json")]),
        "MISSING_ENTRY",
    )
    swapped = [replace(e) for e in base]
    proof_at = next(i for i, e in enumerate(base) if e.name.endswith(b"/PROOF.json"))
    swapped[proof_at] = replace(base[proof_at], data=base[proof_at].data.replace(b"true", b"tru3"))
    case("content-differs-from-manifest", build(swapped), "MANIFEST_MISMATCH")
    doc = files[layout.ARCHIVE_JSON]
    case(
        "archive-json-not-canonical",
        build([*base[:-1], replace(base[-1], data=doc + b" ")]),
        "MANIFEST_INVALID",
    )
    case(
        "archive-json-duplicate-key",
        build([*base[:-1], replace(base[-1], data=b'{"format":1,' + doc[1:])]),
        "MANIFEST_INVALID",
    )
    newer = doc.replace(b'"format_version":1', b'"format_version":2')
    case(
        "unsupported-version",
        build([*base[:-1], replace(base[-1], data=newer)]),
        "UNSUPPORTED_VERSION",
    )
    # ARCHIVE.json's claims that `archive list` shows before any verification: typed, 64 hex
    case("signer-not-a-string", repack(files, run_id, doc={"validator_id": 5}), "MANIFEST_INVALID")
    case(
        "signer-with-terminal-escapes",
        repack(files, run_id, doc={"validator_id": "\x1b[1A\x1b[2K" + "a" * 56}),
        "MANIFEST_INVALID",
    )
    case(
        "bundle-root-not-hex", repack(files, run_id, doc={"bundle_root": True}), "MANIFEST_INVALID"
    )
    case("not-canonical-order", build([base[1], base[0], *base[2:]]), "NOT_CANONICAL")
    case(
        "bag-info-edited",
        repack(
            files,
            run_id,
            tags={layout.BAG_INFO: files[layout.BAG_INFO] + b"Contact-Name: someone\n"},
        ),
        "METADATA_MISMATCH",
    )
    case(
        "crate-edited",
        repack(
            {
                **files,
                layout.CRATE: files[layout.CRATE].replace(
                    b"CompletedActionStatus", b"FailedActionStatus"
                ),
            },
            run_id,
        ),
        "METADATA_MISMATCH",
    )
    case(
        "bundle-root-claimed",
        repack(files, run_id, doc={"bundle_root": "0" * 64}),
        "METADATA_MISMATCH",
    )
    # -- files no signature covers, with everything unsigned recomputed around them -------------
    case(
        "unsigned-file-in-run",
        repack({**files, layout.run_path(run_id, "conftest.py"): b"import os\n"}, run_id),
        "UNSIGNED_ENTRY",
    )
    # 20 entries 400 directories deep: refused from their names, before one is created
    deep = {layout.run_path(run_id, f"zz{i:03d}/" + "d/" * 400 + "f"): b"" for i in range(20)}
    case("deep-unsigned-names", repack({**files, **deep}, run_id), "UNSIGNED_ENTRY")
    stray = layout.run_path(run_id, "objects/sha256/00/" + "0" * 62)
    unreferenced = repack({**files, stray: b"no output\n"}, run_id)
    case("unreferenced-store-blob", unreferenced, "UNSIGNED_ENTRY")
    # -- git objects ----------------------------------------------------------------------------
    grid, gfiles = bag_files(with_git)
    case("pack-of-another-commit", repack({**gfiles, layout.PACK: other_pack}, grid), "GIT_OBJECTS")
    gdoc = json.loads(gfiles[layout.ARCHIVE_JSON])
    case("tree-claimed", repack(gfiles, grid, doc={"tree": "1" * len(gdoc["tree"])}), "GIT_OBJECTS")
    pack = bytearray(gfiles[layout.PACK])
    pack[40] ^= 0xFF
    case("pack-corrupted", repack({**gfiles, layout.PACK: bytes(pack)}, grid), "GIT_OBJECTS")
    case(
        "commit-claimed",
        repack(gfiles, grid, doc={"commit": "2" * len(gdoc["commit"])}),
        "METADATA_MISMATCH",
    )
    # packs git would read but the canonical form excludes, each refused before git runs
    for cid, hostile in (
        ("pack-delta-bomb", delta_bomb_pack(1 << 30)),
        ("pack-deflate-bomb", deflate_bomb_pack(1 << 26)),
        ("pack-padded-header", _pack([_padded_header(3, 1) + _stored(b"x")])),
        ("pack-short-block", _pack([_header(3, 2) + _short_blocks(b"xy")])),
        ("pack-junk-before-trailer", _pack([_header(3, 1) + _stored(b"x") + b"junk"], 1)),
        ("pack-out-of-type-order", _pack([_header(3, 0) + _stored(b""), _commit_entry()])),
    ):
        case(cid, repack({**gfiles, layout.PACK: hostile}, grid), "PACK_NOT_CANONICAL")
    return out


# -- hostile packs (written here, independently of git/pack.py's writer) ---------------------------


def _header(kind: int, size: int) -> bytes:
    """A pack entry header: type and the size's low 4 bits, then 7 bits a byte, little end first."""
    out = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def _padded_header(kind: int, size: int) -> bytes:
    """The same size with a needless continuation byte (git accepts it; the form has one header)."""
    first = _header(kind, size)
    return bytes([first[0] | 0x80, 0x00])


def _stored(data: bytes) -> bytes:
    """`data` in the canonical form: a zlib stream of 65,535-byte stored blocks (one, empty, for
    no data), the last marked final."""
    chunks = [data[i : i + 0xFFFF] for i in range(0, len(data), 0xFFFF)] or [b""]
    blocks = b"".join(
        bytes([i == len(chunks) - 1]) + struct.pack("<HH", len(c), len(c) ^ 0xFFFF) + c
        for i, c in enumerate(chunks)
    )
    return b"\x78\x01" + blocks + struct.pack(">I", zlib.adler32(data))


def _short_blocks(data: bytes) -> bytes:
    """Stored blocks of one byte each: valid deflate, not the canonical 65,535-byte blocks."""
    blocks = b"".join(
        bytes([i == len(data) - 1]) + struct.pack("<HH", 1, 0xFFFE) + data[i : i + 1]
        for i in range(len(data))
    )
    return b"\x78\x01" + blocks + struct.pack(">I", zlib.adler32(data))


def _commit_entry() -> bytes:
    body = b"tree " + b"4b825dc642cb6eb9a060e54bf8d69288fbee4904" + b"\n\nempty\n"
    return _header(1, len(body)) + _stored(body)


def _pack(entries: list[bytes], count: int | None = None) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, len(entries) if count is None else count)
    body += b"".join(entries)
    return body + hashlib.sha1(body).digest()


def delta_bomb_pack(target: int) -> bytes:
    """A pack of a few hundred bytes that git would inflate to `target` bytes in memory: a
    64 KiB blob, then an offset delta against it whose copy instructions (one byte per 64 KiB
    copied) declare a `target`-byte result."""
    base = b"a" * 0x10000
    first = _header(3, len(base)) + zlib.compress(base, 9)

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    copies, rest = divmod(target, 0x10000)
    delta = varint(len(base)) + varint(target) + b"\x80" * copies  # copy 64 KiB from offset 0
    if rest:
        delta += bytes([0x80 | 0x10 | 0x20, rest & 0xFF, rest >> 8])
    distance = len(first)  # the base is the entry right before; < 128, so one offset byte
    second = _header(6, len(delta)) + bytes([distance]) + zlib.compress(delta, 9)
    return _pack([first, second])


def deflate_bomb_pack(size: int) -> bytes:
    """One blob of `size` zero bytes, deflated at level 9: about a thousand times smaller."""
    return _pack([_header(3, size) + zlib.compress(bytes(size), 9)])
