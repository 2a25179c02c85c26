"""in-toto attestations of signed runs (README: "Attestations"): an in-toto Statement v1 in a
DSSE envelope, signed with the validator's Ed25519 key, so supply-chain tools can consume a run.

The SPECTRUM bundle stays what it is; the attestation is written beside it
(`<run>/attestation.intoto.json`) and is bound to it: its predicate names the bundle root and the
bundle's own signature, and its subjects are the bundle's outputs with their SHA-256.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.keys import Signer
from catalytic_hooks.bundle.model import PROOF, SIGNATURE, DirSource
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.bundle.verify import Verified, verify_bundle
from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.untrusted import read_named

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://github.com/catalytic-hooks/run/v1"
ATTESTATION_FILE = "attestation.intoto.json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _fail(code: ErrorCode, message: str) -> CatalyticError:
    return CatalyticError(code, f"attestation: {message}")


def _receipt(src: DirSource, name: str) -> dict[str, Any]:
    """A receipt the predicate quotes ({} when the bundle has none), read like every artifact:
    through the safe reader, strictly parsed, and required to be an object."""
    try:
        doc = loads_strict(src.read(name), what=name)
    except FileNotFoundError:
        return {}
    except (OSError, CatalyticError) as exc:
        raise CatalyticError(ErrorCode.ARTIFACT_MALFORMED, f"{name}: {exc}", artifact=name) from exc
    if not isinstance(doc, dict):
        raise CatalyticError(
            ErrorCode.ARTIFACT_MALFORMED, f"{name} is not a JSON object", artifact=name
        )
    return doc


def _statement(src: DirSource, v: Verified) -> dict[str, Any]:
    """The Statement of a verified bundle, built from the very bytes verification parsed."""
    spec, status = v.task_spec, v.status
    subjects = [
        {"name": k, "digest": {"sha256": h.removeprefix("sha256:")}}
        for k, h in sorted(v.hashes.items())
    ]
    commit = spec.get("git_commit") if isinstance(spec, dict) else None
    if isinstance(commit, str) and commit:
        subjects.append({"name": "source", "digest": {"gitCommit": commit}})
    pre, post = _receipt(src, "PRE_DIGEST.json"), _receipt(src, "POST_DIGEST.json")
    scan = _receipt(src, "PURITY_SCAN.json")
    predicate = {
        "version": 1,
        "run_id": spec.get("task_id") if isinstance(spec, dict) else None,
        "command": spec.get("command") if isinstance(spec, dict) else None,
        "exit_code": status.get("exit_code"),
        "status": status.get("status"),
        "pre_digest": pre.get("digest"),
        "post_digest": post.get("digest"),
        "purity_verdict": scan.get("verdict"),
        "proof_hash": v.docs[PROOF].get("proof_hash"),
        "environment": spec.get("environment") if isinstance(spec, dict) else None,
        "bundle_root": v.bundle_root,
        "validator_id": v.validator_id,
        "spectrum_signature": v.docs[SIGNATURE].get("signature"),
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _verified(run_dir: Path, project_root: Path) -> tuple[DirSource, Verified]:
    src = DirSource(run_dir, project_root)
    return src, verify_bundle(src)


def statement(run_dir: Path, project_root: Path) -> dict[str, Any]:
    """The Statement for a bundle that verifies (refused otherwise, with its verification code)."""
    return _statement(*_verified(run_dir, project_root))


def envelope(stmt: dict[str, Any], signer: Signer) -> dict[str, Any]:
    payload = canonical_bytes(stmt)
    sig = signer.key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": signer.validator_id, "sig": base64.b64encode(sig).decode()}],
    }


def load_envelopes(path: Path) -> list[Any]:
    """The envelopes of an attestation file (one, or one per line of a `.intoto.jsonl`),
    read through the safe reader: a FIFO, a device or a link there is refused unread."""
    try:
        raw = read_named(path)
    except FileNotFoundError as exc:
        raise CatalyticError(ErrorCode.USAGE, f"cannot read the attestation: {exc}") from exc
    except OSError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, str(exc)) from exc
    try:
        return [loads_strict(line, what=str(path)) for line in raw.splitlines() if line.strip()]
    except CatalyticError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, exc.message) from exc


def verify_envelope(
    doc: Any, run_dir: Path, project_root: Path, trust: TrustPolicy
) -> dict[str, Any]:
    """1. the envelope's shape; 2. the bundle verifies (outputs on disk included): nothing of
    it, the identity included, is read before that; 3. the envelope is signed by the bundle's
    verified key; 4. that key is trusted; 5. the payload is strict JSON (a duplicate key would
    let another parser see other subjects) and 6. equals the statement rebuilt from the bundle."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if (
        not isinstance(doc, dict)
        or doc.get("payloadType") != PAYLOAD_TYPE
        or not isinstance(doc.get("signatures"), list)
        or not isinstance(doc.get("payload"), str)
    ):
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, "not a DSSE envelope of an in-toto payload")
    try:
        payload = base64.b64decode(doc["payload"], validate=True)
    except ValueError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, "payload is not base64") from exc
    src, v = _verified(run_dir, project_root)
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(v.public_key))
    good = False
    for s in doc["signatures"]:
        if not isinstance(s, dict) or s.get("keyid") != v.validator_id:
            continue
        try:
            public.verify(
                base64.b64decode(str(s.get("sig")), validate=True), pae(PAYLOAD_TYPE, payload)
            )
            good = True
        except (InvalidSignature, ValueError):
            continue
    if not good:
        raise _fail(ErrorCode.SIGNATURE_INVALID, "no valid signature by the bundle's validator")
    decision = trust.decide(v.validator_id)
    if not decision.accepted:
        raise CatalyticError(ErrorCode.UNTRUSTED, f"attestation signer: {decision.reason}")
    try:
        stmt = loads_strict(payload, what="the attestation's statement")
    except CatalyticError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, exc.message) from exc
    expected = _statement(src, v)
    if stmt != expected:
        raise _fail(
            ErrorCode.HASH_MISMATCH,
            "its statement does not match the bundle and the "
            "files on disk (subjects or predicate differ)",
        )
    return {
        "keyid": v.validator_id,
        "trusted": decision.trusted,
        "subjects": len(expected["subject"]),
        "bundle_root": v.bundle_root,
    }
