"""`catalytic sign`: write VALIDATOR_IDENTITY, SIGNED_PAYLOAD and SIGNATURE for a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalytic_hooks.bundle import sshsig
from catalytic_hooks.bundle.keys import Signer
from catalytic_hooks.bundle.model import (
    IDENTITY,
    OUTPUT_HASHES,
    PAYLOAD,
    SIGNATURE,
    SIGNING_ARTIFACTS,
    STATUS,
    TASK_SPEC,
    bundle_root,
    signed_message,
)
from catalytic_hooks.bundle.sshsig import SSHSIG_FILE
from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.clock import stamp_seconds
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.fs.untrusted import read_beneath


def compute_root(run_dir: Path) -> str:
    def read(name: str) -> bytes:
        # The safe reader: a run directory to sign may have come from elsewhere, and a FIFO or a
        # link to a device in it must not hang or exhaust the signer.
        try:
            return read_beneath(run_dir, name)
        except FileNotFoundError as exc:
            raise CatalyticError(
                ErrorCode.ARTIFACT_MISSING, f"{run_dir}/{exc}", artifact=name
            ) from exc
        except OSError as exc:
            raise CatalyticError(
                ErrorCode.ARTIFACT_MALFORMED, f"{run_dir}/{exc}", artifact=name
            ) from exc

    task_raw = read(TASK_SPEC)
    loads_strict(task_raw, what=TASK_SPEC)
    status = loads_strict(read(STATUS), what=STATUS)
    hashes_doc = loads_strict(read(OUTPUT_HASHES), what=OUTPUT_HASHES)
    if (
        not isinstance(status, dict)
        or not isinstance(hashes_doc, dict)
        or not isinstance(hashes_doc.get("hashes"), dict)
    ):
        raise CatalyticError(ErrorCode.ARTIFACT_MALFORMED, "STATUS/OUTPUT_HASHES are malformed")
    return bundle_root(task_raw, status, hashes_doc["hashes"])


def sign_run_dir(
    run_dir: Path, signer: Signer, *, force: bool = False, signed_at: str | None = None
) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise CatalyticError(ErrorCode.ARTIFACT_MISSING, f"{run_dir} is not a run directory")
    present = [n for n in SIGNING_ARTIFACTS if (run_dir / n).exists()]
    if present and not force:
        raise CatalyticError(
            ErrorCode.ALREADY_SIGNED,
            f"{run_dir} is already signed ({', '.join(present)}); use --force to re-sign",
            run_dir=str(run_dir),
        )
    root = compute_root(run_dir)
    identity = {
        "algorithm": "ed25519",
        "public_key": signer.public_hex,
        "validator_id": signer.validator_id,
    }
    payload = {"bundle_root": root, "decision": "ACCEPT", "validator_id": signer.validator_id}
    signature = {
        "payload_type": "BUNDLE",
        "signature": signer.sign(signed_message(payload)),
        "validator_id": signer.validator_id,
        "signed_at": signed_at or stamp_seconds(),
    }
    # The signature goes last: an interrupted signing leaves an incomplete (rejected) bundle,
    # never one that verifies with a stale signature.
    if force:
        (run_dir / SIGNATURE).unlink(missing_ok=True)
        (run_dir / SSHSIG_FILE).unlink(missing_ok=True)
    payload_raw = canonical_bytes(payload)
    atomic_write(run_dir / IDENTITY, canonical_bytes(identity))
    atomic_write(run_dir / PAYLOAD, payload_raw)
    atomic_write(run_dir / SIGNATURE, canonical_bytes(signature))
    # The same decision, signed for OpenSSH: `ssh-keygen -Y verify -n catalytic` checks it
    # against the trusted-validators file (README: "Verifying with OpenSSH").
    atomic_write(run_dir / SSHSIG_FILE, sshsig.sign(signer, payload_raw).encode())
    return {"bundle_root": root, "validator_id": signer.validator_id}


def sign_and_record(run_dir: Path, signer: Signer, *, force: bool = False) -> dict[str, Any]:
    """`catalytic sign`: sign, then record the signing in the chronicle of the repository
    holding the run directory (if any)."""
    from catalytic_hooks.provenance.chronicle import record_for

    info = sign_run_dir(run_dir, signer, force=force)
    record_for(run_dir, "sign", {"run_id": run_dir.name, **info})
    return info
