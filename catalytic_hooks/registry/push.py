"""`archive push FILE|RUN_DIR oci://HOST[:PORT]/NAME[:TAG]`: the archive as one OCI artifact,
its attestation as a second one whose subject is the archive's manifest.

The archive is checked before anything is sent: the reader's structural rules and ARCHIVE.json
(a file that is not a run archive is never published; the entries' hashes, like everything
else, are checked by every consumer). Archives are deterministic, so pushing a run twice uploads
no blob: where the tag (or the run id's tag) already names something, or a push of the run to
this repository was started from here before (the cache's note), the archive is hashed first and
not sent if the registry holds its digest (HEAD). A first push of a large archive sends it while
a second thread hashes it, and names the digest in the closing PUT.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.layout import attestation_beside, run_path
from catalytic_hooks.archive.read import inspect_doc, open_file
from catalytic_hooks.archive.zipfmt import Limits, parse
from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.core.paths import name_part
from catalytic_hooks.fs.files import CHUNK
from catalytic_hooks.fs.untrusted import read_named
from catalytic_hooks.registry import artifact, referrers
from catalytic_hooks.registry.artifact import ARCHIVE_TYPE, Descriptor
from catalytic_hooks.registry.cache import Cache
from catalytic_hooks.registry.client import OCI_MANIFEST, Client
from catalytic_hooks.registry.reference import TAG, Reference

MAX_STATUS = 1024 * 1024
MAX_ENVELOPE = 16 * 1024 * 1024
# From this size up, an archive whose tag names nothing yet is sent while it is hashed: below
# it, the hash costs less than the round trip the closing PUT adds.
SEND_WHILE_HASHING = 16 * 1024 * 1024


@contextlib.contextmanager
def _archive_of(source: Path) -> Iterator[tuple[Path, Path | None]]:
    """(archive file, the attestation beside it or None): a file as it is; a run directory
    archived into a temporary file first (the same bytes `archive create` writes)."""
    if source.is_file():
        yield source, None
        return
    if not source.is_dir():
        raise CatalyticError(
            ErrorCode.PATH_INVALID,
            f"{source} is neither an archive file nor a run directory",
            path=str(source),
        )
    from catalytic_hooks.archive.create import create_archive
    from catalytic_hooks.bundle.attest import ATTESTATION_FILE

    with tempfile.TemporaryDirectory(prefix="catalytic-push-") as d:
        run_dir = source.resolve()
        out = Path(d) / f"{name_part(run_dir.name)}.catalytic.zip"
        create_archive(run_dir, out)
        att = run_dir / ATTESTATION_FILE
        yield out, att if att.is_file() else None


def _run_time(path: Path, run_id: str, limits: Limits) -> str | None:
    """STATUS.json's `finished_at` (else `started_at`), read from its entry."""
    fd, size = open_file(path)
    try:
        want = f"{run_id}/{run_path(run_id, 'STATUS.json')}"
        for e in parse(fd, size, limits):
            if e.name == want and e.size <= MAX_STATUS:
                doc = loads_strict(os.pread(fd, e.size, e.data_offset), what="STATUS.json")
                if isinstance(doc, dict):
                    t = doc.get("finished_at") or doc.get("started_at")
                    return t if isinstance(t, str) else None
        return None
    except CatalyticError:
        return None
    finally:
        os.close(fd)


def _envelope(path: Path, run_id: str) -> tuple[bytes, str | None]:
    """The attestation's bytes as they are, after checking that they are one DSSE envelope of
    an in-toto statement about this run (so a wrong file is never published next to it)."""
    try:
        raw = read_named(path, limit=MAX_ENVELOPE)
    except OSError as exc:
        raise CatalyticError(ErrorCode.USAGE, f"cannot read the attestation {path}: {exc}") from exc
    try:
        doc = loads_strict(raw, what=str(path))
        stmt = loads_strict(
            base64.b64decode(doc["payload"], validate=True), what="the attestation's statement"
        )
        about = stmt["predicate"]["run_id"]
    except (CatalyticError, KeyError, TypeError, ValueError) as exc:
        raise CatalyticError(
            ErrorCode.ARTIFACT_MALFORMED,
            f"{path} is not one DSSE envelope of a catalytic in-toto statement",
            path=str(path),
        ) from exc
    if about != run_id:
        raise CatalyticError(
            ErrorCode.USAGE, f"{path} attests run {about!r}, not {run_id!r}", path=str(path)
        )
    predicate = stmt.get("predicateType")
    return raw, predicate if isinstance(predicate, str) else None


class _Hashing:
    """The archive's SHA-256, computed in a second thread from its own descriptor while the
    upload reads the file; `digest()` waits for it. The registry checks the digest again before
    it commits the upload, so a file changed meanwhile is refused there; a file whose length
    changed is refused here."""

    def __init__(self, path: Path) -> None:
        self._path = path
        fd, self.size = open_file(path)
        self._stop = threading.Event()
        self._hex: str | None = None
        self._read = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._work, args=(fd,), name="catalytic-push-hash", daemon=True
        )
        self._thread.start()

    def _work(self, fd: int) -> None:
        # The thread closes its own descriptor: a join() that a signal interrupted may return
        # while the thread still runs (CPython marks it stopped), and a descriptor closed
        # under it could be reused by the next open and read here.
        try:
            h = hashlib.sha256()
            while not self._stop.is_set() and (chunk := os.read(fd, CHUNK)):
                h.update(chunk)
                self._read += len(chunk)
            self._hex = h.hexdigest()
        except OSError as exc:  # re-raised by digest(), in the caller's thread
            self._error = io_failure(f"read the archive {self._path}", self._path, exc)
        except BaseException as exc:
            self._error = exc
        finally:
            os.close(fd)

    def digest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._read != self.size or self._hex is None:
            raise CatalyticError(
                ErrorCode.IO_ERROR,
                f"the archive changed while it was pushed ({self.size} bytes, then {self._read})",
                path=str(self._path),
            )
        return f"sha256:{self._hex}"

    def __enter__(self) -> _Hashing:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _may_hold(client: Client, tags: set[str]) -> bool:
    """Whether the registry may already hold this archive: a tag it would carry (the one given,
    or the run id where it is a valid tag) names something already. Archives are deterministic,
    so a run pushed again finds its tag; a first push finds none. A registry that will not say
    (a refused or failed HEAD) may hold it: the push then hashes first, as it always did."""
    try:
        return any(client.manifest_digest(t) is not None for t in sorted(tags) if TAG.match(t))
    except CatalyticError as exc:
        if exc.code is ErrorCode.REGISTRY_UNREACHABLE:
            raise
        return True


def _first_attempt(ref: Reference, run_id: str) -> bool:
    """Whether no push of this run to this repository was started from here before, noting
    that one is now (`Cache.note_push`). The tag is written last, so a push that failed after
    its archive went up left nothing that names it: its retry finds the note, hashes first,
    and does not send the archive again where the registry holds it. A cache that cannot be
    used says "not the first": the push then hashes first, which is never wrong."""
    try:
        return Cache().note_push(f"{ref.host}/{ref.name}", run_id)
    except (CatalyticError, OSError):
        return False


def ensure_blob(client: Client, digest: str, size: int, body: bytes | Path) -> bool:
    """Upload unless the registry already holds it; True when bytes were sent. A file is
    streamed; either goes in chunks where the caller or the registry asks (`Client.upload`)."""
    if client.blob_size(digest) == size:
        client.counters.blobs_skipped += 1
        return False
    client.upload(digest, body, size)
    return True


def push(
    source: Path,
    ref: Reference,
    client: Client,
    *,
    limits: Limits,
    attestation: Path | None = None,
    with_attestation: bool = True,
) -> dict[str, Any]:
    if ref.digest is not None:
        raise CatalyticError(
            ErrorCode.USAGE,
            "push to a tag (oci://HOST/NAME[:TAG]); the digest is what the push prints",
        )
    with _archive_of(source) as (path, beside):
        doc = inspect_doc(path, limits)
        run_id = str(doc["run_id"])
        tag = ref.tag or run_id
        if not TAG.match(tag):
            raise CatalyticError(
                ErrorCode.USAGE,
                f"run id {run_id!r} is not a valid OCI tag; give one: oci://HOST/NAME:TAG",
            )
        if attestation is None and with_attestation:
            guess = beside or path.parent / attestation_beside(run_id)
            attestation = guess if guess.is_file() else None
        envelope = _envelope(attestation, run_id) if with_attestation and attestation else None
        attached = None
        if envelope is not None:
            raw, predicate = envelope
            attached = (raw, predicate, artifact.descriptor_of(raw, artifact.DSSE_LAYER))
        # Every blob first: a refused one (a proxy's cap on bodies, say) leaves the tag where
        # it was rather than naming a run whose attestation never arrived.
        with _Hashing(path) as hashing:
            size = hashing.size
            sent = [
                ensure_blob(
                    client, artifact.EMPTY_DIGEST, len(artifact.EMPTY_DATA), artifact.EMPTY_DATA
                )
            ]
            if (
                size >= SEND_WHILE_HASHING
                and _first_attempt(ref, run_id)
                and not _may_hold(client, {tag, run_id})
            ):
                # A first push: the bytes go up while they are hashed, instead of after (the
                # HEAD by digest that spares a second push its upload cannot come first, but a
                # second push finds its tag or the note and takes the other way).
                client.upload(hashing.digest, path, size)
                digest = hashing.digest()
                sent.append(True)
            else:
                digest = hashing.digest()
                sent.append(ensure_blob(client, digest, size, path))
        blob = Descriptor(ARCHIVE_TYPE, digest, size)
        if attached is not None:
            raw, _, edesc = attached
            sent.append(ensure_blob(client, edesc.digest, edesc.size, raw))
        manifest = artifact.archive_manifest(
            blob,
            run_id=run_id,
            commit=doc["commit"],
            signer=str(doc["validator_id"]),
            bundle_root=str(doc["bundle_root"]),
            created=_run_time(path, run_id, limits),
        )
        mdesc = artifact.descriptor_of(manifest, OCI_MANIFEST, artifact_type=ARCHIVE_TYPE)
        # By digest first, the tag last: the attestation needs its subject in the registry,
        # and a push stopped or refused on the way (an interrupt, a lost referrer) leaves the
        # tag where it was rather than naming a run whose attestation is not attached.
        client.put_manifest(mdesc.digest, manifest, OCI_MANIFEST)
        att_info = None
        if attached is not None:
            _, predicate, edesc = attached
            amanifest = artifact.attestation_manifest(edesc, mdesc, predicate)
            adesc = artifact.descriptor_of(
                amanifest, OCI_MANIFEST, artifact_type=artifact.ATTESTATION_TYPE
            )
            how = referrers.attach(client, amanifest, adesc, mdesc.digest)
            att_info = {
                "file": str(attestation),
                "digest": adesc.digest,
                "via": how,
                "reference": str(ref.with_digest(adesc.digest)),
            }
        client.put_manifest(tag, manifest, OCI_MANIFEST)
    return {
        "reference": str(ref.with_digest(mdesc.digest)),
        "tag": tag,
        "tagged": str(ref.with_tag(tag)),
        "digest": mdesc.digest,
        "run_id": run_id,
        "archive": {"digest": blob.digest, "size": size},
        "attestation": att_info,
        "blobs_uploaded": sum(sent),
        "blobs_skipped": len(sent) - sum(sent),
    }
