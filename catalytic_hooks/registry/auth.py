"""Registry credentials: the Docker/OCI `config.json` the user already has, and the two
challenge schemes registries use (README, "Dependencies", says why this is not `oras`).

Where credentials come from, in Docker's own order: `--registry-config FILE`, else
`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; within it `credHelpers[host]` (a
`docker-credential-<name> get` program), else `auths[host].auth` (base64 `user:password`), else
`credsStore`. Only the one file is read: an explicit config isolates from the user's default.

A credential is a secret: it is held in a `Credential` whose repr hides it, it is sent only in an
`Authorization` header (never in a URL), Basic credentials go over plain HTTP only to a loopback
host or with `--insecure`, and no message, log line, report or chronicle record is built from it
or from a helper's output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode

MAX_CONFIG = 1024 * 1024
MAX_TOKEN_RESPONSE = 1024 * 1024
HELPER_TIMEOUT = 30
HELPER_OUTPUT = 1024 * 1024  # a credential is a few KiB; past this, the answer is not one
_HELPER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)="([^"]*)"')
_B64TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*\Z")  # RFC 6750 §2.1, the only token sent


IDENTITY_USER = "<token>"  # Docker's username for an identity token (credential helpers too)
CLIENT_ID = "catalytic"


@dataclass(frozen=True)
class Credential:
    """A user name and password, or (`identity`) an identity token: an OAuth 2 refresh token
    that `docker login` stores as `identitytoken`, exchanged at the token service by POST and
    never sent to the registry itself or as Basic credentials."""

    username: str
    secret: str = field(repr=False)
    identity: bool = False

    def basic(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def auth_error(message: str, *, reason: str, **details: object) -> CatalyticError:
    """REGISTRY_AUTH with its `details.reason` (docs/CODES.md lists them)."""
    return CatalyticError(ErrorCode.REGISTRY_AUTH, message, reason=reason, **details)


def config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    base = os.environ.get("DOCKER_CONFIG")
    path = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None


def _read_config(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG + 1)
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"cannot read the registry config {path}: {exc.strerror}",
            path=str(path),
        ) from exc
    if len(raw) > MAX_CONFIG:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"the registry config {path} is larger than {MAX_CONFIG} bytes",
            path=str(path),
        )
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser
        # Never quote the parser's message: it can show a piece of the file, a secret.
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"the registry config {path} is not valid JSON",
            path=str(path),
        ) from exc
    if not isinstance(doc, dict):
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"the registry config {path} is not a JSON object",
            path=str(path),
        )
    return doc


def _keys(host: str) -> list[str]:
    """The spellings a config.json may file a registry under."""
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v2/"]
    for a, b in (("localhost", "127.0.0.1"), ("127.0.0.1", "localhost")):
        if host == a or host.startswith(a + ":"):
            keys.append(b + host[len(a) :])
    return keys


def _text(*values: str) -> bool:
    """Whether every value is text a request can carry: JSON admits a lone surrogate (`\\ud800`),
    which no encoding takes, and the error raised on sending it would quote the secret."""
    try:
        for v in values:
            v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _config_credential(user: str, secret: str, host: str, identity: bool = False) -> Credential:
    if not _text(user, secret):
        raise auth_error(
            f"the registry config's credential for {host} is not text (a lone surrogate)",
            reason="CONFIG",
        )
    return Credential(user, secret, identity=identity)


def _from_auth_field(entry: object, host: str) -> Credential | None:
    if not isinstance(entry, dict):
        return None
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        return _config_credential(IDENTITY_USER, identity, host, identity=True)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, sep, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error, a non-ASCII string
            raise auth_error(
                f"the registry config's `auth` entry for {host} is not base64 of user:password",
                reason="CONFIG",
            ) from exc
        if not sep:
            raise auth_error(
                f"the registry config's `auth` entry for {host} is not user:password",
                reason="CONFIG",
            )
        return Credential(user, secret)
    name, password = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(password, str) and name:
        return _config_credential(name, password, host)
    return None


def _helper_program(program: str) -> str | None:
    """The helper's absolute path, found through the absolute entries of PATH only: an empty,
    `.` or relative entry would find a `docker-credential-*` in (or under) the current
    directory, which the repository being worked on may have planted (Go's `exec.LookPath`,
    which docker uses, refuses these too)."""
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not os.path.isabs(entry):
            continue
        candidate = os.path.join(entry, program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run_helper(path: str, data: bytes) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr) of the helper given `data` on stdin, each output read to
    at most HELPER_OUTPUT bytes within HELPER_TIMEOUT seconds, and no longer than a moment
    after the helper itself exits (a child it left behind may hold its output open)."""
    import selectors  # poll or epoll: select() refuses descriptors past 1023
    import subprocess  # here: only a configured helper needs it, not every pull's start
    import time

    proc = subprocess.Popen(
        [path, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # a helper that does not read its stdin: its answer still counts
        got = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        deadline = time.monotonic() + HELPER_TIMEOUT
        ended: float | None = None
        with selectors.DefaultSelector() as sel:
            for fd in got:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                now = time.monotonic()
                if now > deadline or (ended is not None and now > ended + 0.2):
                    break
                for key, _ in sel.select(0.05):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    got[key.fd] += chunk
                    if len(got[key.fd]) > HELPER_OUTPUT:
                        raise OverflowError
                if ended is None and proc.poll() is not None:
                    ended = time.monotonic()
        status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        return status, bytes(got[proc.stdout.fileno()]), bytes(got[proc.stderr.fileno()])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def helper_credential(helper: str, host: str) -> Credential | None:
    """`docker-credential-<helper> get` (the credential-helper protocol): the server on stdin,
    `{"Username", "Secret"}` on stdout; None when it has nothing for this server."""
    if not _HELPER_NAME.match(helper):
        raise auth_error(f"credential helper name {helper!r} is not a plain name", reason="HELPER")
    import subprocess

    program = f"docker-credential-{helper}"
    path = _helper_program(program)
    if path is None:
        raise auth_error(
            f"credential helper {program} is not in any absolute directory on PATH",
            reason="HELPER",
            helper=program,
        )
    try:
        status, out, err = _run_helper(path, host.encode())
    except OverflowError as exc:
        raise auth_error(
            f"credential helper {program} answered more than {HELPER_OUTPUT} bytes",
            reason="HELPER",
            helper=program,
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise auth_error(
            f"credential helper {program} could not run", reason="HELPER", helper=program
        ) from exc
    if status != 0:
        if b"credentials not found" in out.lower() + err.lower():
            return None
        # Its output is not quoted: a helper's message may carry what it was asked to hide.
        raise auth_error(
            f"credential helper {program} failed (exit {status})", reason="HELPER", helper=program
        )
    try:
        doc = json.loads(out)
        user, secret = doc["Username"], doc["Secret"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise auth_error(
            f"credential helper {program} did not answer with Username and Secret",
            reason="HELPER",
            helper=program,
        ) from exc
    if not isinstance(user, str) or not isinstance(secret, str) or not _text(user, secret):
        raise auth_error(
            f"credential helper {program} answered with something that is not text",
            reason="HELPER",
            helper=program,
        )
    return Credential(user, secret, identity=user == IDENTITY_USER)


def find_credential(host: str, config: Path | None) -> Credential | None:
    path = config_file(config)
    if path is None:
        return None
    doc = _read_config(path)
    helpers, auths, store = doc.get("credHelpers"), doc.get("auths"), doc.get("credsStore")
    for key in _keys(host):
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return helper_credential(helpers[key], key)
    for key in _keys(host):
        if isinstance(auths, dict) and key in auths:
            found = _from_auth_field(auths[key], host)
            if found is not None:
                return found
    if isinstance(store, str) and store:
        return helper_credential(store, host)
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercased
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def realm_allowed(realm: str, insecure: bool) -> bool:
    """Credentials go to a token service over HTTPS, or plain HTTP on loopback/--insecure."""
    from catalytic_hooks.registry.reference import is_loopback

    try:
        url = urllib.parse.urlsplit(realm)
    except ValueError:  # an unclosed IPv6 bracket: no URL at all
        return False
    if url.scheme == "https":
        return bool(url.hostname)
    return url.scheme == "http" and (insecure or is_loopback(url.hostname or ""))


def token_request(
    challenge: Challenge, credential: Credential | None
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, URL, headers, body) of the token request the distribution's token auth
    specifies: a GET with Basic credentials (or none), or, for an identity token, the OAuth 2
    refresh-token grant, a POST whose form carries the token (never the URL)."""
    realm = challenge.params.get("realm", "")
    service, scope = challenge.params.get("service"), challenge.params.get("scope")
    headers = {"Accept": "application/json"}
    if credential is not None and credential.identity:
        form = {"grant_type": "refresh_token", "client_id": CLIENT_ID}
        if service:
            form["service"] = service
        if scope:
            form["scope"] = scope
        form["refresh_token"] = credential.secret
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return "POST", realm, headers, urllib.parse.urlencode(form).encode()
    query = [(k, v) for k, v in (("service", service), ("scope", scope)) if v]
    url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query) if query else realm
    if credential is not None:
        headers["Authorization"] = credential.basic()
    return "GET", url, headers, None


def token_from(body: bytes) -> str:
    """The bearer token of a token service's answer. It goes into an Authorization header, so
    it must be RFC 6750's b64token (http.client would refuse, or send, anything else: a
    header broken by a CR LF, a character latin-1 cannot encode)."""
    try:
        doc = loads_strict(body, what="the token service's answer")
    except CatalyticError as exc:
        raise auth_error(
            "the registry's token service answered with something other than a token",
            reason="TOKEN",
        ) from exc
    token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
    if not isinstance(token, str) or not _B64TOKEN.match(token):
        raise auth_error("the registry's token service gave no usable token", reason="TOKEN")
    return token
