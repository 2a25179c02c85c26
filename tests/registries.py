"""Registries for the tests: Debian's `docker-registry` (distribution 2.8) started on a loopback
port with a temporary storage directory, and a minimal OCI 1.1 registry served here (the
referrers API, which no registry installable on this machine implements, and faults on demand).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DISTRIBUTION = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A Docker registry token service on 127.0.0.1 (the distribution "token" auth
    specification), for the real `docker-registry` configured with `auth: token`: RS256 JWTs
    whose `x5c` is a self-signed certificate that registry trusts (its `rootcertbundle`).

    `GET /token?service=&scope=` with Basic credentials of `users`, or `POST /token` with the
    OAuth 2 form `grant_type=refresh_token` and a refresh token of `identity_tokens` (what
    `docker login` stores as `identitytoken`); anonymous requests are refused. Every request is
    kept in `seen` (method, path with query, Authorization, form) and every token issued in
    `issued`, so a test can assert where each secret went and that none was shown."""

    service = "catalytic-test-registry"
    issuer = "catalytic-test-token-issuer"

    def __init__(self, users: dict[str, str], identity_tokens: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users, self.identity_tokens = users, identity_tokens
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "catalytic test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.seen: list[dict[str, str]] = []
        self.issued: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                authz = self.headers.get("Authorization", "")
                outer.seen.append({"method": "GET", "path": self.path, "authorization": authz})
                user = None
                if authz.startswith("Basic "):
                    name, _, pw = base64.b64decode(authz[6:]).decode().partition(":")
                    user = name if outer.users.get(name) == pw else None
                if user is None:
                    return self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                token = outer.token(user, query.get("service", ""), query.get("scope", ""))
                return self._answer(200, {"token": token, "expires_in": 300})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                outer.seen.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "authorization": self.headers.get("Authorization", ""),
                        "form": json.dumps(form, sort_keys=True),
                    }
                )
                user = outer.identity_tokens.get(form.get("refresh_token", ""))
                if form.get("grant_type") != "refresh_token" or user is None:
                    return self._answer(400, {"error": "invalid_grant"})
                token = outer.token(user, form.get("service", ""), form.get("scope", ""))
                return self._answer(200, {"access_token": token, "expires_in": 300})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, user: str, service: str, scope: str) -> str:
        """A JWT granting `user` every action the scope asks for."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for item in scope.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = signing_input + "." + _b64url(sig)
        self.issued.append(token)
        return token

    def start(self) -> TokenServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_files(root: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem) under `root`: a certificate authority made for one test and
    a server certificate it signed for the DNS `names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "catalytic test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Distribution:
    """`docker-registry serve` on 127.0.0.1:<free port>, storage under `root`; with `users`,
    htpasswd basic authentication (bcrypt hashes made by `htpasswd -B`); with `tls` (a
    certificate and its key, see tls_files), HTTPS only."""

    def __init__(
        self,
        root: Path,
        users: dict[str, str] | None = None,
        token: TokenServer | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = root
        self.tls = tls
        self.storage = root / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = root / "registry.log"
        auth = ""
        if token is not None:
            (root / "token-root.pem").write_bytes(token.cert_pem)
            auth = (
                f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
                f"    issuer: {token.issuer}\n    rootcertbundle: {root / 'token-root.pem'}\n"
            )
        elif users:
            lines = [
                subprocess.run(
                    ["htpasswd", "-Bbn", u, p], capture_output=True, text=True, check=True
                ).stdout.strip()
                for u, p in users.items()
            ]
            (root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
            + auth
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [DISTRIBUTION, "serve", str(self.root / "config.yml")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        scheme, probe = "http", None
        if self.tls is not None:  # only "is it up": the tests check the certificate themselves
            scheme, probe = "https", ssl.create_default_context()
            probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(
                    f"{scheme}://{self.host}/v2/", timeout=1, context=probe
                ).close()
                return self
            except urllib.error.HTTPError:
                return self  # 401: up, and wants credentials
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def requests(self, method: str, fragment: str) -> int:
        """How many requests of `method` whose path contains `fragment` the registry's own
        access log records."""
        n = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{method} ' in line and fragment in line and 'HTTP/1.1"' in line:
                n += 1
        return n

    def uploads_sent(self, method: str, name: str) -> list[str]:
        """The upload session (its UUID) of each `method` request to repository `name`'s
        uploads, in the order of the registry's own access log."""
        pattern = re.compile(rf'"{method} /v2/{re.escape(name)}/blobs/uploads/([0-9a-f-]{{36}})')
        return pattern.findall(self.log.read_text(errors="replace"))

    def blob_data(self, digest: str) -> Path:
        hexd = digest.split(":")[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


class _State:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}
        self.tags: dict[str, str] = {}
        self.referrers: dict[str, list[dict[str, Any]]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.patches: list[int] = []  # the size of each chunk a PATCH brought
        self.posts = 0  # uploads begun
        self.referrers_api = True
        self.faults: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.stalled = threading.Event()  # a "stall" fault sent half a blob and waits
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the
    # client's delayed ACK, 40 ms an answer (a thousand pages of tags took 44 s).
    disable_nagle_algorithm = True
    state: _State

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        self._send(
            status,
            json.dumps({"errors": [{"code": code, "message": code}]}).encode(),
            {"Content-Type": "application/json"},
        )

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _planted(self) -> bool:
        """`faults["answers"][path]` (the path without its query): `(status, headers, body)`,
        or a function of the whole path (query included) giving them, answered to any method
        as a hostile registry would: a header the test names is sent as it is, a
        `Content-Length` of its own included (the connection is then closed, as its framing
        cannot be trusted)."""
        answer = self.state.faults.get("answers", {}).get(self.path.split("?")[0])
        if answer is None:
            return False
        status, headers, body = answer(self.path) if callable(answer) else answer
        if self.command in ("PUT", "POST", "PATCH"):
            self._body()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" in headers:
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def _half_then_reset(self, data: bytes) -> None:
        """Half of `data` after a header declaring all of it, then a TCP reset (SO_LINGER 0):
        a connection broken mid-transfer, as a storage backend or a proxy breaks one."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Closed here, every file object first (the descriptor closes with the last of them):
        # left to socketserver, which shuts the write side down before it closes, a FIN went
        # out ahead of the reset and the client sometimes read a clean end (a truncated body).
        self.wfile.close()
        self.rfile.close()
        self.connection.close()
        self.close_connection = True

    def _parts(self) -> tuple[str, str, str]:
        path = self.path.split("?")[0]
        for kind in ("/blobs/uploads/", "/blobs/", "/manifests/", "/referrers/", "/tags/"):
            if kind in path:
                name, _, rest = path[len("/v2/") :].partition(kind)
                return name, kind.strip("/"), rest
        return "", "", ""

    def do_GET(self) -> None:
        s = self.state
        if self._planted():
            return None
        if self.path.rstrip("/") == "/v2":
            return self._send(200, b"{}")
        name, kind, rest = self._parts()
        if kind == "blobs":
            data = s.blobs.get(rest)
            if data is None:
                return self._error(404, "BLOB_UNKNOWN")
            if rest in s.faults.get("flip", set()):
                data = bytes([data[0] ^ 1]) + data[1:]
            if rest in s.faults.get("stall", set()):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                s.stalled.set()
                s.release.wait(60)
                self.close_connection = True
                return None
            if rest in s.faults.get("hold", set()):  # nothing sent until released, then all
                s.stalled.set()
                s.release.wait(60)
            if rest in s.faults.get("reset", set()):
                return self._half_then_reset(data)
            if rest in s.faults.get("truncate", set()):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return None
            return self._send(
                200,
                data,
                {"Content-Type": "application/octet-stream", "Docker-Content-Digest": rest},
            )
        if kind == "manifests":
            if rest in s.faults.get("manifest", {}):
                body, media = s.faults["manifest"][rest]
                return self._send(200, body, {"Content-Type": media})
            digest = s.tags.get(rest, rest)
            if digest not in s.manifests:
                return self._error(404, "MANIFEST_UNKNOWN")
            body, media = s.manifests[digest]
            return self._send(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})
        if kind == "referrers" and s.referrers_api:
            idx = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": s.referrers.get(rest, []),
            }
            return self._send(
                200,
                json.dumps(idx).encode(),
                {"Content-Type": "application/vnd.oci.image.index.v1+json"},
            )
        if kind == "blobs/uploads" and rest in s.uploads:  # the upload's status
            held = len(s.uploads[rest])
            where = {"Location": self.path.split("?")[0], "Range": f"0-{max(held - 1, 0)}"}
            return self._send(204, b"", where)
        if kind == "tags":
            tags = sorted(s.tags)
            return self._send(200, json.dumps({"name": name, "tags": tags}).encode())
        return self._send(404, b"404 page not found")

    def do_HEAD(self) -> None:
        if self._planted():
            return None
        s = self.state
        _name, kind, rest = self._parts()
        if kind == "blobs":
            if rest in s.blobs:
                return self._send(200, b"", length=len(s.blobs[rest]))
            return self._send(404)
        if kind == "manifests":
            digest = s.tags.get(rest, rest)
            if s.faults.get("head") == "405":  # a registry without HEAD on manifests
                return self._send(405)
            if digest in s.manifests:
                # `faults["head"] == "bare"`: without the digest header, which the spec allows
                named = {} if s.faults.get("head") == "bare" else {"Docker-Content-Digest": digest}
                return self._send(200, b"", named, length=len(s.manifests[digest][0]))
        return self._send(404)

    def do_POST(self) -> None:
        if self._planted():
            return None
        name, _kind, _ = self._parts()
        self._body()
        uid = uuid.uuid4().hex
        self.state.uploads[uid] = bytearray()
        self.state.posts += 1
        self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{uid}"})

    def _too_large(self) -> bool:
        """`faults["max_body"]`: a proxy's cap on request bodies (413 after discarding the
        body, as nginx answers `client_max_body_size`)."""
        cap = self.state.faults.get("max_body")
        if cap is None or int(self.headers.get("Content-Length") or 0) <= cap:
            return False
        self._body()
        self._error(413, "TOO_LARGE")
        return True

    def do_PATCH(self) -> None:
        """No chunked uploads (501, unread, as a server without the method answers), unless
        `faults["patch"]` is "ok" (chunks appended, `patches` records their sizes) or
        "short" (the chunk is kept and a Range one byte short answered)."""
        if self._planted():
            return None
        s = self.state
        mode = s.faults.get("patch")
        if mode not in ("ok", "short"):
            self.close_connection = True
            return self._error(501, "UNSUPPORTED")
        if self._too_large():
            return None
        _name, _kind, rest = self._parts()
        body = self._body()
        upload = s.uploads.setdefault(rest, bytearray())
        upload += body
        s.patches.append(len(body))
        end = len(upload) - 1 if mode == "ok" else max(0, len(upload) - 2)
        return self._send(202, b"", {"Location": self.path.split("?")[0], "Range": f"0-{end}"})

    def do_PUT(self) -> None:
        if self._planted():
            return None
        s = self.state
        _name, kind, rest = self._parts()
        if kind == "blobs/uploads" and self._too_large():
            return None
        body = self._body()
        if kind == "blobs/uploads":
            digest = self.path.split("digest=")[1].replace("%3A", ":")
            data = bytes(s.uploads.pop(rest, bytearray())) + body
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return self._error(400, "DIGEST_INVALID")
            s.blobs[digest] = data
            return self._send(201, b"", {"Docker-Content-Digest": digest})
        if kind == "manifests":
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            media = self.headers.get("Content-Type", "")
            headers = {"Docker-Content-Digest": digest}
            with s.lock:
                s.manifests[digest] = (body, media)
                if not rest.startswith("sha256:"):
                    s.tags[rest] = digest
                doc = json.loads(body)
                subject = doc.get("subject")
                if subject and s.referrers_api:
                    entry = {
                        "mediaType": media,
                        "digest": digest,
                        "size": len(body),
                        "artifactType": doc.get("artifactType"),
                    }
                    if doc.get("annotations"):
                        entry["annotations"] = doc["annotations"]
                    s.referrers.setdefault(subject["digest"], []).append(entry)
                    headers["OCI-Subject"] = subject["digest"]
            return self._send(201, b"", headers)
        return self._send(404)


class MiniRegistry:
    """An in-memory OCI 1.1 registry on 127.0.0.1, or `address` (tests only): blobs,
    manifests, tags, the referrers API; `state.faults` serves flipped, truncated or reset
    blobs, planted manifests and planted answers (any status, headers and body: a hostile
    registry)."""

    def __init__(self, referrers_api: bool = True, address: str = "127.0.0.1") -> None:
        self.state = _State()
        self.state.referrers_api = referrers_api
        handler = type("H", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer((address, 0), handler)
        # A client that hangs up mid-answer (the faults) is expected, not worth a traceback.
        self.server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.server.daemon_threads = True
        self.host = f"{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> MiniRegistry:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LossyRelay:
    """A TCP relay on 127.0.0.1 in front of a registry (`upstream`, host:port) that breaks
    kept-alive connections. A request whose request line starts with `method` (b"PATCH ",
    b"PUT ") and holds `holding` (a digest, say), sent on a connection that has carried an
    answer already, loses with `lose="answer"` the registry's answer (the request went through
    and was acted on: a proxy that dropped the answer), or with `lose="request"` the request
    itself (the registry never sees it: a server that had closed the idle connection); the
    client's connection is then closed with no answer. The first `skip` such requests go
    through, the next `times` break, the rest go through. Everything else is relayed byte for
    byte; `fired` is set once one broke, `broken` counts them."""

    def __init__(
        self,
        upstream: str,
        method: bytes,
        lose: str,
        holding: bytes = b"",
        skip: int = 0,
        times: int = 1,
    ) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.method, self.lose, self.holding = method, lose, holding
        self.skip = skip  # matching requests let through before the one that breaks
        self.left = times  # how many to break, each on its own connection
        self.fired = threading.Event()
        self.broken = 0
        self._lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> LossyRelay:
        self.thread.start()
        return self

    def stop(self) -> None:
        # Shut down first: a close alone leaves the thread blocked in accept() on a descriptor
        # number the next relay or registry of the tests may be given.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            state = {"answered": False, "drop_answer": False}
            args = (client, upstream, state)
            threading.Thread(target=self._requests, args=args, daemon=True).start()
            threading.Thread(target=self._answers, args=args, daemon=True).start()

    def _take(self) -> bool:
        """Whether this matching request is one to break (after the `skip` let through)."""
        with self._lock:
            if self.skip:
                self.skip -= 1
                return False
            if not self.left:
                return False
            self.left -= 1
            return True

    def _broke(self) -> None:
        with self._lock:
            self.broken += 1
        self.fired.set()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        # An HTTP/1.1 client sends its next request only once the last answer is in, so on a
        # kept-alive connection a request begins at the start of what one recv returns.
        while data := _recv(client):
            matches = (
                state["answered"]
                and data.startswith(self.method)
                and self.holding in data.split(b"\r\n", 1)[0]
            )
            if matches and self._take():
                if self.lose == "request":
                    self._broke()
                    return self._close(client, upstream)
                state["drop_answer"] = True
            try:
                upstream.sendall(data)
            except OSError:
                break
        self._close(client, upstream)

    def _answers(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        while data := _recv(upstream):
            if state["drop_answer"]:  # the registry acted on the request; its answer is lost
                self._broke()
                return self._close(client, upstream)
            # Marked first: the client may read the answer and send its next request before
            # this thread runs again.
            state["answered"] = True
            try:
                client.sendall(data)
            except OSError:
                break
        self._close(client, upstream)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except OSError:
        return b""
