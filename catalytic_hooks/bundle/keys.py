"""Ed25519 keys: generation (private key 0600, never printed) and loading (PKCS#8 PEM as written
by `catalytic keygen`, or an OpenSSH key from `ssh-keygen -t ed25519`)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.files import fsync_dir, write_all

PASSPHRASE_ENV = "CATALYTIC_KEY_PASSPHRASE"


@dataclass(frozen=True)
class Signer:
    key: Any  # Ed25519PrivateKey
    public_hex: str
    validator_id: str

    def sign(self, message: bytes) -> str:
        sig: bytes = self.key.sign(message)
        return sig.hex()


def _signer(key: Any) -> Signer:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Signer(key, raw.hex(), hashlib.sha256(raw).hexdigest())


def signer_from_seed(seed: bytes) -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return _signer(Ed25519PrivateKey.from_private_bytes(seed))


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "catalytic" / "validator_ed25519"


def openssh_public_line(public_hex: str, comment: str = "catalytic") -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    return pub.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {comment}"


def keygen(path: Path) -> Signer:
    """Write a new key: `path` (PKCS#8 PEM, mode 0600, created exclusively) and `path.pub`
    (OpenSSH public key line). Refuses to overwrite either."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if p.exists() or p.is_symlink():
            raise CatalyticError(
                ErrorCode.KEY_EXISTS, f"{p} exists; refusing to overwrite a key", path=str(p)
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.IO_ERROR, f"cannot create {path.parent}: {exc.strerror}"
        ) from exc
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    signer = _signer(key)
    try:
        # O_EXCL: never follow or replace something that appeared meanwhile; 0600 from birth.
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            write_all(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, (openssh_public_line(signer.public_hex) + "\n").encode())
        finally:
            os.close(fd)
        fsync_dir(path.parent)
    except FileExistsError as exc:
        raise CatalyticError(
            ErrorCode.KEY_EXISTS, f"{exc.filename} appeared; not overwritten"
        ) from exc
    except OSError as exc:
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot write key: {exc}") from exc
    return signer


def load_signer(path: Path) -> Signer:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_ssh_private_key,
    )

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.SIGNING_KEY_INVALID, f"cannot read key {path}: {exc.strerror}", path=str(path)
        ) from exc
    pw = os.environ.get(PASSPHRASE_ENV)
    password = pw.encode() if pw else None
    key: Any = None
    errors = []
    for loader in (load_ssh_private_key, load_pem_private_key):
        try:
            key = loader(data, password)
            break
        except (ValueError, TypeError) as exc:  # wrong format, or encrypted without passphrase
            errors.append(str(exc))
    if key is None:
        hint = (
            f" (encrypted? set {PASSPHRASE_ENV})"
            if b"ENCRYPTED" in data or b"bcrypt" in data
            else ""
        )
        raise CatalyticError(
            ErrorCode.SIGNING_KEY_INVALID,
            f"{path} is not a readable Ed25519 private key{hint}",
            path=str(path),
        )
    if not isinstance(key, Ed25519PrivateKey):
        raise CatalyticError(
            ErrorCode.SIGNING_KEY_INVALID,
            f"{path} is not an Ed25519 key ({type(key).__name__})",
            path=str(path),
        )
    return _signer(key)


# -- public key hygiene (a hardening beyond the format) ----------------------------------------
# Edwards25519: -x^2 + y^2 = 1 + d x^2 y^2 over GF(p). A small-order public key lets a forger
# make one signature that verifies for many messages under some libraries' rules, and a
# non-canonical encoding gives one key several validator ids; both are refused.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int] | str:
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        return "not canonically encoded (y >= p)"
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return "not canonically encoded (negative zero)" if sign else (0, y)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return "not a point on the curve"
    return (_P - x if x & 1 != sign else x), y


def _double(pt: tuple[int, int]) -> tuple[int, int]:
    x, y = pt
    t = _D * x * x * y * y % _P
    return (
        (2 * x * y) * pow(1 + t, _P - 2, _P) % _P,
        (y * y + x * x) * pow(1 - t, _P - 2, _P) % _P,
    )


def weak_public_key(raw: bytes) -> str | None:
    """Why a 32-byte Ed25519 public key must be refused, or None."""
    if len(raw) != 32:
        return "not 32 bytes"
    pt = _decode_point(raw)
    if isinstance(pt, str):
        return pt
    for _ in range(3):  # 8·P is the identity exactly for the points of small order
        pt = _double(pt)
    if pt == (0, 1):
        return "a point of small order"
    return None
