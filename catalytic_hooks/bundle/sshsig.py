"""OpenSSH interop: Ed25519 keys in SSH wire format and SSHSIG detached signatures (the format of
`ssh-keygen -Y sign`, PROTOCOL.sshsig), so that a signed bundle verifies with nothing but
`ssh-keygen -Y verify` and the trusted-validators file used as `allowed_signers`."""

from __future__ import annotations

import base64
import hashlib

from catalytic_hooks.bundle.keys import Signer

NAMESPACE = "catalytic"
SSHSIG_FILE = "ssh-signature.sig"  # beside SIGNED_PAYLOAD.json, over its bytes
_MAGIC = b"SSHSIG"
_KEY_TYPE = b"ssh-ed25519"


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def public_blob(public_hex: str) -> bytes:
    return _string(_KEY_TYPE) + _string(bytes.fromhex(public_hex))


def public_line(public_hex: str) -> str:
    """`ssh-ed25519 <base64>`, as in an OpenSSH public key or allowed_signers file."""
    return "ssh-ed25519 " + base64.b64encode(public_blob(public_hex)).decode()


def sign(signer: Signer, message: bytes, namespace: str = NAMESPACE) -> str:
    """An armored SSHSIG signature of `message` (hash sha512), as `ssh-keygen -Y sign` writes."""
    ns, hash_alg = namespace.encode(), b"sha512"
    digest = hashlib.sha512(message).digest()
    signed = _MAGIC + _string(ns) + _string(b"") + _string(hash_alg) + _string(digest)
    signature = signer.key.sign(signed)
    blob = (
        _MAGIC
        + (1).to_bytes(4, "big")
        + _string(public_blob(signer.public_hex))
        + _string(ns)
        + _string(b"")
        + _string(hash_alg)
        + _string(_string(_KEY_TYPE) + _string(signature))
    )
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"
