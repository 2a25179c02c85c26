"""Where each pinned wheel comes from: local wheelhouses (`env_find_links`), the primary index
(`env_index`) and the fallback indexes (`env_fallback_indexes`), asked in that order.

This module, not the installer, chooses the file for every pin, for three reasons: an
installer given several indexes merges or orders them by its own rules (uv searches extra
indexes *before* the default one and stops at the first that knows a name, pip merges them all),
which is how dependency confusion happens; an installer stops at an unreachable index instead of
falling back; and the report must say which source served each package. So the rule is ours:
the first source that offers a compatible wheel of the pinned version serves it, and where the
run recorded hashes only those exact bytes are accepted. A source offering other bytes for a
recorded pin is refused (ENV_HASH_REFUSED) rather than skipped: it is either tampered with or
confused, and silently looking elsewhere would hide that. The installer is then given exactly
the chosen files, hash-pinned, with no index at all."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import user_info_refusal
from catalytic_hooks.environment.pins import Pin
from catalytic_hooks.environment.tags import WheelName, parse_wheel_name, same_version

TIMEOUT = 30.0
MAX_PAGE = 64 * 1024 * 1024
MAX_WHEEL = 16 * 1024 * 1024 * 1024
SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,250}\.whl\Z")
_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)


class Unreachable(Exception):
    """The source could not be asked (connection refused, timeout, a server error)."""


@dataclass(frozen=True)
class Candidate:
    wheel: WheelName
    location: str  # a URL, or an absolute path in a wheelhouse
    sha256: str | None  # advertised by the source (hex), None when it says nothing


@dataclass
class Source:
    label: str  # "find-links" | "primary" | "fallback N"
    location: str
    down: str | None = None  # why it was found unreachable (then not asked again)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def candidates(self, name: str) -> list[Candidate] | None:
        raise NotImplementedError

    def mark_down(self, why: str) -> None:
        with self._lock:
            self.down = self.down or why


class Wheelhouse(Source):
    """A local directory of wheels (pip's and uv's `--find-links DIR`)."""

    def __init__(self, location: str, in_place: bool = False):
        path = location[len("file://") :] if location.startswith("file://") else location
        super().__init__("find-links", str(Path(unquote(path)).absolute()))
        self._listing: list[WheelName] | None = None
        # Hand the installer this directory instead of a copy (uv only: with several files of
        # one version, pip picks by tags first and fails on the hash instead of skipping).
        self.in_place = in_place

    def only_one(self, c: Candidate) -> bool:
        """Whether `c` is the only file of its name and version here."""
        return (
            sum(
                1
                for w in self._listing or []
                if w.name == c.wheel.name and same_version(w.version, c.wheel.version)
            )
            == 1
        )

    def candidates(self, name: str) -> list[Candidate] | None:
        with self._lock:
            if self._listing is None:
                try:
                    names = sorted(os.listdir(self.location))
                except OSError as exc:
                    raise Unreachable(
                        f"cannot list {self.location}: {exc.strerror or exc}"
                    ) from exc
                self._listing = [
                    w
                    for n in names
                    if SAFE_FILE.match(n)
                    for w in [parse_wheel_name(n)]
                    if w is not None
                ]
        found = [
            Candidate(w, os.path.join(self.location, w.filename), None)
            for w in self._listing
            if w.name == name
        ]
        return found or None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


class Index(Source):
    """A PEP 503 simple repository (PEP 691 JSON when the server offers it)."""

    def candidates(self, name: str) -> list[Candidate] | None:
        page_url = self.location.rstrip("/") + f"/{name}/"
        try:
            body, final, ctype = _get(page_url, _ACCEPT)
        except _Absent:
            return None
        # A page is the index's word, so anything in it may be hostile: a wrong type, JSON
        # nested past the parser's recursion limit, a link no URL parser takes. Each makes the
        # page unusable (Unreachable: the next source is asked), never a crash.
        try:
            files = _page_files(body, final, ctype)
        except (CatalyticError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise Unreachable(f"{page_url}: not a usable simple-API page ({exc})") from exc
        out = []
        for filename, url, h in files:
            w = parse_wheel_name(filename) if SAFE_FILE.match(filename) else None
            if w is None or w.name != name or not _allowed(url, self.location):
                continue  # an sdist, another project's file, or a link out of bounds
            sha = h.lower() if isinstance(h, str) and re.fullmatch(r"[0-9a-fA-F]{64}", h) else None
            out.append(Candidate(w, url, sha))
        return out


def _page_files(body: bytes, final: str, ctype: str) -> list[tuple[str, str, str | None]]:
    """(filename, url, sha256 or None) of each file a project page lists."""
    files: list[tuple[str, str, str | None]] = []
    if "json" in ctype:
        doc = loads_strict(body, what="the index page")
        listed = doc.get("files") if isinstance(doc, dict) else None
        for f in listed if isinstance(listed, list) else []:
            if isinstance(f, dict) and isinstance(f.get("url"), str):
                hashes = f.get("hashes")
                h = hashes.get("sha256") if isinstance(hashes, dict) else None
                name = f.get("filename")
                files.append((name if isinstance(name, str) else "", urljoin(final, f["url"]), h))
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", errors="replace"))
        for href in parser.links:
            url = urljoin(final, href)
            base, _, frag = url.partition("#")
            h = frag[len("sha256=") :] if frag.startswith("sha256=") else None
            files.append((unquote(urlsplit(base).path.rsplit("/", 1)[-1]), base, h))
    return files


class _Absent(Exception):
    pass


def _allowed(url: str, index: str) -> bool:
    """An index served over http(s) may link to http(s) files only (never to this machine's
    files through file://)."""
    scheme = urlsplit(url).scheme
    if index.startswith("file:"):
        return scheme in ("file", "http", "https")
    return scheme in ("http", "https")


def _get(url: str, accept: str) -> tuple[bytes, str, str]:
    """(body, final URL, content type); _Absent for 404/410; Unreachable otherwise."""
    if url.startswith("file:"):
        path = Path(unquote(urlsplit(url).path))
        if path.is_dir():
            path = path / "index.html"
        try:
            return _read_capped(path), path.as_uri(), "text/html"
        except FileNotFoundError as exc:
            raise _Absent() from exc
        except OSError as exc:
            raise Unreachable(f"{url}: {exc.strerror or exc}") from exc
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "catalytic-hooks"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            body = resp.read(MAX_PAGE + 1)
            if len(body) > MAX_PAGE:
                raise Unreachable(f"{url}: page larger than {MAX_PAGE} bytes")
            return body, resp.geturl(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise _Absent() from exc
        raise Unreachable(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(_reason(reason)) from exc


def _reason(reason: Any) -> str:
    """A stable description of a network failure (the report is byte-identical across reruns,
    so no port numbers or errno texts that vary)."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, OSError) and reason.errno is not None:
        return f"network error ({type(reason).__name__})"
    return "network error"


def _read_capped(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > MAX_PAGE:
                raise OSError(f"{path}: larger than {MAX_PAGE} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def make_sources(
    find_links: list[str],
    index: str | None,
    fallbacks: list[str],
    offline: bool,
    in_place: bool = False,
) -> list[Source]:
    for url in (*([index] if index else []), *fallbacks):
        if refused := user_info_refusal(url, "index", ErrorCode.USAGE):
            raise refused
    sources: list[Source] = [Wheelhouse(loc, in_place) for loc in find_links]
    if not offline:
        if index:
            sources.append(Index("primary", index))
        sources += [Index(f"fallback {i}", url) for i, url in enumerate(fallbacks, 1)]
    return sources


# -- serving one pin --------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    name: str
    version: str
    source: str  # the source's label
    location: str  # its URL or directory
    filename: str
    sha256: str  # "sha256:<hex>" of the bytes handed to the installer
    hash_checked: bool  # against hashes the run recorded
    path: Path  # the file in the private directory the installer reads
    events: tuple[dict[str, str], ...]  # what happened at the sources before, in order


def serve(pin: Pin, sources: list[Source], tags: list[str], platform: str, into: Path) -> Served:
    """The file for `pin` in `into`, from the first source that has it (module docstring)."""
    rank = {t: i for i, t in enumerate(tags)}
    events: list[dict[str, str]] = []
    incompatible: list[str] = []
    for src in sources:
        if src.down is not None:
            events.append({"source": src.label, "event": f"unreachable ({src.down})"})
            continue
        try:
            cands = src.candidates(pin.name)
        except Unreachable as exc:
            src.mark_down(str(exc))
            events.append({"source": src.label, "event": f"unreachable ({src.down})"})
            continue
        versioned = [c for c in cands or [] if same_version(pin.version, c.wheel.version)]
        if not versioned:
            events.append(
                {
                    "source": src.label,
                    "event": f"does not have {pin.name} {pin.version}"
                    if cands
                    else f"does not have {pin.name}",
                }
            )
            continue
        usable = sorted(
            (c for c in versioned if c.wheel.tags & rank.keys()),
            key=lambda c: (min(rank[t] for t in c.wheel.tags if t in rank), c.wheel.filename),
        )
        if not usable:
            incompatible += [c.wheel.filename for c in versioned]
            events.append({"source": src.label, "event": "has no wheel for this platform"})
            continue
        try:
            return _take(pin, src, usable, into, tuple(events))
        except Unreachable as exc:  # listed, then failed to serve: the next source is asked
            src.mark_down(str(exc))
            events.append({"source": src.label, "event": f"unreachable ({src.down})"})
    if incompatible:
        raise CatalyticError(
            ErrorCode.ENV_NO_WHEEL,
            f"no wheel of {pin.name} {pin.version} "
            f"for this platform ({platform}); offered: "
            f"{', '.join(sorted(set(incompatible))[:6])}",
            package=pin.name,
            version=pin.version,
            platform=platform,
            events=events,
        )
    down = [e for e in events if e["event"].startswith("unreachable")]
    why = (
        "every source is unreachable"
        if down and len(down) == len(events)
        else "no source has it" + (" (some were unreachable)" if down else "")
    )
    raise CatalyticError(
        ErrorCode.ENV_REBUILD_FAILED,
        f"cannot get {pin.name}=={pin.version}: "
        f"{why}; sources asked: "
        + (
            "; ".join(f"{e['source']}: {e['event']}" for e in events)
            or "none (give env_find_links, env_index or drop --offline)"
        ),
        package=pin.name,
        version=pin.version,
        events=events,
    )


def _take(
    pin: Pin, src: Source, usable: list[Candidate], into: Path, events: tuple[dict[str, str], ...]
) -> Served:
    """Fetch the best candidate whose bytes are acceptable, or refuse."""
    offered: list[dict[str, str]] = []
    for c in usable:
        if pin.hashes and c.sha256 is not None and "sha256:" + c.sha256 not in pin.hashes:
            offered.append({"file": c.wheel.filename, "sha256": "sha256:" + c.sha256})
            continue  # refused unread: the source itself says these are other bytes
        in_place = isinstance(src, Wheelhouse) and src.in_place and src.only_one(c)
        path, digest = _hash_in_place(c) if in_place else _fetch(c, src, into)
        if pin.hashes and digest not in pin.hashes:
            if not in_place:
                path.unlink(missing_ok=True)
            offered.append({"file": c.wheel.filename, "sha256": digest})
            continue
        return Served(
            pin.name,
            pin.version,
            src.label,
            src.location,
            c.wheel.filename,
            digest,
            bool(pin.hashes),
            path,
            events,
        )
    raise CatalyticError(
        ErrorCode.ENV_HASH_REFUSED,
        f"{src.label} ({src.location}) offers "
        f"{pin.name} {pin.version} only as other bytes than the run recorded "
        f"({', '.join(o['file'] + ' ' + o['sha256'] for o in offered)}; "
        f"recorded {', '.join(pin.hashes)}); refused, nothing was installed",
        package=pin.name,
        version=pin.version,
        source=src.label,
        location=src.location,
        offered=offered,
        recorded=list(pin.hashes),
    )


def _hash_in_place(c: Candidate) -> tuple[Path, str]:
    """A wheelhouse file read where it is: the installer is then pointed at the wheelhouse
    itself with this file's hash required, so it can install these bytes or nothing (and uv's
    cache, keyed by the file's place, stays warm across rebuilds)."""
    h = hashlib.sha256()
    for chunk in _stream(c, Wheelhouse(os.path.dirname(c.location))):
        h.update(chunk)
    return Path(c.location), "sha256:" + h.hexdigest()


def _fetch(c: Candidate, src: Source, into: Path) -> tuple[Path, str]:
    """Copy (or download) the candidate into the private directory, hashing it on the way:
    the installer reads this copy, never the source, so the bytes checked are the bytes
    installed (the installer checks them once more: --require-hashes)."""
    dest = into / c.wheel.filename
    h = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _stream(c, src):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest, "sha256:" + h.hexdigest()


def _stream(c: Candidate, src: Source) -> Iterator[bytes]:
    """The candidate's bytes in chunks, at most MAX_WHEEL of them (a sparse file of any size
    costs its writer nothing and its reader a full read)."""
    size = 0
    for chunk in _chunks(c, src):
        size += len(chunk)
        if size > MAX_WHEEL:
            raise Unreachable(f"{c.wheel.filename}: larger than {MAX_WHEEL} bytes")
        yield chunk


def _chunks(c: Candidate, src: Source) -> Iterator[bytes]:
    if isinstance(src, Wheelhouse):
        # Never through a link: whoever can write a shared wheelhouse could otherwise name any
        # file the caller can read and learn its SHA-256 from the refusal that quotes it.
        try:
            fd = os.open(c.location, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            raise Unreachable(f"{c.wheel.filename}: {why}") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Unreachable(f"{c.wheel.filename}: not a regular file")
            while chunk := fh.read(1 << 20):
                yield chunk
        return
    if c.location.startswith("file:"):
        with open(unquote(urlsplit(c.location).path), "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
        return
    req = urllib.request.Request(c.location, headers={"User-Agent": "catalytic-hooks"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            while chunk := resp.read(1 << 20):
                yield chunk
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(_reason(getattr(exc, "reason", exc))) from exc


# -- locating recorded files (for a lock other tools install) -----------------------------------


@dataclass(frozen=True)
class Located:
    filename: str
    sha256: str  # "sha256:<hex>", one of the pin's recorded hashes
    url: str | None  # on an index
    path: str | None  # in a wheelhouse (absolute)
    index: str | None  # the index's URL


def locate(pin: Pin, sources: list[Source]) -> list[Located]:
    """Where the sources offer the bytes of `pin`'s recorded hashes, nothing downloaded: an
    index's advertised hash must be one of them (a file it does not hash is not listed), a
    wheelhouse file is hashed where it is. The first source offering a hash wins, as in a
    rebuild; sorted by file name."""
    found: dict[str, Located] = {}
    for src in sources:
        if src.down is not None:
            continue
        try:
            cands = src.candidates(pin.name) or []
        except Unreachable as exc:
            src.mark_down(str(exc))
            continue
        for c in cands:
            if not same_version(pin.version, c.wheel.version):
                continue
            if isinstance(src, Wheelhouse):
                try:
                    digest = _hash_in_place(c)[1]
                except Unreachable:
                    continue
            elif c.sha256 is not None:
                digest = "sha256:" + c.sha256
            else:
                continue
            if digest in pin.hashes and digest not in found:
                wheelhouse = isinstance(src, Wheelhouse)
                found[digest] = Located(
                    c.wheel.filename,
                    digest,
                    None if wheelhouse else c.location,
                    c.location if wheelhouse else None,
                    None if wheelhouse else src.location,
                )
    return sorted(found.values(), key=lambda f: (f.filename, f.sha256))
