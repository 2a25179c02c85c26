"""The OCI artifacts a run becomes (docs/FORMATS.md §10): the archive and its attestation.

Every manifest and index this tool writes is canonical JSON (so a run always gives the same
manifest bytes and digest), and every one it reads is refused unless it is exactly the shape
below: strict JSON, the OCI media type, our artifact type, one layer, well-formed descriptors.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.registry.client import OCI_INDEX, OCI_MANIFEST
from catalytic_hooks.registry.reference import DIGEST

ARCHIVE_TYPE = "application/vnd.catalytic.archive.v1+zip"
ATTESTATION_TYPE = "application/vnd.in-toto+json"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_DATA).hexdigest()
EMPTY = {
    "mediaType": EMPTY_TYPE,
    "digest": EMPTY_DIGEST,
    "size": len(EMPTY_DATA),
    "data": base64.b64encode(EMPTY_DATA).decode(),
}
A_RUN_ID = "dev.catalytic.run.id"
A_COMMIT = "dev.catalytic.run.commit"
A_SIGNER = "dev.catalytic.run.signer"
A_BUNDLE_ROOT = "dev.catalytic.run.bundle-root"
A_CREATED = "org.opencontainers.image.created"
A_TITLE = "org.opencontainers.image.title"
A_PREDICATE = "in-toto.io/predicate-type"
_ANNOTATION_VALUE = re.compile(r"^[\x20-\x7e]{0,1024}\Z")


def invalid(reason: str, message: str, **details: object) -> CatalyticError:
    return CatalyticError(ErrorCode.REGISTRY_INVALID, message, reason=reason, **details)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            doc["artifactType"] = self.artifact_type
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


def descriptor_of(data: bytes, media_type: str, **kw: Any) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data), **kw)


def _descriptor(doc: Any, where: str, max_size: int) -> Descriptor:
    if not isinstance(doc, dict):
        raise invalid("DESCRIPTOR", f"{where} is not an object")
    media, digest, size = doc.get("mediaType"), doc.get("digest"), doc.get("size")
    if not isinstance(media, str) or not media or len(media) > 255:
        raise invalid("DESCRIPTOR", f"{where} has no media type")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise invalid("DESCRIPTOR", f"{where}'s digest is not sha256:<64 lowercase hex>")
    if type(size) is not int or not 0 <= size <= max_size:
        raise invalid("DESCRIPTOR", f"{where}'s size is not an integer between 0 and {max_size}")
    art = doc.get("artifactType")
    ann = doc.get("annotations") or {}
    if not isinstance(ann, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise invalid("DESCRIPTOR", f"{where}'s annotations are not strings")
    return Descriptor(
        media, digest, size, art if isinstance(art, str) else None, tuple(sorted(ann.items()))
    )


def _annotation(value: str) -> str:
    # Annotations are shown by registry UIs: printable ASCII only, bounded.
    return (
        value
        if _ANNOTATION_VALUE.match(value)
        else value.encode("ascii", "backslashreplace").decode()[:1024]
    )


def archive_manifest(
    blob: Descriptor,
    *,
    run_id: str,
    commit: str | None,
    signer: str,
    bundle_root: str,
    created: str | None,
) -> bytes:
    ann = {A_RUN_ID: run_id, A_SIGNER: signer, A_BUNDLE_ROOT: bundle_root}
    if commit:
        ann[A_COMMIT] = commit
    if created:
        ann[A_CREATED] = created
    layer = Descriptor(
        ARCHIVE_TYPE, blob.digest, blob.size, annotations=((A_TITLE, f"{run_id}.catalytic.zip"),)
    )
    return canonical_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARCHIVE_TYPE,
            "config": EMPTY,
            "layers": [layer.to_json()],
            "annotations": {k: _annotation(v) for k, v in ann.items()},
        }
    )


def attestation_manifest(envelope: Descriptor, subject: Descriptor, predicate: str | None) -> bytes:
    ann = {A_PREDICATE: _annotation(predicate)} if predicate else {}
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ATTESTATION_TYPE,
        "config": EMPTY,
        "layers": [envelope.to_json()],
        "subject": subject.to_json(),
    }
    if ann:
        doc["annotations"] = ann
    return canonical_bytes(doc)


def index(manifests: list[Descriptor]) -> bytes:
    unique = {d.digest: d for d in manifests}
    return canonical_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [unique[k].to_json() for k in sorted(unique)],
        }
    )


@dataclass(frozen=True)
class Manifest:
    digest: str
    size: int
    artifact_type: str
    layer: Descriptor
    annotations: dict[str, str]
    subject: Descriptor | None


def _strict(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = loads_strict(data, what=what)
    except CatalyticError as exc:
        raise invalid("MALFORMED", f"the {what} is not strict JSON: {exc.message}") from exc
    if not isinstance(doc, dict):
        raise invalid("MALFORMED", f"the {what} is not a JSON object")
    return doc


def parse_manifest(data: bytes, digest: str, *, expect: str, max_blob: int) -> Manifest:
    """A manifest of our artifact type `expect`, with exactly one layer of the matching type."""
    doc = _strict(data, "manifest")
    if doc.get("schemaVersion") != 2 or doc.get("mediaType") != OCI_MANIFEST:
        raise invalid(
            "MEDIA_TYPE",
            f"not an OCI image manifest (mediaType {str(doc.get('mediaType'))[:80]!r})",
        )
    art = doc.get("artifactType")
    config = _descriptor(doc.get("config"), "the config", 1024 * 1024)
    kind = art if isinstance(art, str) else config.media_type
    if kind != expect:
        raise invalid(
            "ARTIFACT_TYPE",
            f"the manifest is a {kind[:120]!r} artifact, not {expect!r}",
            artifact_type=kind[:255],
        )
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        raise invalid("LAYERS", "the manifest does not have exactly one layer")
    layer = _descriptor(layers[0], "the layer", max_blob)
    want = ARCHIVE_TYPE if expect == ARCHIVE_TYPE else DSSE_LAYER
    if layer.media_type != want:
        raise invalid("LAYERS", f"the layer is {layer.media_type[:120]!r}, not {want!r}")
    subject = doc.get("subject")
    ann = doc.get("annotations") or {}
    if not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values()):
        raise invalid("MALFORMED", "the manifest's annotations are not strings")
    return Manifest(
        digest,
        len(data),
        kind,
        layer,
        ann,
        _descriptor(subject, "the subject", 4 * 1024 * 1024) if subject is not None else None,
    )


def parse_index(data: bytes) -> tuple[list[Descriptor], int]:
    """A referrers index's descriptors, and how many of its entries were malformed. Those are
    left out, not the whole list refused: anyone who can push can write the fallback tag, and
    one bad entry must neither hide the others nor stop the next attacher from rewriting it."""
    doc = _strict(data, "index")
    if doc.get("schemaVersion") != 2 or doc.get("mediaType", OCI_INDEX) != OCI_INDEX:
        raise invalid("MEDIA_TYPE", "the referrers index is not an OCI image index")
    items = doc.get("manifests")
    if not isinstance(items, list):
        raise invalid("MALFORMED", "the referrers index has no manifests list")
    out = []
    for m in items:
        try:
            out.append(_descriptor(m, "a referrer", 4 * 1024 * 1024))
        except CatalyticError:
            continue
    return out, len(items) - len(out)


def check_bytes(data: bytes, digest: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise CatalyticError(
            ErrorCode.REGISTRY_DIGEST_MISMATCH,
            f"the registry's {what} hashes to {actual}, not {digest}",
            reason="DIGEST",
            digest=digest,
            actual=actual,
        )
