"""An OCI distribution client over http.client: the requests push and pull need, streamed.

Scope: one repository of one registry per `Client`. Each request goes out with the
authorization the registry last asked for (auth.py); a 401 answers a challenge once and retries.
Plain HTTP is used for a loopback host or with `--insecure`, HTTPS (the system's trust store)
otherwise. Every failure is a CatalyticError with a REGISTRY_* code; no message is built from a
header we sent.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import http.client
import io
import ipaddress
import os
import re
import select
import socket
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.fs.files import write_sliced
from catalytic_hooks.registry import auth
from catalytic_hooks.registry.reference import TAG, Reference, is_loopback

BLOCK = 1 << 20
# A blob goes up in one streamed PUT (the fastest upload: distribution 2.8 takes 1 GiB about
# 25% slower in 64 MiB chunks on loopback), unless the caller sets a chunk size (`archive push
# --chunk-size`) or the registry, or a proxy before it, answers 413 (a cap on request bodies):
# then in PATCH chunks of this size.
CHUNK_SIZE = 64 * 1024 * 1024
NO_CHUNKS = (404, 405, 415, 501)  # answers to a first PATCH from registries without chunks
MAX_MANIFEST = 4 * 1024 * 1024  # distribution's own limit on a manifest
MAX_ERROR_BODY = 64 * 1024
# A repository's tag list, in pages (`Link: rel="next"`). Tags are runs, and no repository of
# runs comes near these; a registry that goes past one is refused (TOO_MANY_TAGS), since it
# could otherwise hand out pages for ever. Some registries hold `n` to 100 a page: 100,000
# tags at most is then 1,000 pages; 100,000 tags of the longest a tag may be (128 characters)
# come to 13 MiB of JSON.
TAG_PAGE = 1000
MAX_TAGS = 100_000
MAX_TAG_PAGES = 1000
MAX_TAG_BYTES = 32 * 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_CODE = re.compile(r"^[A-Z_]{1,40}\Z")
# A number in a header, as http.client itself must read it: ASCII digits only (str.isdigit
# also takes "²", which int() refuses) and short (int() refuses a string of 4,300 digits).
_NUMBER = re.compile(r"^[0-9]{1,19}\Z")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{0,100}\Z")
# What a request line can carry: http.client encodes it as ASCII and refuses controls and
# spaces; a URL the registry gives is checked against this before anything is built from it.
_URL_TEXT = re.compile(r"^[\x21-\x7e]{1,8192}\Z")
# What one answer may take from the socket beyond its body's limit (plus a sixteenth of that
# limit, for chunk framing): the status line and headers (http.client allows 100 lines of 64
# KiB), interim 1xx answers before them, chunk-size lines and trailers. http.client reads all
# of those itself with no limit of its own: `100 Continue` or trailer lines sent for ever are
# discarded for ever, and a chunk size of -1 makes it read the socket to its end into memory.
HEADROOM = 8 * 1024 * 1024
_ANSWER_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("answer_limit")
PIPE = 1 << 20  # the pipe a body is spliced through (Linux's default cap for a user's pipe)
# What splice answers for a socket or file it cannot move pages of: read and write instead.
_NO_SPLICE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV)

Body = bytes | Callable[[], tuple[IO[bytes], int]] | None


class _Unanswered(CatalyticError):
    """A request that is not sent twice blindly (an upload's PATCH or PUT) went out on a
    kept-alive connection that broke before any answer came: the registry may have acted on it
    (a proxy lost the answer) or never seen it (the server had closed the idle connection). The
    upload asks the registry which (`Client._chunked`, `Client._commit`); left uncaught, it is
    the REGISTRY_UNREACHABLE any broken connection is."""


@dataclass(frozen=True)
class TagList:
    tags: list[str]  # OCI tags (reference.TAG), in the registry's order
    ignored: int  # strings listed that are not OCI tags: dropped, never shown


@dataclass
class Counters:
    """What a client did, for the "second push uploads nothing" promise and the bench."""

    requests: int = 0
    blob_uploads: int = 0
    blobs_skipped: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    raw: http.client.HTTPResponse
    url: str  # where the body comes from: never shown (see `where`)
    _owner: Client = field(repr=False)
    requested: str = ""  # the URL the request was made for, before any redirect
    what: str = "request"
    limit: int = MAX_MANIFEST  # the body's limit its raw bytes were budgeted for (`_Budget`)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def where(self) -> dict[str, str]:
        """Where the body came from, for an error's details: the URL asked for and, after a
        redirect to another server, that server's origin; never a query, fragment or user
        info. A registry on cloud storage redirects a blob to a presigned URL whose query is
        a bearer capability (S3's X-Amz-Signature), and errors end up in CI logs."""
        asked = _split(self.requested or self.url, "request")
        out = {"url": _origin(asked) + asked.path}
        served = _origin(_split(self.url, "request"))
        if served != _origin(asked):
            out["served_by"] = served
        return out

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """A body read's failures as the codes every caller reports: a short body is a digest
        mismatch (TRUNCATED), a broken connection REGISTRY_UNREACHABLE (INTERRUPTED), framing
        that is not HTTP's REGISTRY_INVALID (MALFORMED), an answer past its budget
        REGISTRY_INVALID (TOO_LARGE), silence past the timeout REGISTRY_UNREACHABLE (TIMEOUT);
        each way the connection is dropped, never reused."""
        try:
            yield
        except _OverBudget as exc:
            self._owner.drop()
            raise _too_long(self.what, self.limit, self.where()) from exc
        except http.client.IncompleteRead as exc:
            self._owner.drop()
            raise CatalyticError(
                ErrorCode.REGISTRY_DIGEST_MISMATCH,
                "the registry's answer ended before its declared length (a truncated body)",
                reason="TRUNCATED",
                **self.where(),
            ) from exc
        except (OSError, http.client.RemoteDisconnected) as exc:
            self._owner.drop()
            if isinstance(exc, TimeoutError):
                raise CatalyticError(
                    ErrorCode.REGISTRY_UNREACHABLE,
                    f"the registry sent nothing for {self._owner.timeout:g} s during a transfer",
                    reason="TIMEOUT",
                    **self.where(),
                ) from exc
            raise CatalyticError(
                ErrorCode.REGISTRY_UNREACHABLE,
                "the connection to the registry broke during a transfer",
                reason="INTERRUPTED",
                **self.where(),
            ) from exc
        except http.client.HTTPException as exc:  # LineTooLong: a chunk-size line past 64 KiB
            self._owner.drop()
            raise CatalyticError(
                ErrorCode.REGISTRY_INVALID,
                "the registry's answer breaks HTTP's framing",
                reason="MALFORMED",
                **self.where(),
            ) from exc

    def readinto(self, buf: memoryview) -> int:
        """Into a buffer the caller reuses: no fresh allocation (and its page faults) per
        block of a GiB-sized body."""
        with self._transfer():
            n = self.raw.readinto(buf)
        self._owner.counters.bytes_down += n
        return n

    def move_into(self, fd: int, size: int, landed: Callable[[int], None]) -> int | None:
        """Move the body into the file `fd` through the kernel (socket → pipe → file by
        splice: no copy through this process) when the rest of this answer is exactly `size`
        bytes on a plain TCP socket, calling `landed(n)` each time the file holds the body's
        first n bytes. The bytes moved (fewer than `size`: the body ended early), after which
        the connection is dropped, since http.client no longer knows where it stands. None,
        with nothing consumed: the answer is chunked, encrypted, of another length, shorter
        than http.client's buffer, or the kernel cannot splice this socket; read it with
        `readinto`. Never more than `size` bytes are taken, so the answer's budget
        (`_Budget`) holds without counting them."""
        raw, sock = self.raw, getattr(self.raw, "socket", None)
        if (
            not hasattr(os, "splice")
            or size <= 0
            or type(sock) is not socket.socket  # an ssl.SSLSocket's bytes are ciphertext
            or raw.chunked
            or raw.length != size
            or raw.fp is None
        ):
            return None
        with self._transfer():
            ahead = len(raw.fp.peek(1))  # what http.client read past the headers
        if ahead >= size:
            return None
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a smaller pipe only costs more calls
                fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE)
            try:
                # The first splice comes before the buffered bytes are taken, so a socket the
                # kernel cannot splice leaves the answer as it was for `readinto`.
                n = self._splice(sock, w, size - ahead)
            except OSError as exc:
                if exc.errno in _NO_SPLICE:
                    return None
                raise
            try:
                return self._moved(raw, sock, (r, w), fd, (ahead, n), size, landed)
            finally:
                self._owner.drop()
        finally:
            os.close(r)
            os.close(w)

    def _moved(
        self,
        raw: http.client.HTTPResponse,
        sock: socket.socket,
        pipe: tuple[int, int],
        fd: int,
        counts: tuple[int, int],
        size: int,
        landed: Callable[[int], None],
    ) -> int:
        """`move_into` once the `n` bytes after the `ahead` in http.client's buffer are in
        the pipe (`counts`): that buffer written first, then pipe after pipe, copied instead
        of spliced from the first the file refuses (a file system without splice)."""
        (r, w), (ahead, n) = pipe, counts
        head = b""
        if ahead:  # exactly the buffered bytes: read1 reads the socket only when none are
            with self._transfer():
                head = raw.read1(ahead)
        write_sliced(fd, head)
        got = len(head)
        self._owner.counters.bytes_down += got
        copy: memoryview | None = None
        while n:
            left = n if copy is not None else n - _splice_out(r, fd, n)
            if left:
                copy = copy if copy is not None else memoryview(bytearray(PIPE))
                _copy_out(r, fd, left, copy)
            got += n
            self._owner.counters.bytes_down += n
            landed(got)
            n = self._splice(sock, w, size - got) if got < size else 0
        return got

    def _splice(self, sock: socket.socket, pipe: int, most: int) -> int:
        """Up to `most` bytes from the socket into the empty pipe, waiting at most the
        socket's timeout in all; 0 at the end of the stream. Failures as `_transfer` maps
        them, except the errors that say the socket cannot be spliced (`_NO_SPLICE`). TCP
        urgent data, which HTTP never sends, is refused: the kernel's splice stops at it and
        moves nothing while poll keeps saying the socket is readable."""
        timeout = sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = select.poll()
        wait.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        while True:
            try:
                return os.splice(sock.fileno(), pipe, min(PIPE, most), flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in _NO_SPLICE:
                    raise
                with self._transfer():
                    raise
            left = None if deadline is None else deadline - time.monotonic()
            events = wait.poll(None if left is None else max(0, int(left * 1000)))
            with self._transfer():
                if any(e & select.POLLPRI for _, e in events):
                    raise http.client.HTTPException("TCP urgent data in a body")
                if not events or (left is not None and left <= 0):
                    raise TimeoutError("timed out")

    def read(self, n: int) -> bytes:
        """At most `n` bytes, through `readinto`: http.client's `read(n)` of a chunked body
        whose chunk size is negative reads the socket to its end first."""
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        del buf[got:]
        return bytes(buf)

    def read_capped(self, cap: int, what: str) -> bytes:
        length = _number(self.header("content-length"))
        if length is not None and length > cap:
            self.close()
            raise CatalyticError(
                ErrorCode.REGISTRY_INVALID,
                f"the registry's {what} is {length} bytes, more than the {cap} this client accepts",
                reason="TOO_LARGE",
                **self.where(),
            )
        chunks, total = [], 0
        while chunk := self.read(min(BLOCK, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                self.close()
                raise CatalyticError(
                    ErrorCode.REGISTRY_INVALID,
                    f"the registry's {what} is more than the {cap} bytes this client accepts",
                    reason="TOO_LARGE",
                    **self.where(),
                )
        return b"".join(chunks)

    def close(self) -> None:
        # Unread bytes would desynchronise a kept-alive connection: drop it instead.
        if not self.raw.isclosed():
            self._owner.drop()
        self.raw.close()


class _OverBudget(Exception):
    """An answer ran past the bytes its request allows (`_Budget`)."""


class _Budget(io.RawIOBase):
    """The socket as http.client reads one answer from it: at most `left` bytes, headers,
    framing and body together, then `_OverBudget` instead of another read."""

    def __init__(self, raw: io.RawIOBase, left: int) -> None:
        super().__init__()
        self._raw, self.left = raw, left

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:
        if self.left <= 0:
            raise _OverBudget
        n = self._raw.readinto(memoryview(b).cast("B")[: self.left])
        if n:
            self.left -= n
        return n

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    """An answer read through `_Budget`, its limit the one `Client._once` set for it."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.socket = sock  # for `Response.move_into`
        self.fp.close()  # nothing read from it yet; its reference to the socket is released
        budget = _budget(_ANSWER_LIMIT.get())
        self.fp = io.BufferedReader(_Budget(sock.makefile("rb", buffering=0), budget))


PeerCheck = Callable[[socket.socket], None]


def _judge(conn: http.client.HTTPConnection, check: PeerCheck | None) -> None:
    if check is None:
        return
    assert conn.sock is not None  # connected
    try:
        check(conn.sock)
    except BaseException:
        conn.close()
        raise


class _Plain(http.client.HTTPConnection):
    """HTTP whose peer is judged (`check`) once the TCP connection is up, before a byte of the
    request is sent."""

    check: PeerCheck | None = None

    def connect(self) -> None:
        super().connect()
        _judge(self, self.check)


class _Secure(http.client.HTTPSConnection):
    """HTTPS whose peer is judged before the TLS handshake: a ClientHello is bytes sent too
    (to a service that listens only on this machine, for one)."""

    check: PeerCheck | None = None

    def __init__(self, host: str, port: int | None, timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=tls, blocksize=BLOCK)
        self._tls = tls

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP only; no proxy tunnel is ever set
        _judge(self, self.check)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


# Cloud metadata services outside the link-local network (Alibaba Cloud's, and AWS's over
# IPv6): single addresses no registry lives on. AWS (IPv4), GCP and Azure answer at
# 169.254.169.254, which the link-local test covers.
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))


def _private_service(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Link-local, or a cloud's metadata address: what answers there answers this machine
    alone (an instance's credentials, say)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA


def _private_written(hostname: str) -> bool:
    """`_private_service` by how the address is written (the address connected to is judged
    too)."""
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return _private_service(address)


def _peer(sock: socket.socket) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    peer = ipaddress.ip_address(sock.getpeername()[0])
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        return peer.ipv4_mapped
    return peer


def _to_this_machine(registry: str, where: str) -> CatalyticError:
    return CatalyticError(
        ErrorCode.REGISTRY_FAILED,
        f"the registry {registry} sent this client to {where}, an address on this machine, "
        "which a registry elsewhere is never allowed to reach",
        reason="LOOPBACK",
        registry=where,
    )


def _to_the_link(registry: str, where: str) -> CatalyticError:
    return CatalyticError(
        ErrorCode.REGISTRY_FAILED,
        f"the registry {registry} sent this client to {where}, a link-local or cloud "
        "metadata address (what answers there answers this machine alone), which a "
        "registry elsewhere is never allowed to reach",
        reason="LINK_LOCAL",
        registry=where,
    )


def _budget(limit: int) -> int:
    return limit + limit // 16 + HEADROOM


def _too_long(what: str, limit: int, where: dict[str, str]) -> CatalyticError:
    return CatalyticError(
        ErrorCode.REGISTRY_INVALID,
        f"the registry's answer to the {what} ran past {_budget(limit)} bytes (its body's limit "
        f"of {limit} with room for headers and framing); refused",
        reason="TOO_LARGE",
        **where,
    )


class _Counting:
    """A file whose reads are counted (the upload's bytes), handed to http.client."""

    def __init__(self, fh: IO[bytes], counters: Counters) -> None:
        self.fh, self.counters = fh, counters

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.counters.bytes_up += len(data)
        return data


class _Window:
    """Bytes `[offset, offset + length)` of a file, read by http.client a block at a time: one
    chunk of a chunked upload, streamed (nothing of it held beyond a block)."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 (closed by Client._once)
        self.fh.seek(offset)
        self.left = length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.fh.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.fh.close()


_ABORTABLE: weakref.WeakSet[Client] = weakref.WeakSet()
_ABORTABLE_LOCK = threading.Lock()


def abort_all(cancel: threading.Event) -> None:
    """Set `cancel` and wake every client made with it that is waiting on the network."""
    cancel.set()
    with _ABORTABLE_LOCK:
        clients = [c for c in _ABORTABLE if c.cancel is cancel]
    for client in clients:
        client.abort()


class Client:
    def __init__(
        self,
        ref: Reference,
        *,
        config: Path | None = None,
        insecure: bool = False,
        timeout: float = 60.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.ref = ref
        # Set from another thread (`abort_all`): no request is sent after it, and one waiting
        # for its answer or its body is woken by shutting its socket down (an interrupt of
        # `validate`, whose pulls run in worker threads no signal reaches).
        self.cancel = cancel
        self._using: http.client.HTTPConnection | None = None
        if cancel is not None:
            with _ABORTABLE_LOCK:
                _ABORTABLE.add(self)
        self.insecure = insecure
        self.scheme = "http" if insecure or is_loopback(ref.hostname) else "https"
        self.timeout = timeout
        self.config = config
        self.counters = Counters()
        self.chunk_size: int | None = None  # bytes per PATCH; None: one PUT unless a 413
        self.chunk_after_413 = CHUNK_SIZE
        self._conn: http.client.HTTPConnection | None = None
        self._authorization: str | None = None
        self._credential: auth.Credential | None = None
        self._credential_loaded = False
        # the registry's own address, as first connected to: None until then
        self._own_loopback: bool | None = None
        self._own_private = False

    # -- transport ------------------------------------------------------------------------

    def base(self) -> str:
        return f"{self.scheme}://{self.ref.host}"

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.drop()

    def abort(self) -> None:
        """Wake whatever waits on this client's connections (from another thread): a shut
        down socket ends a blocked read at once, where closing it would not."""
        for conn in (self._conn, self._using):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _connection(self, url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        same = (url.scheme, url.netloc) == (self.scheme, self.ref.host)
        if same and self._conn is not None:
            return self._conn
        host, port = url.hostname or "", url.port
        if not same and not is_loopback(self.ref.hostname):
            if is_loopback(host):
                raise _to_this_machine(self.ref.host, _origin(url))
            if _private_written(host) and not self._own_private:  # by name: no connection made
                raise _to_the_link(self.ref.host, _origin(url))
        conn: _Plain | _Secure
        if url.scheme == "https":
            conn = _Secure(host, port, self.timeout, ssl.create_default_context())
        elif url.scheme == "http" and (self.insecure or is_loopback(host)):
            conn = _Plain(host, port, timeout=self.timeout, blocksize=BLOCK)
        else:
            raise CatalyticError(
                ErrorCode.REGISTRY_FAILED,
                f"the registry sent this client to "
                f"a {url.scheme or 'schemeless'} URL on {host}, which it does "
                "not follow without --insecure",
                reason="INSECURE_REDIRECT",
            )
        conn.response_class = _BoundedResponse
        if not is_loopback(self.ref.hostname):
            conn.check = self._own_peer if same else partial(self._other_peer, _origin(url))
        if same:
            self._conn = conn
        return conn

    def _own_peer(self, sock: socket.socket) -> None:
        """The registry's own host, connected to again (after a dropped connection, say): its
        name must not lead to this machine now when it did not at first (DNS rebinding: the
        next request, with the registry's credentials, would go to a local service)."""
        peer = _peer(sock)
        if self._own_loopback is None:
            self._own_loopback, self._own_private = peer.is_loopback, _private_service(peer)
        elif peer.is_loopback and not self._own_loopback:
            raise _to_this_machine(self.ref.host, f"{self.scheme}://{self.ref.host} ({peer})")
        elif _private_service(peer) and not self._own_private:
            raise _to_the_link(self.ref.host, f"{self.scheme}://{self.ref.host} ({peer})")

    def _other_peer(self, where: str, sock: socket.socket) -> None:
        """A host the registry named (a redirect's, a token service's, an upload's), refused
        before a byte is sent when it turned out to be this machine, or the link-local network
        (the registry itself not on it): a name that resolves there (`127.1`, a DNS name)
        passes the check by name in `_connection`, and a registry elsewhere could then have
        this client send requests to services that listen only here."""
        peer = _peer(sock)
        if peer.is_loopback:
            raise _to_this_machine(self.ref.host, where)
        if _private_service(peer) and not self._own_private:
            raise _to_the_link(self.ref.host, where)

    def _once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        *,
        what: str = "request",
        limit: int = MAX_MANIFEST,
        fresh: bool = False,
        replay: bool = True,
    ) -> Response:
        if self._cancelled():
            raise KeyboardInterrupt  # stopped by `abort_all`: nothing more is sent
        parts = _split(url, what)
        reused = self._conn is not None and (parts.scheme, parts.netloc) == (
            self.scheme,
            self.ref.host,
        )
        conn = self._using = self._connection(parts)
        # a URL the registry gave may have no path at all (a realm `https://auth.example`)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        payload: Any = None
        if callable(body):
            fh, size = body()
            payload = _Counting(fh, self.counters)
            headers = {**headers, "Content-Length": str(size)}
        elif body is not None:
            payload = body
            headers = {**headers, "Content-Length": str(len(body))}
            self.counters.bytes_up += len(body)
        elif method in ("PUT", "POST", "PATCH"):
            headers = {**headers, "Content-Length": "0"}
        self.counters.requests += 1
        budget = _ANSWER_LIMIT.set(limit)
        try:
            try:
                if self.cancel is not None:
                    # Connected first and asked after: an `abort` that finds no socket yet has
                    # set `cancel` before this reads it.
                    if conn.sock is None:
                        conn.connect()
                    if self._cancelled():
                        raise KeyboardInterrupt
                if callable(body):
                    self._send_file(conn, method, target, headers, payload.fh)
                else:
                    conn.request(method, target, body=payload, headers=headers)
                raw = conn.getresponse()
            finally:
                _ANSWER_LIMIT.reset(budget)
                if callable(body):
                    payload.fh.close()
        except _OverBudget as exc:
            self.drop()
            conn.close()
            raise _too_long(what, limit, {"registry": _origin(parts)}) from exc
        except CatalyticError:  # the peer refused (`_own_peer`, `_other_peer`)
            self.drop()
            conn.close()
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.drop()
            conn.close()
            if self._cancelled():
                raise KeyboardInterrupt from exc  # woken by `abort`, not a registry's fault
            stale = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
            unanswered = reused and not fresh and isinstance(exc, stale)
            if unanswered and replay:
                # A kept-alive connection the server had closed (an idle timeout, or it hung up
                # after its last answer): once more on a new connection.
                return self._once(method, url, headers, body, what=what, limit=limit, fresh=True)
            reason = (
                "TIMEOUT"
                if isinstance(exc, socket.timeout)
                else "TLS"
                if isinstance(exc, ssl.SSLError)
                else "CONNECT"
            )
            where = _origin(parts)
            raise (_Unanswered if unanswered else CatalyticError)(
                ErrorCode.REGISTRY_UNREACHABLE,
                f"cannot reach the registry at {where}: {_why(exc)}",
                reason=reason,
                registry=where,
            ) from exc
        hdrs = {k.lower(): v for k, v in raw.getheaders()}
        return Response(raw.status, hdrs, raw, url, self, what=what, limit=limit)

    def _send_file(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: dict[str, str],
        fh: Any,
    ) -> None:
        """The request line and headers by http.client, the body read into one reused buffer
        and sent from it. Not `socket.sendfile`: a body the kernel sends from the page cache
        reaches docker-registry on loopback 7-16 % slower than the same bytes sent from a
        buffer (bench/RESULTS.md, "Uploads sent from a buffer, and while hashed"), and over TLS
        it is reads and sends anyway."""
        window = fh if isinstance(fh, _Window) else None
        file = window.fh if window else fh
        count = window.left if window else int(headers["Content-Length"])
        conn.putrequest(method, target)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        assert conn.sock is not None  # endheaders connected it
        fd, start, sent = file.fileno(), file.tell(), 0
        buf = memoryview(bytearray(min(BLOCK, count)))
        name = getattr(file, "name", "the file")
        while sent < count:
            try:
                n = os.preadv(fd, [buf[: count - sent]], start + sent)
            except OSError as exc:  # the disk's, not the registry's
                raise io_failure(f"read {name} to send it", name, exc) from exc
            if not n:
                raise CatalyticError(
                    ErrorCode.IO_ERROR,
                    f"{name} shrank while it was sent ({sent} of {count} bytes)",
                    path=str(name),
                )
            # send(), not sendall(): the timeout is then how long the registry may take no
            # bytes at all, not how long a whole block may take on a slow link
            done = 0
            while done < n:
                done += conn.sock.send(buf[done:n])
            sent += n
            self.counters.bytes_up += n

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        ok: tuple[int, ...] = (200,),
        what: str = "request",
        limit: int = MAX_MANIFEST,
        replay: bool = True,
    ) -> Response:
        """One request; `path` is `/v2/...` or an absolute URL the registry gave (an upload
        location, a redirect). Answers a challenge once; follows redirects of GET and HEAD,
        sending credentials only to the registry's own host. The answer's body may be `limit`
        bytes (a blob's declared size; the caller still counts them): past that and the room
        `_budget` leaves, reading it is refused. `replay=False`: a kept-alive connection that
        broke before the answer raises `_Unanswered` instead of sending the request again."""
        url = first = path if "://" in path else self.base() + path
        sent_auth = False
        for _ in range(6):
            hdrs = dict(headers or {})
            own = _split(url, what).netloc == self.ref.host
            if own and self._authorization is not None:
                hdrs["Authorization"] = self._authorization
            resp = self._once(method, url, hdrs, body, what=what, limit=limit, replay=replay)
            if resp.status == 401 and own and not sent_auth:
                challenge = resp.header("www-authenticate")
                _drain(resp)
                self._authenticate(challenge)
                sent_auth = True
                continue
            if resp.status in REDIRECTS and method in ("GET", "HEAD"):
                location = resp.header("location")
                _drain(resp)
                if not location:
                    break
                url = _join(url, location, what)
                continue
            if resp.status in ok:
                resp.requested = first
                return resp
            raise self._failure(resp, what, own=own)
        raise CatalyticError(
            ErrorCode.REGISTRY_FAILED,
            f"the registry's {what} went round in redirects or challenges",
            reason="LOOP",
        )

    # -- authentication -------------------------------------------------------------------

    def credential(self) -> auth.Credential | None:
        if not self._credential_loaded:
            self._credential = auth.find_credential(self.ref.host, self.config)
            self._credential_loaded = True
        return self._credential

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise auth.auth_error(
                f"the registry {self.ref.host} refused the request (401) "
                "without saying how to authenticate",
                reason="NO_CHALLENGE",
            )
        challenge = auth.parse_challenge(header)
        cred = self.credential()
        if challenge.scheme == "basic":
            if cred is None:
                raise _needs_login(self.ref.host)
            if cred.identity:
                raise auth.auth_error(
                    f"the registry {self.ref.host} asks for a password, and the configured "
                    "credential is an identity token (which goes only to a token service)",
                    reason="REFUSED",
                )
            if self.scheme == "http" and not (self.insecure or is_loopback(self.ref.hostname)):
                raise auth.auth_error(
                    "refusing to send a password over plain HTTP", reason="INSECURE"
                )
            self._authorization = cred.basic()
            return
        if challenge.scheme != "bearer":
            raise auth.auth_error(
                f"the registry {self.ref.host} asks for {shown(challenge.scheme)} "
                "authentication, which this client does not speak",
                reason="SCHEME",
            )
        realm = challenge.params.get("realm", "")
        if realm:
            _split(realm, "token request")
        if not auth.realm_allowed(realm, self.insecure):
            raise auth.auth_error(
                f"the registry {self.ref.host} names a token service that "
                "is not HTTPS; refusing to send credentials there",
                reason="INSECURE",
            )
        method, url, hdrs, form = auth.token_request(challenge, cred)
        resp = self._once(method, url, hdrs, form, what="token request")
        if resp.status in (400, 401, 403) and cred is not None and cred.identity:
            # The OAuth grant answers a refused refresh token with 400 invalid_grant.
            _drain(resp)
            raise _refused(self.ref.host)
        if resp.status in (401, 403):
            _drain(resp)
            raise _needs_login(self.ref.host) if cred is None else _refused(self.ref.host)
        if resp.status != 200:
            _drain(resp)
            raise auth.auth_error(
                f"the registry's token service answered {resp.status}", reason="TOKEN"
            )
        self._authorization = "Bearer " + auth.token_from(
            resp.read_capped(auth.MAX_TOKEN_RESPONSE, "token")
        )

    def _failure(self, resp: Response, what: str, *, own: bool = True) -> CatalyticError:
        try:
            body = resp.read_capped(MAX_ERROR_BODY, "error")
        except CatalyticError:
            body = b""
        codes = _error_codes(body)
        status = resp.status
        details: dict[str, Any] = {"status": status, "registry_codes": codes}
        if status == 401 and not own:  # a storage server's: no credential of ours went there
            return auth.auth_error(
                f"{_origin(_split(resp.url, what))}, where the registry {self.ref.host} sent "
                f"this client, refused the {what} (401)",
                reason="REFUSED",
                **details,
            )
        if status == 401:
            return (
                _needs_login(self.ref.host)
                if self.credential() is None
                else _refused(self.ref.host)
            )
        if status == 403:
            return auth.auth_error(
                f"the registry {self.ref.host} denied the {what} (403): "
                "the account lacks access to this repository",
                reason="DENIED",
                **details,
            )
        if status == 404:
            return CatalyticError(
                ErrorCode.REGISTRY_NOT_FOUND,
                f"the registry has no such {what} ({', '.join(codes) or 'not found'})",
                **details,
            )
        return CatalyticError(
            ErrorCode.REGISTRY_FAILED,
            f"the registry answered the {what} "
            f"with {status} ({', '.join(codes) or 'no error code'})",
            **details,
        )

    # -- the distribution API -------------------------------------------------------------

    def _repo(self, tail: str) -> str:
        return f"/v2/{self.ref.name}/{tail}"

    def blob_size(self, digest: str) -> int | None:
        """The size the registry holds for a blob, or None when it has none."""
        resp = self.request("HEAD", self._repo(f"blobs/{digest}"), ok=(200, 404), what="blob check")
        _drain(resp)
        if resp.status == 404:
            return None
        length = _number(resp.header("content-length"))
        return -1 if length is None else length

    def _open_upload(self) -> tuple[str, int]:
        """POST: a new upload session's URL, and the least chunk the registry accepts (OCI
        1.1's `OCI-Chunk-Min-Length`, 0 when it names none)."""
        resp = self.request("POST", self._repo("blobs/uploads/"), ok=(202,), what="blob upload")
        least = _number(resp.header("oci-chunk-min-length"))
        _drain(resp)
        return self._location(resp), least or 0

    def _location(self, resp: Response) -> str:
        """The upload's next URL: its `Location`, resolved against the URL that answered (a
        session the registry keeps on storage elsewhere stays there)."""
        location = resp.header("location")
        if not location:
            raise CatalyticError(
                ErrorCode.REGISTRY_FAILED,
                "the registry answered an upload without a Location",
                reason="NO_LOCATION",
            )
        joined = _join(resp.url, location, "blob upload")
        # a fragment is never sent; one left on the URL would swallow the digest added after it
        return urllib.parse.urldefrag(joined).url

    def _upload_end(self, url: str) -> tuple[int | None, str]:
        """The last byte the registry holds of an upload (GET of its URL: 204 and `Range`, the
        distribution spec's upload status) and the URL to go on with (the answer's Location:
        distribution's carries the upload's state); None when the registry will not say."""
        try:
            resp = self.request("GET", url, ok=(204,), what="blob upload status")
        except CatalyticError:
            return None, url
        _drain(resp)
        end = _range_end(resp)
        return end, self._location(resp) if resp.header("location") else url

    def _commit(self, url: str, digest: str, size: int, body: Body) -> None:
        """The closing PUT ?digest= (with the bytes, or none after chunks); the registry checks
        the digest before it commits. An answer lost on a kept-alive connection (`_Unanswered`)
        is a commit where the registry now holds the digest at its size, else the PUT goes once
        more, asked about the same way if that answer is lost too."""
        parts = urllib.parse.urlsplit(url)
        query = "&".join(q for q in (parts.query, urllib.parse.urlencode({"digest": digest})) if q)
        url = urllib.parse.urlunsplit(parts._replace(query=query, fragment=""))
        put = partial(
            self.request,
            "PUT",
            url,
            body=body,
            ok=(201,),
            what="blob upload",
            headers={"Content-Type": "application/octet-stream"},
            replay=False,
        )
        for last in (False, True):
            try:
                resp = put()
                break
            except _Unanswered:
                if self.blob_size(digest) == size:
                    self.counters.blob_uploads += 1
                    return
                if last:
                    raise
        _drain(resp)
        got = resp.header("docker-content-digest")
        if got is not None and got != digest:
            raise CatalyticError(
                ErrorCode.REGISTRY_DIGEST_MISMATCH,
                f"the registry stored the blob as {shown(got)}, not {digest}",
                reason="DIGEST",
            )
        self.counters.blob_uploads += 1

    def upload_blob(self, digest: str, size: int, body: Body) -> None:
        """POST to open an upload, then one streamed PUT with the digest (the monolithic
        upload of the distribution spec)."""
        url, _ = self._open_upload()
        self._commit(url, digest, size, body)

    def upload(self, digest: str | Callable[[], str], source: Path | bytes, size: int) -> None:
        """A blob from a file (streamed: memory flat) or from bytes: in one PUT, or in PATCH
        chunks when a chunk size is set and the blob is larger, when the one PUT was refused
        with 413 (a cap on request bodies, which a proxy may set below an attestation's size),
        or when the digest is still being computed (`digest` a callable that waits for it: the
        PUT's URL names the digest, a PATCH does not, so one PATCH carries the whole blob
        meanwhile and only the closing PUT waits). Where the registry refuses the first chunk
        as not supporting chunks, in one PUT after all."""

        def opened() -> tuple[IO[bytes], int]:
            assert isinstance(source, Path)
            return open(source, "rb"), size

        whole: Body = source if isinstance(source, bytes) else opened
        chunk = self.chunk_size if self.chunk_size and size > self.chunk_size else None
        if chunk is None and not isinstance(digest, str):
            chunk = size
        try:
            if chunk is None:
                assert isinstance(digest, str)
                self.upload_blob(digest, size, whole)
            elif not self._chunked(digest, source, size, chunk):
                self.upload_blob(digest if isinstance(digest, str) else digest(), size, whole)
        except CatalyticError as exc:
            if exc.details.get("reason") == "CHUNK_RANGE" and not isinstance(digest, str):
                # Chunks because the digest was not known yet (or asked for), and the registry
                # keeps them wrongly (some answer a wrong Range): the one PUT once the digest is
                # known, which a registry checks like any upload.
                self.upload_blob(digest(), size, whole)
                return
            smaller = min(self.chunk_after_413, (chunk or size) // 2)
            if exc.details.get("status") != 413 or smaller < 1:
                raise
            if not self._chunked(digest, source, size, smaller):
                raise

    def _chunked(
        self, digest: str | Callable[[], str], source: Path | bytes, size: int, chunk: int
    ) -> bool:
        """POST, then PATCH with `Content-Range: <first>-<last>` per chunk, each streamed from
        the file (or sliced from the bytes) to the Location the previous answer gave and
        checked against the `Range` the registry says it holds, then PUT ?digest= with no body.
        False when the registry refuses the first chunk as a registry without chunked uploads
        does."""
        url, least = self._open_upload()
        step = max(chunk, least, 1)
        offset = 0
        again = False  # this chunk is being sent a second time
        restarted = False  # the upload was begun again in a new session
        while offset < size:
            n = min(step, size - offset)
            try:
                resp = self.request(
                    "PATCH",
                    url,
                    body=(
                        source[offset : offset + n]
                        if isinstance(source, bytes)
                        else _window_body(source, offset, n)
                    ),
                    ok=(202, *NO_CHUNKS) if offset == 0 else (202,),
                    what="blob chunk",
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + n - 1}",
                    },
                    replay=False,
                )
            except CatalyticError as exc:
                if isinstance(exc, _Unanswered):
                    # Sent again blindly, a chunk the registry kept would be appended twice
                    # (or refused: distribution's URL carries the offset it expects). Asked
                    # instead: what it holds says whether the chunk landed.
                    end, where = self._upload_end(url)
                    if end is not None and end == offset + n - 1 and end > 0:
                        url, offset, again = where, offset + n, False
                        continue
                    # "0-0" is also what an upload holding nothing answers
                    nothing = end == offset - 1 or (offset == 0 and end == 0 and n > 1)
                    if nothing and not again:
                        url, again = where, True
                        continue
                    if not restarted and (offset or end is None):
                        # The registry will not say (distribution refuses a URL whose state it
                        # has moved past, the new one was in the lost answer, and drops that
                        # upload), or past the first chunk the answer is no use: begun again in
                        # a new upload, once. A first chunk the registry says it never got,
                        # twice, is a registry without chunks: the one PUT, below.
                        url, least = self._open_upload()
                        step, offset, again, restarted = max(chunk, least, 1), 0, False, True
                        continue
                # A registry without chunks may answer the first PATCH and hang up before
                # reading its body: a broken pipe here. Were it unreachable, so is the retry.
                if offset or exc.code is not ErrorCode.REGISTRY_UNREACHABLE:
                    raise
                return False
            _drain(resp)
            if resp.status != 202:
                return False
            end = _range_end(resp)
            if end is None or end != offset + n - 1:
                raise CatalyticError(
                    ErrorCode.REGISTRY_FAILED,
                    f"the registry holds {shown(resp.header('range') or 'no range')} of the upload "
                    f"after a chunk ending at byte {offset + n - 1}",
                    reason="CHUNK_RANGE",
                )
            url, offset, again = self._location(resp), offset + n, False
        self._commit(url, digest if isinstance(digest, str) else digest(), size, None)
        return True

    def get_blob(self, digest: str, size: int) -> Response:
        return self.request("GET", self._repo(f"blobs/{digest}"), what=f"blob {digest}", limit=size)

    def get_manifest(
        self, reference: str, cap: int = MAX_MANIFEST
    ) -> tuple[bytes, str, str | None]:
        """(bytes, media type, the registry's Docker-Content-Digest) of a manifest or index,
        capped (at `cap`, at most MAX_MANIFEST) before it is read."""
        resp = self.request(
            "GET",
            self._repo(f"manifests/{reference}"),
            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
            what=f"manifest {reference}",
            limit=min(cap, MAX_MANIFEST),
        )
        data = resp.read_capped(min(cap, MAX_MANIFEST), "manifest")
        media = (resp.header("content-type") or "").split(";")[0].strip()
        return data, media, resp.header("docker-content-digest")

    def manifest_digest(self, reference: str) -> str | None:
        """The digest of what `reference` (a tag) names now, None when it names nothing: the
        registry's `Docker-Content-Digest` on a HEAD, else (a registry that omits it, which the
        spec allows, or refuses HEAD) the hash of the manifest a GET returns."""
        try:
            resp = self.request(
                "HEAD",
                self._repo(f"manifests/{reference}"),
                ok=(200, 404),
                headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"},
                what=f"manifest {reference}",
            )
        except CatalyticError as exc:
            if exc.code is not ErrorCode.REGISTRY_FAILED or exc.details.get("status") not in (
                405,
                501,
            ):
                raise
            named = None
        else:
            _drain(resp)
            if resp.status == 404:
                return None
            named = resp.header("docker-content-digest")
        if named is not None:
            return named
        try:
            data, _, _ = self.get_manifest(reference)
        except CatalyticError as exc:
            if exc.code is ErrorCode.REGISTRY_NOT_FOUND:
                return None
            raise
        return _sha256(data)

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> Response:
        """PUT a manifest or index; a registry that says it stored other bytes
        (`Docker-Content-Digest`) is refused: what was published is not what was sent."""
        resp = self.request(
            "PUT",
            self._repo(f"manifests/{reference}"),
            body=data,
            headers={"Content-Type": media_type},
            ok=(201,),
            what=f"manifest {reference}",
        )
        _drain(resp)
        stored, sent = resp.header("docker-content-digest"), _sha256(data)
        if stored is not None and stored != sent:
            raise CatalyticError(
                ErrorCode.REGISTRY_DIGEST_MISMATCH,
                f"the registry stored the manifest {reference} as {shown(stored)}, not {sent}",
                reason="DIGEST",
            )
        return resp

    def referrers(self, digest: str) -> bytes | None:
        """The referrers API's index for `digest`, or None where the registry lacks the API."""
        resp = self.request(
            "GET",
            self._repo(f"referrers/{digest}"),
            ok=(200, 404),
            headers={"Accept": OCI_INDEX},
            what="referrers",
        )
        if resp.status == 404:
            _drain(resp)
            return None
        return resp.read_capped(MAX_MANIFEST, "referrers index")

    def tags(self) -> TagList:
        """Every tag of the repository, following the `Link` pagination within the limits
        above: a registry that sends the client round (a `next` page already read) or on and
        on (more pages, tags or bytes than any repository of runs needs) is refused, not
        followed until memory or patience runs out. A listed string that is not an OCI tag is
        dropped and counted: a tag becomes a run id in output, reports and the chronicle, and
        the registry's text could carry terminal escapes or a path there."""
        out: list[str] = []
        ignored = 0
        seen: set[str] = set()
        read = 0
        url: str | None = self.base() + self._repo(f"tags/list?n={TAG_PAGE}")
        while url is not None:
            if url in seen:
                raise CatalyticError(
                    ErrorCode.REGISTRY_FAILED,
                    "the registry's tag list names a page already read as the next one",
                    reason="LOOP",
                    pages=len(seen),
                )
            if len(seen) == MAX_TAG_PAGES:
                raise _too_many_tags(f"more than {MAX_TAG_PAGES} pages", pages=len(seen))
            seen.add(url)
            resp = self.request("GET", url, what="tag list")
            link = resp.header("link")
            body = resp.read_capped(MAX_MANIFEST, "tag list")
            read += len(body)
            if read > MAX_TAG_BYTES:
                raise _too_many_tags(f"more than {MAX_TAG_BYTES} bytes", pages=len(seen))
            page = _tag_page(body)
            if len(out) + ignored + len(page) > MAX_TAGS:
                raise _too_many_tags(f"more than {MAX_TAGS} tags", pages=len(seen))
            tags = [t for t in page if TAG.match(t)]
            out.extend(tags)
            ignored += len(page) - len(tags)
            url = self._next_page(link)
        return TagList(out, ignored)

    def _next_page(self, link: str | None) -> str | None:
        """The `Link: <URL>; rel="next"` of a tag list page, on the registry's own host."""
        m = re.match(r"<([^>]+)>;\s*rel=\"?next\"?", link or "")
        if m is None:
            return None
        url = _join(self.base() + "/", m.group(1), "tag list")
        return url if urllib.parse.urlsplit(url).netloc == self.ref.host else None


def _tag_page(body: bytes) -> list[str]:
    try:
        doc = loads_strict(body, what="tag list")
    except CatalyticError as exc:
        raise CatalyticError(
            ErrorCode.REGISTRY_INVALID,
            f"the registry's tag list is not strict JSON ({exc.message})",
            reason="TAG_LIST",
        ) from exc
    tags = (doc.get("tags") or []) if isinstance(doc, dict) else None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise CatalyticError(
            ErrorCode.REGISTRY_INVALID,
            "the registry's tag list is not a list of strings",
            reason="TAG_LIST",
        )
    return tags


def _too_many_tags(what: str, **details: object) -> CatalyticError:
    return CatalyticError(
        ErrorCode.REGISTRY_INVALID,
        f"the registry's tag list runs to {what}, beyond what this client reads (at most "
        f"{MAX_TAGS} tags, {MAX_TAG_PAGES} pages, {MAX_TAG_BYTES >> 20} MiB)",
        reason="TOO_MANY_TAGS",
        **details,
    )


def _splice_out(pipe: int, fd: int, n: int) -> int:
    """Of the `n` bytes in the pipe, those appended to the file before the kernel said it
    cannot splice into it (`_NO_SPLICE`; the rest are left in the pipe)."""
    done = 0
    while done < n:
        try:
            done += os.splice(pipe, fd, n - done)
        except OSError as exc:
            if exc.errno not in _NO_SPLICE:
                raise
            break
    return done


def _copy_out(pipe: int, fd: int, n: int, buf: memoryview) -> None:
    """The `n` bytes left in the pipe appended to the file through `buf`."""
    while n:
        k = os.readv(pipe, [buf[:n]])
        write_sliced(fd, buf[:k])
        n -= k


def _window_body(path: Path, offset: int, length: int) -> Body:
    def opened() -> tuple[IO[bytes], int]:
        return _Window(path, offset, length), length  # type: ignore[return-value]

    return opened


def _sha256(data: bytes) -> str:
    import hashlib  # here: only a push hashes what it sends

    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _range_end(resp: Response) -> int | None:
    """The last byte of an upload the registry says it holds (`Range: 0-<last>`)."""
    have = re.fullmatch(r"(?:bytes=)?0-([0-9]{1,19})", resp.header("range") or "")
    return None if have is None else int(have.group(1))


def _drain(resp: Response) -> None:
    """Read a small answer to its end so the connection can be reused."""
    try:
        resp.read_capped(MAX_ERROR_BODY, "answer")
    except CatalyticError:
        resp.close()


def _error_codes(body: bytes) -> list[str]:
    """The registry's error codes, only when they look like codes (nothing else is quoted).
    An error body is a courtesy: one that is not the distribution spec's shape has none."""
    try:
        doc = loads_strict(body, what="the registry's error")
    except CatalyticError:
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    codes = [e.get("code") for e in errors if isinstance(e, dict)]
    return [c for c in codes if isinstance(c, str) and _CODE.match(c)][:5]


def shown(value: str) -> str:
    """A registry's header value fit for a message: as sent when it is short printable ASCII,
    else escaped and cut (a terminal escape in a header would otherwise reach the screen)."""
    return value if _PRINTABLE.match(value) else ascii(value[:100])


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and _NUMBER.match(value) else None


def _bad_url(what: str, why: str) -> CatalyticError:
    # The URL itself is never quoted: it is the registry's text (controls, a signature).
    return CatalyticError(
        ErrorCode.REGISTRY_FAILED,
        f"the registry sent this client, for the {what}, to a URL it cannot use ({why})",
        reason="BAD_URL",
    )


def _split(url: str, what: str) -> urllib.parse.SplitResult:
    """A URL parsed once, and refused unless a request can be built from it: printable ASCII,
    a host name a resolver takes (IDNA: no empty label, none over 63 characters), a port in
    range. Every URL a request goes to passes here; the registry names most of them (a
    redirect, an upload's Location, a token realm, the next page of tags)."""
    if not _URL_TEXT.match(url):
        raise _bad_url(what, "not printable ASCII, or longer than 8,192 characters")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises for a port that is not a number from 0 to 65535
        host = parts.hostname or ""
        if not host:
            raise ValueError("no host")
        if ":" not in host:  # an IPv6 literal is checked by urlsplit itself
            host.encode("idna")
    except ValueError as exc:  # UnicodeError (the IDNA codec) is one too
        raise _bad_url(what, "no valid host or port") from exc
    return parts


def _join(base: str, location: str, what: str) -> str:
    """`location` (a header the registry sent) resolved against `base`, checked as _split
    checks every URL."""
    if not _URL_TEXT.match(location):
        raise _bad_url(what, "not printable ASCII, or longer than 8,192 characters")
    try:
        url = urllib.parse.urljoin(base, location)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise _bad_url(what, "no valid host or port") from exc
    _split(url, what)
    return url


def _origin(parts: urllib.parse.SplitResult) -> str:
    """scheme://host[:port]: never the user info a URL may carry."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate was not accepted ({exc.verify_message}; a private "
            "certificate authority goes into the system's store, or its bundle is named by "
            "SSL_CERT_FILE)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or 'handshake'})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _needs_login(host: str) -> CatalyticError:
    return auth.auth_error(
        f"the registry {host} requires authentication and no credentials "
        f"are configured for it: `docker login {host}` (or give "
        "--registry-config FILE)",
        reason="REQUIRED",
    )


def _refused(host: str) -> CatalyticError:
    return auth.auth_error(
        f"the registry {host} refused the configured credentials", reason="REFUSED"
    )
