"""`oci://HOST[:PORT]/NAME[:TAG][@sha256:HEX]`: what a registry reference may say.

The grammar is the distribution specification's (repository name components, tag), restricted to
SHA-256 digests (the only algorithm this tool writes or checks). A reference is parsed once, here,
and every request is built from the parsed parts, never from the text.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

SCHEME = "oci://"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_HOST = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
    r"(?::[0-9]{1,5})?\Z"
)
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    host: str  # as written, with its port: the key of the credentials in a Docker config
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def hostname(self) -> str:
        h = self.host
        if h.startswith("["):
            return h[1 : h.index("]")]
        return h.rsplit(":", 1)[0] if ":" in h else h

    @property
    def port(self) -> int | None:
        h = self.host[self.host.index("]") + 1 :] if self.host.startswith("[") else self.host
        return int(h.rsplit(":", 1)[1]) if ":" in h else None

    @property
    def is_repository(self) -> bool:
        """A reference to the repository itself (every tag), as `validate` samples."""
        return self.tag is None and self.digest is None

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.host, self.name, None, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.host, self.name, tag, None)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.host}/{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_reference(text: str) -> bool:
    return text[: len(SCHEME)].lower() == SCHEME


def spelled(arg: object) -> str | None:
    """The `oci://` reference an argument spells, or None. A scheme is case-insensitive
    (RFC 3986: `OCI://` too, which must not be taken for a file path and echoed with a
    password in it), and a Path argument has folded the scheme's `//` into one `/`; no file
    path a consumer takes starts with `oci:/`."""
    text = str(arg)
    if text[:5].lower() != "oci:/":
        return None
    return SCHEME + text[6:] if text[5:6] == "/" else SCHEME + text[5:]


def is_loopback(hostname: str) -> bool:
    """Plain HTTP is used only for these without --insecure: nothing leaves the machine."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


_SCHEME = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://")
# The digest algorithms OCI registers: a host that a password's `/` made look like a path
# (`oci://USER:PA/SS@HOST:PORT`) is never one of them.
_ALGORITHM = re.compile(r"(?:sha256|sha512|blake3):", re.IGNORECASE)


def _masked(text: str) -> str:
    """`text` with any user info typed into it (`oci://USER:PASSWORD@HOST:PORT/...`) replaced:
    everything after the scheme up to the last `@` that does not start a digest. A digest's
    `@` follows the repository's `/` and is followed by a registered algorithm's `NAME:` and no
    `/`; a password's own `/` or `@` cannot make the mask shorter."""
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    rest = text[start:]
    at = rest.rfind("@")
    while at >= 0:
        after = rest[at + 1 :]
        if not ("/" in rest[:at] and "/" not in after and _ALGORITHM.match(after)):
            return f"{text[:start]}***{rest[at:]}"
        at = rest.rfind("@", 0, at)
    return text


def _bad(text: str, why: str) -> CatalyticError:
    """A refusal that quotes the reference with any user info in it replaced: a password typed
    there must not reach a terminal, a CI log or a report through the message."""
    shown = _masked(text)
    return CatalyticError(
        ErrorCode.USAGE,
        f"{shown!r} is not a registry reference: {why} "
        "(expected oci://HOST[:PORT]/NAME[:TAG][@sha256:HEX])",
        reference=shown,
    )


def _resolvable(host: str) -> bool:
    """What the socket layer takes: an IPv6 literal, or a name whose labels IDNA accepts (none
    empty, none over 63 characters; the regex alone lets `a..b` through)."""
    try:
        if host.startswith("["):
            ipaddress.IPv6Address(host[1:-1])
        else:
            host.encode("idna")
    except ValueError:  # UnicodeError is one
        return False
    return True


def parse(text: str) -> Reference:
    if not is_reference(text):
        raise _bad(text, f"it does not start with {SCHEME}")
    if _masked(text) != text:
        raise _bad(
            text,
            "it has user info (credentials) in it; log in instead (the Docker config, or "
            "--registry-config)",
        )
    rest = text[len(SCHEME) :]
    text = SCHEME + rest
    host, sep, path = rest.partition("/")
    if not sep or not _HOST.match(host):
        raise _bad(text, "no valid HOST[:PORT] before the first /")
    if "@" in host or (host.rsplit(":", 1)[-1] == "" if ":" in host else False):
        raise _bad(text, "credentials or an empty port in the host")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
    if port is not None and not 0 < int(port) < 65536:
        raise _bad(text, f"port {port} is out of range")
    if not _resolvable(host.rsplit(":", 1)[0] if port is not None else host):
        raise _bad(text, "the host is not an IPv6 address in brackets or a DNS name")
    digest = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not DIGEST.match(digest):
            raise _bad(text, "the digest is not sha256:<64 lowercase hex>")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not TAG.match(tag):
            raise _bad(text, f"the tag {tag!r} is not a valid tag")
    if not _NAME.match(path) or len(path) > MAX_NAME:
        raise _bad(text, f"the repository name {path!r} is not lowercase components separated by /")
    return Reference(host, path, tag, digest)


def fallback_tag(digest: str) -> str:
    """The distribution specification's referrers tag schema: `<alg>-<hex>`."""
    alg, _, hexpart = digest.partition(":")
    return f"{alg}-{hexpart}"
