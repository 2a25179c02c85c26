"""What an archive holds and in which order (docs/FORMATS.md §9): the BagIt bag's names, its tag
files, and ARCHIVE.json. Pure functions: the writer renders these, the reader renders them again
from what it extracted and requires the same bytes, so none of them can say something the signed
bundle and the entries do not.

Inside the zip, one top-level directory `<run_id>/` (the bag):

    data/git/objects.pack             the commit and its whole tree (git/pack.py), if recorded
    data/ro-crate-metadata.json       the RO-Crate (crate.py)
    data/runs/<run_id>/...            the run directory's signed files, byte for byte, with
                                      every output in its content store
                                      objects/sha256/<2 hex>/<62 hex> (unsigned_files)
    bagit.txt, bag-info.txt, manifest-sha256.txt, tagmanifest-sha256.txt
    ARCHIVE.json                      every other entry with its size and SHA-256

Payload entries come first, sorted by the UTF-8 bytes of their names, then the tag files in the
order above, ARCHIVE.json last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from json.encoder import encode_basestring as _str
from typing import Any

from catalytic_hooks.bundle.model import ARTIFACTS, RECEIPTS, SHA256_REF, store_path
from catalytic_hooks.core.canonical import canonical_bytes, json_text_bytes
from catalytic_hooks.core.paths import name_part

FORMAT = "catalytic-archive"
FORMAT_VERSION = 1
SUFFIX = ".catalytic.zip"
ARCHIVE_JSON = "ARCHIVE.json"
PACK = "data/git/objects.pack"
CRATE = "data/ro-crate-metadata.json"
RUNS = "data/runs"
BAGIT = "bagit.txt"
BAG_INFO = "bag-info.txt"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
TAG_ORDER = (BAGIT, BAG_INFO, MANIFEST, TAGMANIFEST)
BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
AGENT = f"catalytic-hooks ({FORMAT} {FORMAT_VERSION})"
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})T")


@dataclass(frozen=True)
class Item:
    """One entry of the bag: its path inside the bag, size and SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


# Files beside the artifacts that carry their own signature, checked wherever they are used:
# the in-toto attestation (bundle/attest.py, a DSSE envelope) and the OpenSSH signature of
# SIGNED_PAYLOAD.json (bundle/sshsig.py); named here so the archive code needs neither module.
SELF_SIGNED = ("attestation.intoto.json", "ssh-signature.sig")


def signed_contents(task_spec: Any, hashes: dict[str, str]) -> set[str]:
    """The `sha256:<hex>` contents the signature covers by hash, which travel in the content
    store: each output's (OUTPUT_HASHES) and each declared lock file's (TASK_SPEC's
    `environment.lock_files`, covered through the bundle root's TASK_SPEC hash)."""
    refs = {h for h in hashes.values() if SHA256_REF.match(h)}
    env = task_spec.get("environment") if isinstance(task_spec, dict) else None
    locks = env.get("lock_files") if isinstance(env, dict) else None
    if isinstance(locks, dict):
        refs.update(v for v in locks.values() if isinstance(v, str) and SHA256_REF.match(v))
    return refs


def attestation_beside(run_id: str) -> str:
    """The name of an archive's attestation file beside it (`<run id>.intoto.json`), a long run
    id shortened (core.paths.name_part) so the file and its temporary sibling can be created."""
    return f"{name_part(run_id)}.intoto.json"


_STORED = re.compile(r"^objects/sha256/[0-9a-f]{2}/[0-9a-f]{62}\Z")


def may_be_signed(rel: str) -> bool:
    """Whether a run directory's file named `rel` could be one a signed bundle vouches for
    (`unsigned_files` decides which are, once the artifacts are read): every other name is
    refused from the names alone, before anything is written."""
    return rel in ARTIFACTS or rel in SELF_SIGNED or rel in RECEIPTS or bool(_STORED.match(rel))


def unsigned_files(names: list[str], status: Any, contents: set[str]) -> list[str]:
    """The run directory's files (`names`, relative to it) that nothing signed vouches for.

    An archive carries only what the bundle's signature covers or what checks itself: the seven
    artifacts, the receipts STATUS.json names (each with its hash there), the content-store
    file of each of the signed `contents` (signed_contents; the reader checks each file's bytes
    against its name), and the SELF_SIGNED files.
    Anything else (a `conftest.py`, a script, a blob no output names) would ride along with a
    genuine signature and be written into the repository that imports the run, so the writer
    refuses to carry it and the reader to accept it."""
    receipts = status.get("receipts") if isinstance(status, dict) else None
    allowed = {*ARTIFACTS, *SELF_SIGNED}
    if isinstance(receipts, dict):
        allowed.update(n for n in receipts if n in RECEIPTS)
    allowed.update(store_path(h) for h in contents)
    return [n for n in names if n not in allowed]


def name_key(name: str) -> bytes:
    return name.encode("utf-8")


def run_path(run_id: str, rel: str = "") -> str:
    return f"{RUNS}/{run_id}" + (f"/{rel}" if rel else "")


def canonical_order(names: list[str]) -> list[str]:
    """Payload sorted by UTF-8 bytes, then the tag files, then ARCHIVE.json."""
    payload = sorted((n for n in names if n not in (*TAG_ORDER, ARCHIVE_JSON)), key=name_key)
    tags = [n for n in TAG_ORDER if n in names]
    return [*payload, *tags, *([ARCHIVE_JSON] if ARCHIVE_JSON in names else [])]


def _encode_path(path: str) -> str:
    """RFC 8493 §2.1.3: CR, LF and % in a manifest path are percent-encoded."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def render_manifest(items: list[Item]) -> bytes:
    lines = [
        f"{i.sha256}  {_encode_path(i.name)}\n"
        for i in sorted(items, key=lambda i: name_key(i.name))
    ]
    return "".join(lines).encode("utf-8")


def bagging_date(status: Any) -> str | None:
    """The day the run finished (STATUS.finished_at), never the day the archive was made, so
    two archives of one run are the same bytes."""
    finished = status.get("finished_at") if isinstance(status, dict) else None
    m = _DATE.match(finished) if isinstance(finished, str) else None
    return m.group(1) if m else None


def render_bag_info(run_id: str, payload: list[Item], status: Any) -> bytes:
    lines = [f"Bag-Software-Agent: {AGENT}"]
    date = bagging_date(status)
    if date:
        lines.append(f"Bagging-Date: {date}")
    lines += [
        f"External-Identifier: {run_id}",
        f"Payload-Oxum: {sum(i.size for i in payload)}.{len(payload)}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


class _Entries:
    """ARCHIVE.json's `entries`, rendering their own canonical JSON (canonical_bytes splices
    it in): one `{"name","sha256","size"}` object per entry, its keys in canonical order and
    its strings escaped by json.dumps's own encoder, without 10,000 dicts through json.dumps
    (tests/test_archive_create.py re-canonicalises ARCHIVE.json and requires the same bytes)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def canonical_json(self) -> bytes:
        text = ",".join(
            '{"name":' + _str(i.name) + ',"sha256":' + _str(i.sha256) + ',"size":' + str(i.size)
            + "}"
            for i in self.items
        )  # fmt: skip
        return json_text_bytes("[" + text + "]")


def render_archive_json(
    *,
    run_id: str,
    commit: str | None,
    tree: str | None,
    object_format: str | None,
    history: bool,
    bundle_root: str,
    validator_id: str,
    items: list[Item],
) -> bytes:
    return canonical_bytes(
        {
            "bundle_root": bundle_root,
            "commit": commit,
            "entries": _Entries(sorted(items, key=lambda i: name_key(i.name))),
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "history": history,
            "object_format": object_format,
            "run_id": run_id,
            "tree": tree,
            "validator_id": validator_id,
        }
    )


def tag_files(run_id: str, payload: list[Item], status: Any) -> list[tuple[str, bytes]]:
    """bagit.txt, bag-info.txt, manifest-sha256.txt and tagmanifest-sha256.txt, in order."""
    import hashlib

    out = [
        (BAGIT, BAGIT_TXT),
        (BAG_INFO, render_bag_info(run_id, payload, status)),
        (MANIFEST, render_manifest(payload)),
    ]
    tags = [Item(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in out]
    out.append((TAGMANIFEST, render_manifest(tags)))
    return out
