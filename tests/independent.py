"""A minimal SPECTRUM-04/05 producer and checker written only from docs/FORMATS.md.

It deliberately shares no code with catalytic_hooks (only the standard library and the
`cryptography` package), so agreement between the two is evidence of interoperability.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DOMAIN = b"CAT-DPT-SPECTRUM-04-v1:BUNDLE:"
SEVEN = [
    "TASK_SPEC.json",
    "STATUS.json",
    "OUTPUT_HASHES.json",
    "PROOF.json",
    "VALIDATOR_IDENTITY.json",
    "SIGNED_PAYLOAD.json",
    "SIGNATURE.json",
]


def cj(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(run_dir: Path, project_root: Path) -> str:
    """Return the bundle root if the bundle is acceptable, else raise AssertionError."""
    for name in SEVEN:
        assert (run_dir / name).is_file(), name
    docs = {n: json.loads((run_dir / n).read_bytes()) for n in SEVEN}
    ident = docs["VALIDATOR_IDENTITY.json"]
    assert set(ident) == {"algorithm", "public_key", "validator_id"}
    assert ident["algorithm"] == "ed25519"
    raw_key = bytes.fromhex(ident["public_key"])
    assert ident["validator_id"] == h(raw_key)
    root = h(
        cj(
            {
                "output_hashes": docs["OUTPUT_HASHES.json"]["hashes"],
                "status": docs["STATUS.json"],
                "task_spec_hash": h((run_dir / "TASK_SPEC.json").read_bytes()),
            }
        )
    )
    payload = docs["SIGNED_PAYLOAD.json"]
    assert payload == {
        "bundle_root": root,
        "decision": "ACCEPT",
        "validator_id": ident["validator_id"],
    }
    sig = docs["SIGNATURE.json"]
    assert sig["payload_type"] == "BUNDLE" and sig["validator_id"] == ident["validator_id"]
    Ed25519PublicKey.from_public_bytes(raw_key).verify(
        bytes.fromhex(sig["signature"]), DOMAIN + cj(payload)
    )
    assert docs["PROOF.json"]["restoration_result"]["verified"] is True
    status = docs["STATUS.json"]
    assert status["status"] == "success" and status["cmp01"] == "pass"
    for key, expected in sorted(docs["OUTPUT_HASHES.json"]["hashes"].items()):
        assert not key.startswith("/") and ".." not in key.split("/")
        hexd = expected.removeprefix("sha256:")
        stored = run_dir / "objects" / "sha256" / hexd[:2] / hexd[2:]
        data = stored.read_bytes() if stored.is_file() else (project_root / key).read_bytes()
        assert "sha256:" + h(data) == expected, key
    return root


def produce(run_dir: Path, project_root: Path, outputs: dict[str, bytes], seed: bytes) -> str:
    """Write a signed bundle the way another implementation would (indented, non-canonical
    JSON for the parsed files)."""
    run_dir.mkdir(parents=True)
    hashes = {}
    for key, data in outputs.items():
        (project_root / key).parent.mkdir(parents=True, exist_ok=True)
        (project_root / key).write_bytes(data)
        hashes[key] = "sha256:" + h(data)
    task = json.dumps({"task_id": run_dir.name, "note": "independent"}, indent=2).encode()
    status = {"status": "success", "cmp01": "pass", "run_id": run_dir.name}
    (run_dir / "TASK_SPEC.json").write_bytes(task)
    (run_dir / "STATUS.json").write_text(json.dumps(status, indent=2))
    (run_dir / "OUTPUT_HASHES.json").write_text(json.dumps({"hashes": hashes}, indent=2))
    (run_dir / "PROOF.json").write_text(json.dumps({"restoration_result": {"verified": True}}))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    vid = h(raw)
    root = h(cj({"output_hashes": hashes, "status": status, "task_spec_hash": h(task)}))
    payload = {"bundle_root": root, "decision": "ACCEPT", "validator_id": vid}
    (run_dir / "VALIDATOR_IDENTITY.json").write_text(
        json.dumps({"algorithm": "ed25519", "public_key": raw.hex(), "validator_id": vid}, indent=1)
    )
    (run_dir / "SIGNED_PAYLOAD.json").write_text(json.dumps(payload, indent=3))
    (run_dir / "SIGNATURE.json").write_text(
        json.dumps(
            {
                "payload_type": "BUNDLE",
                "signature": key.sign(DOMAIN + cj(payload)).hex(),
                "validator_id": vid,
            }
        )
    )
    return root
