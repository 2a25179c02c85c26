"""in-toto attestations of signed runs (README: "Attestations"): an in-toto Statement v1 in a
DSSE envelope, signed with the validator's Ed25519 key, so supply-chain tools can consume a run.

The SPECTRUM bundle stays what it is; the attestation is written beside it
(`<run>/attestation.intoto.json`) and is bound to it: its predicate names the bundle root and the
bundle's own signature, and its subjects are the bundle's outputs with their SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.keys import Signer
from catalytic_hooks.bundle.model import (
    IDENTITY,
    OUTPUT_HASHES,
    PROOF,
    SIGNATURE,
    STATUS,
    TASK_SPEC,
    DirSource,
)
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.bundle.verify import verify_bundle
from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://github.com/catalytic-hooks/run/v1"
ATTESTATION_FILE = "attestation.intoto.json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _json(run_dir: Path, name: str) -> Any:
    return loads_strict((run_dir / name).read_bytes(), what=name)


def statement(run_dir: Path, project_root: Path) -> dict[str, Any]:
    """The Statement for a bundle that verifies (refused otherwise, with its verification code)."""
    v = verify_bundle(DirSource(run_dir, project_root))
    spec, status = _json(run_dir, TASK_SPEC), _json(run_dir, STATUS)
    hashes = _json(run_dir, OUTPUT_HASHES)["hashes"]
    subjects = [{"name": k, "digest": {"sha256": h.removeprefix("sha256:")}}
                for k, h in sorted(hashes.items())]
    commit = spec.get("git_commit") if isinstance(spec, dict) else None
    if isinstance(commit, str) and commit:
        subjects.append({"name": "source", "digest": {"gitCommit": commit}})
    pre = _json(run_dir, "PRE_DIGEST.json") if (run_dir / "PRE_DIGEST.json").exists() else {}
    post = _json(run_dir, "POST_DIGEST.json") if (run_dir / "POST_DIGEST.json").exists() else {}
    scan = _json(run_dir, "PURITY_SCAN.json") if (run_dir / "PURITY_SCAN.json").exists() else {}
    predicate = {
        "version": 1,
        "run_id": spec.get("task_id") if isinstance(spec, dict) else None,
        "command": spec.get("command") if isinstance(spec, dict) else None,
        "exit_code": status.get("exit_code"),
        "status": status.get("status"),
        "pre_digest": pre.get("digest"),
        "post_digest": post.get("digest"),
        "purity_verdict": scan.get("verdict"),
        "proof_hash": _json(run_dir, PROOF).get("proof_hash"),
        "environment": spec.get("environment") if isinstance(spec, dict) else None,
        "bundle_root": v.bundle_root,
        "validator_id": v.validator_id,
        "spectrum_signature": _json(run_dir, SIGNATURE).get("signature"),
    }
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
            "predicate": predicate}


def envelope(stmt: dict[str, Any], signer: Signer) -> dict[str, Any]:
    payload = canonical_bytes(stmt)
    sig = signer.key.sign(pae(PAYLOAD_TYPE, payload))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": signer.validator_id, "sig": base64.b64encode(sig).decode()}]}


def _fail(code: ErrorCode, message: str) -> CatalyticError:
    return CatalyticError(code, f"attestation: {message}")


def verify_envelope(doc: Any, run_dir: Path, project_root: Path, trust: TrustPolicy
                    ) -> dict[str, Any]:
    """Check the envelope's signature (by the bundle's validator key), the trust in that key,
    every subject against the files on disk, and that the predicate is this bundle's."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(doc, dict) or doc.get("payloadType") != PAYLOAD_TYPE or \
            not isinstance(doc.get("signatures"), list) or not isinstance(doc.get("payload"), str):
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, "not a DSSE envelope of an in-toto payload")
    try:
        payload = base64.b64decode(doc["payload"], validate=True)
    except ValueError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, "payload is not base64") from exc
    identity = _json(run_dir, IDENTITY)
    public = bytes.fromhex(identity["public_key"])
    keyid = hashlib.sha256(public).hexdigest()
    good = False
    for s in doc["signatures"]:
        if not isinstance(s, dict) or s.get("keyid") != keyid:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(
                base64.b64decode(str(s.get("sig")), validate=True), pae(PAYLOAD_TYPE, payload))
            good = True
        except (InvalidSignature, ValueError):
            continue
    if not good:
        raise _fail(ErrorCode.SIGNATURE_INVALID, "no valid signature by the bundle's validator")
    decision = trust.decide(keyid)
    if not decision.accepted:
        raise CatalyticError(ErrorCode.UNTRUSTED, f"attestation signer: {decision.reason}")
    try:
        stmt = json.loads(payload)
    except ValueError as exc:
        raise _fail(ErrorCode.ARTIFACT_MALFORMED, "payload is not JSON") from exc
    expected = statement(run_dir, project_root)  # verifies the bundle and its outputs on disk
    if stmt != expected:
        raise _fail(ErrorCode.HASH_MISMATCH, "its statement does not match the bundle and the "
                    "files on disk (subjects or predicate differ)")
    return {"keyid": keyid, "trusted": decision.trusted, "subjects": len(stmt["subject"]),
            "bundle_root": expected["predicate"]["bundle_root"]}
