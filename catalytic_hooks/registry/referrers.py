"""Attestations attached to an archive: OCI 1.1 referrers, or the fallback tag.

Attaching (distribution spec, "Pushing manifests with subject"): the attestation's manifest is
pushed with `subject` = the archive's manifest. A registry with the referrers API says so with
an `OCI-Subject` header and indexes it itself. Otherwise the client maintains the fallback tag
`sha256-<hex of the subject>`: an image index listing every referrer.

That index is read-modify-write on a registry without conditional writes (distribution 2.8), so
two attachers can lose one another's update: A reads, B reads, A writes, B writes what it read
plus its own, and A's referrer is gone. So every attacher verifies after writing, and again
after a pause longer than such a read-modify-write takes here (a stale writer is one whose read
came before our write; its write lands within that window), and re-merges while its referrer is
missing, a bounded number of times (REGISTRY_FAILED, `REFERRER_LOST`, after that).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.registry import artifact
from catalytic_hooks.registry.artifact import Descriptor
from catalytic_hooks.registry.client import OCI_INDEX, Client
from catalytic_hooks.registry.reference import fallback_tag

ATTEMPTS = 12
MIN_SETTLE = 0.05


@dataclass(frozen=True)
class Listed:
    descriptors: list[Descriptor]
    via: str  # "referrers-api" or "fallback-tag"
    malformed: int  # entries of the list that describe nothing (left out)


def listed(client: Client, subject: str) -> Listed:
    """The referrers of `subject` and how they were found."""
    data = client.referrers(subject)
    if data is not None:
        descriptors, malformed = _entries(data)
        return Listed(descriptors, "referrers-api", malformed)
    descriptors, malformed = _fallback(client, subject)
    return Listed(descriptors, "fallback-tag", malformed)


def _entries(data: bytes) -> tuple[list[Descriptor], int]:
    """The list's descriptors and how many entries were malformed; a list that is no index at
    all is no referrers and one malformed entry. Anyone who can push can write the fallback
    tag: a list refused as a whole would end every pull and verify of the archive, and every
    later attach, where it should only hide what it hides (the search then finds nothing).
    Only what the list says is judged so: an answer the transfer refused (past 4 MiB, which no
    push can store, or broken framing) is the registry's failure, and an attach that took it
    for an empty list would rewrite the tag without every referrer it holds."""
    try:
        return artifact.parse_index(data)
    except CatalyticError as exc:
        if exc.code is not ErrorCode.REGISTRY_INVALID:
            raise
        return [], 1


def _transient(exc: CatalyticError) -> bool:
    """A 5xx: distribution's filesystem storage answers 500 to a read of a tag that another
    client is writing at that moment (it reads the half-written link file)."""
    status = exc.details.get("status")
    return exc.code is ErrorCode.REGISTRY_FAILED and isinstance(status, int) and status >= 500


def _fallback(client: Client, subject: str, tries: int = 5) -> tuple[list[Descriptor], int]:
    for attempt in range(tries):
        try:
            data, _, _ = client.get_manifest(fallback_tag(subject))
        except CatalyticError as exc:
            if exc.code is ErrorCode.REGISTRY_NOT_FOUND:
                return [], 0
            if not _transient(exc) or attempt == tries - 1:
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
            continue
        return _entries(data)
    raise AssertionError("unreachable")


def attach(
    client: Client, manifest: bytes, ref: Descriptor, subject: str, attempts: int = ATTEMPTS
) -> str:
    """Push the referrer manifest `manifest` (whose descriptor is `ref`) and make it findable
    from `subject`; returns how (`referrers-api` or `fallback-tag`)."""
    resp = client.put_manifest(ref.digest, manifest, ref.media_type)
    if resp.header("oci-subject") == subject:
        return "referrers-api"
    tag = fallback_tag(subject)
    settle = MIN_SETTLE
    for _ in range(attempts):
        t0 = time.monotonic()
        try:
            # rewritten without malformed entries (a tag that held no index: with ours alone)
            current, _ = _fallback(client, subject)
            if not any(d.digest == ref.digest for d in current):
                client.put_manifest(tag, artifact.index([*current, ref]), OCI_INDEX)
            # A stale writer's read-to-write window is about as long as ours: wait three.
            settle = max(MIN_SETTLE, 3 * (time.monotonic() - t0))
            if _present_twice(client, subject, ref.digest, settle):
                return "fallback-tag"
        except CatalyticError as exc:
            if not _transient(exc):
                raise
        time.sleep(random.uniform(0, settle))
    raise CatalyticError(
        ErrorCode.REGISTRY_FAILED,
        f"the attestation {ref.digest} was "
        f"overwritten in the fallback tag {tag} by concurrent attachers "
        f"{attempts} times; push again",
        reason="REFERRER_LOST",
        digest=ref.digest,
    )


def _present_twice(client: Client, subject: str, digest: str, settle: float) -> bool:
    for _ in range(2):
        time.sleep(settle + random.uniform(0, settle))
        if not any(d.digest == digest for d in _fallback(client, subject)[0]):
            return False
    return True
