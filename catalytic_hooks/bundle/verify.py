"""SPECTRUM-05 verification (docs/FORMATS.md §4): a flat, ordered pipeline; the first failure wins.

Verification *raises* a CatalyticError carrying the specification's code and details; it never
returns False. Trust is decided separately (trust.py): a bundle can be valid and untrusted.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any

from catalytic_hooks.bundle.keys import weak_public_key
from catalytic_hooks.bundle.model import (
    ARTIFACTS,
    FORBIDDEN,
    HEX64,
    HEX128,
    IDENTITY,
    OUTPUT_HASHES,
    PAYLOAD,
    PROOF,
    RECEIPTS,
    SHA256_REF,
    SIGNATURE,
    STATUS,
    TASK_SPEC,
    BundleSource,
    bundle_root,
    chain_root,
    run_id_problem,
    signed_message,
    unsafe_key,
)
from catalytic_hooks.core.canonical import loads_strict, proof_hash, sha256_hex
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.workers import worker_count

_IDENTITY_FIELDS = frozenset({"algorithm", "public_key", "validator_id"})
_PAYLOAD_FIELDS = frozenset({"bundle_root", "decision", "validator_id"})
_SIGNATURE_REQUIRED = ("payload_type", "signature", "validator_id")


@dataclass(frozen=True)
class Verified:
    run_id: str
    bundle_root: str
    validator_id: str
    public_key: str
    proof_covered: bool
    hashes: dict[str, str] = field(default_factory=dict)
    task_spec: Any = None
    status: dict[str, Any] = field(default_factory=dict)
    # Every artifact as parsed from the bytes that were verified: what a caller builds on (an
    # attestation's statement) must never come from a second, unverified read.
    docs: dict[str, Any] = field(default_factory=dict)


def _fail(code: ErrorCode, message: str, **details: Any) -> CatalyticError:
    return CatalyticError(code, message, **details)


def _exact_fields(doc: dict[str, Any], expected: frozenset[str], artifact: str) -> None:
    extra = sorted(set(doc) - expected)
    if extra:
        raise _fail(
            ErrorCode.FIELD_EXTRA,
            f"{artifact}: unexpected field '{extra[0]}'",
            artifact=artifact,
            field=extra[0],
        )
    missing = sorted(expected - set(doc))
    if missing:
        raise _fail(
            ErrorCode.FIELD_MISSING,
            f"{artifact}: missing field '{missing[0]}'",
            artifact=artifact,
            field=missing[0],
        )


def verify_bundle(src: BundleSource) -> Verified:
    """docs/FORMATS.md §4, steps 1–10 in order; the first failure raises."""
    entries = _presence(src)  # 1
    raw, docs = _parse(src)  # 2
    public_key, validator_id = _identity(docs[IDENTITY])  # 3
    hashes, root = _bundle_root(raw, docs)  # 4
    _signed_payload(docs[PAYLOAD], root, validator_id)  # 5
    _signature(docs[SIGNATURE], docs[PAYLOAD], public_key, validator_id)  # 6
    covered = _proof(src, docs, raw[PROOF], entries)  # 7
    _forbidden(entries)  # 8
    _acceptance(docs[STATUS])  # 9
    # A run that records its run id (under the signature) is known by that name only: renamed,
    # it would verify as another run, fill a chain twice, or pass the gate under a new name.
    if (why := run_id_problem(src.run_id, docs[STATUS])) is not None:
        raise _fail(ErrorCode.RUN_ID_MISMATCH, why, run_id=src.run_id)
    _outputs(src, hashes)  # 10
    return Verified(
        src.run_id,
        root,
        validator_id,
        docs[IDENTITY]["public_key"],
        covered,
        dict(hashes),
        docs[TASK_SPEC],
        docs[STATUS],
        docs,
    )


def _presence(src: BundleSource) -> dict[str, str]:
    """1. every artifact present; hardening: no second identity/payload/signature, no
    directory where a file is expected."""
    entries = src.entries()
    for name in ARTIFACTS:
        if name not in entries:
            raise _fail(ErrorCode.ARTIFACT_MISSING, f"{name} is missing", artifact=name)
    for name in sorted(entries):
        if name not in ARTIFACTS and name.startswith(
            ("VALIDATOR_IDENTITY", "SIGNED_PAYLOAD", "SIGNATURE")
        ):
            raise _fail(
                ErrorCode.ARTIFACT_EXTRA, f"unexpected signing artifact {name}", artifact=name
            )
    for name in ARTIFACTS:
        if entries[name] != "file":
            raise _fail(
                ErrorCode.ARTIFACT_MALFORMED,
                f"{name} is a {entries[name]}, not a file",
                artifact=name,
            )
    return entries


def _parse(src: BundleSource) -> tuple[dict[str, bytes], dict[str, Any]]:
    """2. parse each artifact strictly, in the same order. The bytes read here are the only
    ones used afterwards (TASK_SPEC is never read twice)."""
    raw: dict[str, bytes] = {}
    docs: dict[str, Any] = {}
    for name in ARTIFACTS:
        try:
            raw[name] = src.read(name)
            docs[name] = loads_strict(raw[name], what=name)
        except CatalyticError as exc:
            raise _fail(ErrorCode.ARTIFACT_MALFORMED, exc.message, artifact=name) from exc
        except OSError as exc:
            raise _fail(ErrorCode.ARTIFACT_MALFORMED, f"{name}: {exc}", artifact=name) from exc
        if name != TASK_SPEC and not isinstance(docs[name], dict):
            raise _fail(ErrorCode.ARTIFACT_MALFORMED, f"{name} is not a JSON object", artifact=name)
    return raw, docs


def _identity(ident: dict[str, Any]) -> tuple[Any, str]:
    """3. exact fields, algorithm, key format (hardening: canonical, not of small order),
    derived validator id."""
    _exact_fields(ident, _IDENTITY_FIELDS, IDENTITY)
    if ident["algorithm"] != "ed25519":
        raise _fail(
            ErrorCode.ALGORITHM_UNSUPPORTED,
            f"algorithm {ident['algorithm']!r} is not supported (only ed25519)",
            algorithm=ident["algorithm"],
        )
    pub_hex = ident["public_key"]
    if not isinstance(pub_hex, str) or not HEX64.match(pub_hex):
        raise _fail(ErrorCode.KEY_INVALID, "public_key must be 64 lowercase hex (32 bytes)")
    pub_raw = bytes.fromhex(pub_hex)
    problem = weak_public_key(pub_raw)
    if problem is not None:
        raise _fail(ErrorCode.KEY_INVALID, f"public_key is {problem}")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public_key = Ed25519PublicKey.from_public_bytes(pub_raw)
    except ValueError as exc:
        raise _fail(ErrorCode.KEY_INVALID, f"public_key is not an Ed25519 key: {exc}") from exc
    validator_id = hashlib.sha256(pub_raw).hexdigest()
    if ident["validator_id"] != validator_id:
        raise _fail(
            ErrorCode.IDENTITY_INVALID,
            "validator_id is not sha256(public_key)",
            expected=validator_id,
            actual=ident["validator_id"],
        )
    return public_key, validator_id


def _bundle_root(raw: dict[str, bytes], docs: dict[str, Any]) -> tuple[dict[str, str], str]:
    """4. the bundle root over TASK_SPEC's raw bytes, STATUS and OUTPUT_HASHES.hashes."""
    hashes_doc = docs[OUTPUT_HASHES]
    if "hashes" not in hashes_doc:
        raise _fail(
            ErrorCode.FIELD_MISSING,
            "OUTPUT_HASHES.json: missing field 'hashes'",
            artifact=OUTPUT_HASHES,
            field="hashes",
        )
    hashes = hashes_doc["hashes"]
    if not isinstance(hashes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()
    ):
        raise _fail(
            ErrorCode.ARTIFACT_MALFORMED,
            "OUTPUT_HASHES.hashes must map strings to strings",
            artifact=OUTPUT_HASHES,
        )
    bad = sorted(k for k, v in hashes.items() if not SHA256_REF.match(v))
    if bad:
        raise _fail(
            ErrorCode.ARTIFACT_MALFORMED,
            f"hash of {bad[0]!r} is not 'sha256:' + 64 lowercase hex",
            artifact=OUTPUT_HASHES,
            path=bad[0],
        )
    return hashes, bundle_root(raw[TASK_SPEC], docs[STATUS], hashes)


def _signed_payload(payload: dict[str, Any], root: str, validator_id: str) -> None:
    """5. exact fields, the bundle root it signs, the decision, the validator."""
    _exact_fields(payload, _PAYLOAD_FIELDS, PAYLOAD)
    if payload["bundle_root"] != root:
        raise _fail(
            ErrorCode.BUNDLE_ROOT_MISMATCH,
            "the signed bundle_root does not match the bundle",
            expected=root,
            actual=payload["bundle_root"],
        )
    if payload["decision"] != "ACCEPT":
        raise _fail(
            ErrorCode.DECISION_INVALID,
            f"decision is {payload['decision']!r}, not 'ACCEPT'",
            artifact=PAYLOAD,
        )
    if payload["validator_id"] != validator_id:
        raise _fail(
            ErrorCode.IDENTITY_MISMATCH, "SIGNED_PAYLOAD names another validator", artifact=PAYLOAD
        )


def _signature(
    sig: dict[str, Any], payload: dict[str, Any], public_key: Any, validator_id: str
) -> None:
    """6. complete, well-formed, same validator, and the Ed25519 signature verifies."""
    from cryptography.exceptions import InvalidSignature

    for name in _SIGNATURE_REQUIRED:
        if name not in sig:
            raise _fail(
                ErrorCode.SIGNATURE_INCOMPLETE, f"SIGNATURE.json: missing '{name}'", field=name
            )
    if (
        sig["payload_type"] != "BUNDLE"
        or not isinstance(sig["signature"], str)
        or not HEX128.match(sig["signature"])
    ):
        raise _fail(
            ErrorCode.SIGNATURE_MALFORMED,
            "SIGNATURE.json: payload_type must be 'BUNDLE' and signature 128 lowercase hex",
        )
    if sig["validator_id"] != validator_id:
        raise _fail(
            ErrorCode.IDENTITY_MISMATCH, "SIGNATURE names another validator", artifact=SIGNATURE
        )
    try:
        public_key.verify(bytes.fromhex(sig["signature"]), signed_message(payload))
    except InvalidSignature as exc:
        raise _fail(ErrorCode.SIGNATURE_INVALID, "the Ed25519 signature does not verify") from exc


def _proof(
    src: BundleSource, docs: dict[str, Any], proof_raw: bytes, entries: dict[str, str]
) -> bool:
    """7. proof_hash, restoration_result.verified; hardening: the hashes STATUS records for
    PROOF and the receipts. Returns whether the proof is covered by the signature."""
    proof = docs[PROOF]
    if "proof_hash" in proof:
        rest = {k: v for k, v in proof.items() if k != "proof_hash"}
        if proof["proof_hash"] != proof_hash(rest):
            raise _fail(
                ErrorCode.ARTIFACT_MALFORMED,
                "PROOF.json: proof_hash does not match",
                artifact=PROOF,
            )
    if "restoration_result" not in proof:
        raise _fail(
            ErrorCode.FIELD_MISSING,
            "PROOF.json: missing 'restoration_result'",
            artifact=PROOF,
            field="restoration_result",
        )
    rr = proof["restoration_result"]
    if not isinstance(rr, dict) or rr.get("verified") is not True:
        raise _fail(
            ErrorCode.RESTORATION_FAILED, "PROOF.json: restoration_result.verified is not true"
        )
    return _check_covered(src, docs[STATUS], proof_raw, entries)


def _forbidden(entries: dict[str, str]) -> None:
    """8. no `logs`, `tmp` or `transcript.json` in the run directory."""
    for name in FORBIDDEN:
        if name in entries:
            raise _fail(
                ErrorCode.FORBIDDEN_ARTIFACT,
                f"forbidden artifact {name!r} in the run directory",
                artifact=name,
            )


def _acceptance(status: dict[str, Any]) -> None:
    """9. status=success and cmp01=pass, decided before any output is read."""
    if status.get("status") != "success" or status.get("cmp01") != "pass":
        raise _fail(
            ErrorCode.DECISION_INVALID,
            "STATUS is not status=success, cmp01=pass",
            status=status.get("status"),
            cmp01=status.get("cmp01"),
        )


def _outputs(src: BundleSource, hashes: dict[str, str]) -> None:
    """10. outputs in sorted key order: safe key, present, regular, matching hash."""
    if hasattr(src, "hashes"):
        src.hashes = hashes
    keys = sorted(hashes)
    problems = {k: unsafe_key(k) for k in keys}
    found_all = _hash_outputs(src, [k for k in keys if problems[k] is None])
    for key in keys:
        problem = problems[key]
        if problem is not None:
            raise _fail(
                ErrorCode.PATH_ESCAPE_DETECTED,
                f"output key {key!r}: {problem}",
                path=key,
                reason=problem,
            )
        found = found_all[key]
        if found.sha256 is None:
            raise _fail(ErrorCode.OUTPUT_MISSING, f"output {key} is {found.problem}", path=key)
        actual = "sha256:" + found.sha256
        if actual != hashes[key]:
            raise _fail(
                ErrorCode.HASH_MISMATCH,
                f"output {key} does not match its hash"
                f"{' (in the bundle store)' if found.in_store else ''}",
                path=key,
                expected=hashes[key],
                actual=actual,
                source="bundle store" if found.in_store else "project",
            )


def _hash_outputs(src: BundleSource, keys: list[str]) -> dict[str, Any]:
    """Hash the outputs on all cores (hashlib and file reads release the GIL); the verdict is
    still decided in sorted key order by the caller, so the first failure wins as specified."""
    import os

    root = getattr(src, "project_root", None)
    sizes = 0
    if root is not None and len(keys) >= 8:
        for k in keys[:64]:  # a sample decides: threads pay off on large files only
            with contextlib.suppress(OSError):
                sizes += os.lstat(os.path.join(root, k)).st_size
    if len(keys) < 8 or sizes < 64 * 1024 * min(len(keys), 64):
        return {k: src.output(k) for k in keys}
    from concurrent.futures import ThreadPoolExecutor  # only here: 13 ms of every start

    with ThreadPoolExecutor(worker_count(2)) as pool:
        return dict(zip(keys, pool.map(src.output, keys), strict=True))


def _check_covered(
    src: BundleSource, status: dict[str, Any], proof_raw: bytes, entries: dict[str, str]
) -> bool:
    """catalytic-hooks records PROOF's and the receipts' hashes in STATUS (which the bundle root
    covers). Check them when present; report whether the proof is covered."""
    recorded = status.get("proof_sha256")
    if recorded is None:
        return False
    if recorded != "sha256:" + sha256_hex(proof_raw):
        raise _fail(
            ErrorCode.ARTIFACT_MALFORMED,
            "PROOF.json does not match the proof_sha256 recorded in STATUS.json",
            artifact=PROOF,
        )
    receipts = status.get("receipts", {})
    if not isinstance(receipts, dict):
        raise _fail(
            ErrorCode.ARTIFACT_MALFORMED, "STATUS.receipts must be an object", artifact=STATUS
        )
    for name, ref in sorted(receipts.items()):
        if name not in RECEIPTS:
            raise _fail(
                ErrorCode.ARTIFACT_MALFORMED, f"STATUS.receipts names {name!r}", artifact=STATUS
            )
        if entries.get(name) != "file":
            raise _fail(ErrorCode.ARTIFACT_MISSING, f"receipt {name} is missing", artifact=name)
        try:
            data = src.read(name)
        except OSError as exc:
            raise _fail(ErrorCode.ARTIFACT_MALFORMED, f"{name}: {exc}", artifact=name) from exc
        if ref != "sha256:" + sha256_hex(data):
            raise _fail(
                ErrorCode.ARTIFACT_MALFORMED,
                f"receipt {name} does not match its hash in STATUS.json",
                artifact=name,
            )
    return True


@dataclass(frozen=True)
class ChainVerified:
    chain_root: str
    bundles: list[Verified]


def verify_chain(sources: list[BundleSource]) -> ChainVerified:
    if not sources:
        raise _fail(ErrorCode.CHAIN_EMPTY, "the chain is empty")
    ids = [s.run_id for s in sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise _fail(
            ErrorCode.CHAIN_DUPLICATE_RUN, f"run id {dup[0]!r} appears twice", run_id=dup[0]
        )
    verified = []
    for s in sources:
        try:
            verified.append(verify_bundle(s))
        except CatalyticError as exc:
            exc.details["run_id"] = s.run_id
            raise
    # from the roots already verified, never by re-reading files
    root = chain_root([v.bundle_root for v in verified], [v.run_id for v in verified])
    return ChainVerified(root, verified)
