"""Trusted validators, in a file that is also a valid OpenSSH `allowed_signers` file.

One validator per line, OpenSSH's syntax: `<name> [options] ssh-ed25519 <base64> [comment]`, the
options `namespaces="catalytic,git"` (which signatures the key may make: bundles, amendments),
`valid-after="YYYYMMDD[HHMMSS]Z"`, `valid-before=...`. The format of earlier versions is read
too: `<name> <key> [valid-after=DATE] [valid-before=DATE]` with `<key>` `ed25519:<64 hex>`,
`ssh-ed25519 <base64>` or `id:<64-hex validator id>` (`catalytic trust migrate` rewrites it).
`#` starts a comment. The file lives in the repository, so trust changes are reviewed like code.
A validity window belongs to the key on its line, never to the name: with OpenSSH-style rotation
(the old key kept under a name with `valid-before`, the new key added under the same name) only the
new key is trusted, whatever the old one signs. The window is judged at verification time, never
at a time the signer chose (a bundle's `signed_at` is not signed; a commit's date is the
committer's to pick).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from catalytic_hooks.bundle.model import HEX64
from catalytic_hooks.core.clock import now, stamp_seconds
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import DEFAULT_TRUST_FILE, Policy
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.fs.untrusted import read_beneath, read_named

DEFAULT_FILE = DEFAULT_TRUST_FILE
HEADER = (
    "# catalytic trusted validators, an OpenSSH allowed_signers file:\n"
    '# <name> namespaces="catalytic,git"[,valid-after="DATE"][,valid-before="DATE"] '
    "ssh-ed25519 <base64>\n"
)
_KEY_START = ("ssh-ed25519", "ed25519:", "id:")
MAX_TRUST_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Validator:
    name: str
    validator_id: str
    key_text: str
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    namespaces: tuple[str, ...] | None = None  # None: any (a line in the earlier format)

    def valid_at(self, when: datetime) -> bool:
        if self.valid_after is not None and when < self.valid_after:
            return False
        return not (self.valid_before is not None and when >= self.valid_before)

    def allows(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def line(self) -> str:
        """The allowed_signers line (an `id:` key, which has no public key, keeps the earlier
        format: OpenSSH cannot use it)."""
        if self.key_text.startswith("id:"):
            parts = [self.name, self.key_text]
            if self.valid_after:
                parts.append("valid-after=" + stamp_seconds(self.valid_after))
            if self.valid_before:
                parts.append("valid-before=" + stamp_seconds(self.valid_before))
            return " ".join(parts)
        opts = [f'namespaces="{",".join(self.namespaces or ("catalytic", "git"))}"']
        if self.valid_after:
            opts.append(f'valid-after="{self.valid_after.strftime("%Y%m%d%H%M%S")}Z"')
        if self.valid_before:
            opts.append(f'valid-before="{self.valid_before.strftime("%Y%m%d%H%M%S")}Z"')
        return f"{self.name} {','.join(opts)} {ssh_key_text(self.key_text)}"


def ssh_fingerprint(key_text: str) -> str | None:
    """OpenSSH's fingerprint of a key (`SHA256:<base64, unpadded>`, what `ssh-keygen -l` and
    git's `%GF` print), None for a key given only by its validator id."""
    text = ssh_key_text(key_text)
    if not text.startswith("ssh-ed25519 "):
        return None
    blob = base64.b64decode(text.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def ssh_key_text(key_text: str) -> str:
    """`ssh-ed25519 <base64>` for a key in either spelling."""
    if key_text.startswith("ed25519:"):
        from catalytic_hooks.bundle.sshsig import public_line

        return public_line(key_text[8:])
    return key_text


# OpenSSH's spellings of a validity bound (allowed_signers): with a trailing Z in UTC, without
# one in the local time zone, as ssh-keygen reads them; this project's own (with dashes) in UTC.
_UTC_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d", "%Y%m%d%H%M%SZ", "%Y%m%d%H%MZ", "%Y%m%dZ")
_LOCAL_FORMATS = ("%Y%m%d", "%Y%m%d%H%M%S", "%Y%m%d%H%M")


def parse_date(text: str) -> datetime:
    for fmt in _UTC_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    for fmt in _LOCAL_FORMATS:
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).astimezone().astimezone(UTC)
    raise CatalyticError(ErrorCode.CONFIG_INVALID, f"bad date {text!r} (use YYYY-MM-DD)")


def validator_id_of_key(key_text: str) -> str:
    """Validator id (sha256 of the raw 32-byte public key) of a key in any accepted spelling."""
    if key_text.startswith("id:"):
        vid = key_text[3:]
        if not HEX64.match(vid):
            raise CatalyticError(ErrorCode.CONFIG_INVALID, f"bad validator id {vid!r}")
        return vid
    if key_text.startswith("ed25519:"):
        hexkey = key_text[8:]
        if not HEX64.match(hexkey):
            raise CatalyticError(ErrorCode.CONFIG_INVALID, "ed25519: key must be 64 lowercase hex")
        return hashlib.sha256(bytes.fromhex(hexkey)).hexdigest()
    if key_text.startswith("ssh-ed25519 "):
        try:
            blob = base64.b64decode(key_text.split()[1], validate=True)
        except (ValueError, IndexError) as exc:
            raise CatalyticError(ErrorCode.CONFIG_INVALID, "bad ssh-ed25519 key") from exc
        # SSH wire format: string "ssh-ed25519", string <32-byte key>
        if len(blob) != 51 or blob[:15] != b"\x00\x00\x00\x0bssh-ed25519":
            raise CatalyticError(ErrorCode.CONFIG_INVALID, "bad ssh-ed25519 key")
        return hashlib.sha256(blob[19:]).hexdigest()
    raise CatalyticError(ErrorCode.CONFIG_INVALID, f"unknown key spelling {key_text[:20]!r}")


def key_text_of(arg: str) -> str:
    """A key as given on the command line: a public key file (OpenSSH `.pub` or one-token
    spelling) or the key text itself."""
    p = Path(arg)
    if not p.is_file():
        return arg
    try:
        parts = p.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalyticError(ErrorCode.USAGE, f"cannot read key file {arg}: {exc}") from exc
    if not parts:
        raise CatalyticError(ErrorCode.USAGE, f"key file {arg} is empty")
    return " ".join(parts[:2]) if parts[0] == "ssh-ed25519" else parts[0]


def _options(token: str, where: str) -> dict[str, str]:
    """OpenSSH's option list: `name="value"` or `name=value`, comma-separated."""
    out: dict[str, str] = {}
    key, value, quoted, in_value = "", "", False, False
    for ch in token + ",":
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            if key:
                if key.lower() in out:  # OpenSSH refuses the line; the last would win here
                    raise CatalyticError(
                        ErrorCode.CONFIG_INVALID, f"{where}: option {key!r} given twice"
                    )
                out[key.lower()] = value
            key, value, in_value = "", "", False
        elif ch == "=" and not in_value and not quoted:
            in_value = True
        elif in_value:
            value += ch
        else:
            key += ch
    if quoted:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: unbalanced quote")
    return out


def _parse_line(line: str, where: str) -> Validator:
    tokens = [t for t in re.split(r"[ \t]+", line) if t]  # OpenSSH's separators, no other
    if len(tokens) < 2:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: need <name> <key>")
    name, rest = tokens[0], tokens[1:]
    leading = not rest[0].startswith(_KEY_START)
    opts = _options(rest.pop(0), where) if leading else {}
    if not rest:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: no key")
    if rest[0] == "ssh-ed25519" and len(rest) >= 2:
        key_text, rest = f"ssh-ed25519 {rest[1]}", rest[2:]
    else:
        key_text, rest = rest[0], rest[1:]
    # The earlier format's options after the key, on a line without OpenSSH's leading options;
    # on one with them, what follows the key is a comment, as OpenSSH reads it (never a second
    # validity bound that would override the first).
    for opt in rest if not leading else ():
        k, eq, v = opt.partition("=")
        if eq and k in ("valid-after", "valid-before"):
            if k in opts:
                raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: option {k!r} given twice")
            opts[k] = v
        elif eq:
            raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: unknown option {opt!r}")
    unknown = set(opts) - {"valid-after", "valid-before", "namespaces", "cert-authority"}
    if unknown or "cert-authority" in opts:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"{where}: unsupported option {sorted(unknown or {'cert-authority'})[0]!r}",
        )
    try:
        vid = validator_id_of_key(key_text)
    except CatalyticError as exc:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{where}: {exc.message}") from exc
    ns = tuple(n.strip() for n in opts["namespaces"].split(",")) if "namespaces" in opts else None
    return Validator(
        name,
        vid,
        key_text,
        parse_date(opts["valid-after"]) if "valid-after" in opts else None,
        parse_date(opts["valid-before"]) if "valid-before" in opts else None,
        ns,
    )


def _lines(text: str) -> list[str]:
    """The file's lines as OpenSSH reads them: split at `\n` only (a trailing `\r` dropped).
    `str.splitlines` also splits at `\x1c`, `\x85`, `\u2028` and more: a key after one of
    them, inside what OpenSSH and a reviewer see as one comment line, would be trusted."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def parse(text: str, source: str = "trusted validators") -> list[Validator]:
    out = []
    for n, raw in enumerate(_lines(text), 1):
        line = raw.strip(" \t")
        if line and not line.startswith("#"):
            out.append(_parse_line(line, f"{source}:{n}"))
    return out


def migrate(text: str, source: str) -> str:
    """The same validators in OpenSSH's allowed_signers syntax (comments kept)."""
    out = []
    for n, raw in enumerate(_lines(text.rstrip("\n")), 1):
        if not raw.strip(" \t") or raw.lstrip(" \t").startswith("#"):
            out.append(raw)
            continue
        v = _parse_line(raw.strip(" \t"), f"{source}:{n}")
        if v.key_text.startswith("id:"):
            raise CatalyticError(
                ErrorCode.USAGE,
                f"{source}:{n}: {v.name!r} is trusted by "
                "validator id only; OpenSSH needs its public key: replace it "
                "with `catalytic trust add NAME KEY.pub`",
            )
        out.append(v.line())
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class TrustSet:
    validators: list[Validator]
    source: str

    def signer(
        self, validator_id: str, namespace: str = "catalytic"
    ) -> tuple[Validator | None, str]:
        """The line that makes this key a signer for `namespace` now (None: no line does), and
        why. Only lines holding this very key count: another key under the same name (a
        rotation) vouches for nothing this key signed. The clock is the verifier's, so no caller
        can pass a time the signer chose."""
        when = now()
        known = [
            v for v in self.validators if v.validator_id == validator_id and v.allows(namespace)
        ]
        if not known:
            return None, f"validator {validator_id[:16]}… is not in {self.source}"
        for v in known:
            if v.valid_at(when):
                return v, f"trusted as {v.name!r} ({self.source})"
        return None, (
            f"validator {known[0].name!r} (key {validator_id[:16]}…) is outside its validity window"
        )

    def lookup(self, validator_id: str) -> tuple[bool, str]:
        """(trusted for bundles now, why)."""
        v, why = self.signer(validator_id)
        return v is not None, why

    def by_fingerprint(self, fingerprint: str) -> str | None:
        """The validator id of the key with this OpenSSH fingerprint, if the anchor holds it."""
        for v in self.validators:
            if ssh_fingerprint(v.key_text) == fingerprint:
                return v.validator_id
        return None


def trust_file(policy: Policy, root: Path) -> Path:
    return root / (policy.trust_path or DEFAULT_FILE)


def load_trust(policy: Policy, root: Path) -> TrustSet:
    """The trust anchor a policy names, read from the working tree at `root`."""
    if policy.trust_path is None:
        return trust_from_bytes(policy, None, "")
    path = trust_file(policy, root)
    # The safe reader: the file comes with the repository (a clone), so it may be a link to
    # /dev/zero or a FIFO; neither is followed or read, and the anchor then trusts nobody.
    try:
        data: bytes | None = read_beneath(root, policy.trust_path or DEFAULT_FILE, MAX_TRUST_FILE)
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"cannot read {path}: {exc}") from exc
    return trust_from_bytes(
        policy, data, str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    )


def trust_from_bytes(policy: Policy, data: bytes | None, label: str) -> TrustSet:
    """The trust anchor of a policy given the trust file's bytes (None: absent), wherever they
    were read (the working tree, or a commit's tree for the hooks)."""
    tv = policy.trusted_validators
    if isinstance(tv, tuple):
        return TrustSet(
            [Validator(f"id{i}", v, f"id:{v}") for i, v in enumerate(tv)],
            "the policy's trusted_validators list",
        )
    name = label.rsplit("/", 1)[-1] or DEFAULT_FILE
    if data is None:
        return TrustSet([], f"{name} (absent)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"cannot read {label}: {exc}") from exc
    return TrustSet(parse(text, label), name)


def read_text(path: Path) -> str | None:
    """The trust file `trust add/remove/migrate` edit (None: absent), through the safe reader:
    it comes with the repository, and a clone may hold a link to /dev/zero or a FIFO there."""
    try:
        return read_named(path, MAX_TRUST_FILE).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"cannot read {path}: {exc}") from exc


def add(path: Path, v: Validator) -> None:
    existing = read_text(path)
    existing = HEADER if existing is None else existing
    current = parse(existing, str(path))
    if any(x.name == v.name or x.validator_id == v.validator_id for x in current):
        raise CatalyticError(
            ErrorCode.USAGE, f"{v.name!r} or its key is already trusted; remove it first"
        )
    if existing and not existing.endswith("\n"):
        existing += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (existing + v.line() + "\n").encode())


def remove(path: Path, name_or_id: str) -> int:
    text = read_text(path)
    if text is None:
        return 0
    lines = text.splitlines(keepends=True)
    kept, removed = [], 0
    for line in lines:
        parsed = parse(line, str(path))
        if parsed and name_or_id in (parsed[0].name, parsed[0].validator_id):
            removed += 1
        else:
            kept.append(line)
    if removed:
        atomic_write(path, "".join(kept).encode())
    return removed


# -- what `trust add|remove|migrate` do to a repository's file ---------------------------------


def editable_trust_file(policy: Policy, root: Path) -> Path:
    """The file `trust add|remove|migrate` edit; an inline list is edited in the configuration."""
    if isinstance(policy.trusted_validators, tuple):
        raise CatalyticError(
            ErrorCode.USAGE,
            "trusted_validators is an inline list in the "
            "configuration; edit it there (or point it at a file)",
        )
    return trust_file(policy, root)


def trust_validator(
    path: Path, name: str, key: str, valid_after: str | None, valid_before: str | None
) -> Validator:
    """Add a validator to the file at `path` (`key` as `trust add` takes it)."""
    text = key_text_of(key)
    if any(c.isspace() for c in name) or not name:
        raise CatalyticError(ErrorCode.USAGE, "the name must be one word")
    v = Validator(
        name,
        validator_id_of_key(text),
        text,
        parse_date(valid_after) if valid_after else None,
        parse_date(valid_before) if valid_before else None,
    )
    add(path, v)
    return v


def untrust(path: Path, name_or_id: str) -> int:
    """Remove every line naming `name_or_id`; refused when none does."""
    n = remove(path, name_or_id)
    if n == 0:
        raise CatalyticError(ErrorCode.USAGE, f"{name_or_id!r} is not in {path}")
    return n


def migrate_file(path: Path) -> bool:
    """Rewrite the file at `path` in allowed_signers syntax; whether anything changed."""
    text = read_text(path)
    if text is None:
        raise CatalyticError(ErrorCode.USAGE, f"{path} does not exist")
    new = migrate(text, str(path))
    if new != text:
        atomic_write(path, new.encode())
    return new != text


# -- the one place where "do we act on this signer?" is decided -------------------------------


@dataclass(frozen=True)
class TrustDecision:
    accepted: bool  # act on the bundle (restore, replay, push, exit 0 for verify)
    trusted: bool  # the signer is in the trust anchor and inside its validity window
    reason: str


class TrustPolicy:
    """Accept exactly the signers of a trust anchor (the caller's trusted-validators file)."""

    def __init__(self, anchor: TrustSet):
        self.anchor = anchor

    def decide(self, validator_id: str) -> TrustDecision:
        ok, why = self.anchor.lookup(validator_id)
        return TrustDecision(ok, ok, why)


class UnsafeAnySignerPolicy(TrustPolicy):
    """`--allow-untrusted`: accept any valid signature, still reporting whether the signer is in
    the anchor. Named loudly: a bundle signed by anyone at all passes."""

    def decide(self, validator_id: str) -> TrustDecision:
        ok, why = self.anchor.lookup(validator_id)
        return TrustDecision(True, ok, why if ok else f"{why}; accepted anyway (--allow-untrusted)")


def trust_policy(anchor: TrustSet, *, allow_untrusted: bool) -> TrustPolicy:
    return UnsafeAnySignerPolicy(anchor) if allow_untrusted else TrustPolicy(anchor)


def anchor_at(root: Path) -> TrustSet:
    """The trust anchor of the repository or directory at `root`; an unreadable policy trusts
    nobody (fail closed)."""
    from catalytic_hooks.core.policy import load_policy

    try:
        return load_trust(load_policy(root), root)
    except CatalyticError:
        return TrustSet([], "no readable policy")


def load_trust_file(path: Path) -> TrustSet:
    """An explicit trusted-validators file (`--trust-file`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"cannot read trust file {path}: {exc}"
        ) from exc
    return TrustSet(parse(text, str(path)), str(path))


def caller_anchor(trust_file: Path | None = None) -> TrustSet:
    """The trust anchor of whoever runs the command: an explicit `--trust-file`, else the
    repository the command runs in. Never the repository or directory that holds the bundle: a
    bundle downloaded with its own trusted-validators file must not vouch for itself."""
    if trust_file is not None:
        return load_trust_file(trust_file)
    from catalytic_hooks.git.repo import Repo

    repo = Repo.find(None)
    if repo is None:
        return TrustSet([], "no repository here and no --trust-file")
    return anchor_at(repo.top)
