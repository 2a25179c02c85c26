"""Factories for run bundles used across the bundle, restore and replay tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.keys import Signer, signer_from_seed
from catalytic_hooks.bundle.sign import sign_run_dir

SEED_A = hashlib.sha256(b"catalytic_hooks/tests/validator-A").digest()
SEED_B = hashlib.sha256(b"catalytic_hooks/tests/validator-B").digest()


def signer(seed: bytes = SEED_A) -> Signer:
    return signer_from_seed(seed)


def make_bundle(run_dir: Path, project_root: Path, outputs: dict[str, bytes] | None = None, *,
                status: dict[str, Any] | None = None, proof: dict[str, Any] | None = None,
                task_spec: bytes | None = None, sign: bool = True, seed: bytes = SEED_A,
                hashes: dict[str, str] | None = None) -> Path:
    """Write a bundle (outputs under project_root) and sign it with the package's signer."""
    outputs = {"out/result.txt": b"hello\n"} if outputs is None else outputs
    run_dir.mkdir(parents=True)
    computed = {}
    for key, data in outputs.items():
        p = project_root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        computed[key] = "sha256:" + hashlib.sha256(data).hexdigest()
    (run_dir / "TASK_SPEC.json").write_bytes(
        task_spec if task_spec is not None else json.dumps({"task_id": run_dir.name}).encode())
    (run_dir / "STATUS.json").write_text(json.dumps(
        status if status is not None else {"status": "success", "cmp01": "pass"}))
    (run_dir / "OUTPUT_HASHES.json").write_text(json.dumps(
        {"hashes": hashes if hashes is not None else computed}))
    (run_dir / "PROOF.json").write_text(json.dumps(
        proof if proof is not None else {"restoration_result": {"verified": True}}))
    if sign:
        sign_run_dir(run_dir, signer(seed))
    return run_dir


def rewrite(path: Path, mutate: Any) -> None:
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))


def resign(run_dir: Path, seed: bytes = SEED_A) -> None:
    sign_run_dir(run_dir, signer(seed), force=True)


def key_file(directory: Path, seed: bytes = SEED_A) -> Path:
    """The test key as a PKCS#8 PEM file (mode 0600), for `--sign` / `--key`."""
    import os

    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    p = directory / f"key-{seed[:2].hex()}.pem"
    if not p.exists():
        p.write_bytes(signer(seed).key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                     NoEncryption()))
        os.chmod(p, 0o600)
    return p
