"""Pulling a run from a registry, and `oci://` as a source for every consumer.

A reference resolves to the archive's manifest (fetched capped, its bytes checked against the
digest asked for, or the one the registry names for a tag), which must be our artifact type;
a tag pinned beside a digest must still name that digest. The one layer then comes from the
verified cache (cache.py) or streams into it, checked. Consumers get a private path to the
checked bytes (`pulled_archive`); the registry is storage only, and what the archive is worth is
decided by the consumer, with the caller's trust, exactly as for a file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.fs.files import write_sliced
from catalytic_hooks.registry import artifact, referrers
from catalytic_hooks.registry.artifact import ARCHIVE_TYPE, ATTESTATION_TYPE, Descriptor, Manifest
from catalytic_hooks.registry.cache import Cache
from catalytic_hooks.registry.client import MAX_MANIFEST, Client, shown
from catalytic_hooks.registry.reference import TAG, Reference, parse

if TYPE_CHECKING:  # `archive pull` needs neither: 45 ms of its start, trust's imports mostly
    from catalytic_hooks.archive.zipfmt import Limits
    from catalytic_hooks.bundle.trust import TrustPolicy

MAX_ARCHIVE = 4 * 1024**3 - 1  # format version 1: no ZIP64
MAX_ENVELOPE = 16 * 1024 * 1024
# Attestation referrers fetched per archive, in all. Anyone who can push can attach junk, so
# the search skips what it refuses and stops at the first that verifies; this bounds the work
# (a manifest and an envelope each) when junk is all there is to find.
MAX_REFERRERS = 256
# And the bytes fetching them may download in all, manifests and envelopes, refused ones too
# (an envelope is up to MAX_ENVELOPE): without it, 256 junk envelopes of 16 MiB listed first
# cost a verifier 4 GiB of downloads, whether they fail their digest or what follows.
MAX_REFERRER_BYTES = 256 * 1024 * 1024
# A verdict on one referrer: skipped, never the end of the search. Anything else (the registry
# unreachable, refusing access, answering 5xx) is the registry failing, and stops it.
_REFUSALS = (
    ErrorCode.REGISTRY_INVALID,
    ErrorCode.REGISTRY_DIGEST_MISMATCH,
    ErrorCode.REGISTRY_NOT_FOUND,
)
_FALLBACK = re.compile(r"^sha256-[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Options:
    """How to reach registries: `--registry-config`, `--insecure`, the cache's root."""

    config: Path | None = None
    insecure: bool = False
    cache_root: Path | None = None
    # Set from another thread to stop a download at its next step, as Ctrl-C stops one in
    # the main thread (`validate` pulls in worker threads, which no signal reaches).
    cancel: threading.Event | None = None

    def client(self, ref: Reference) -> Client:
        return Client(ref, config=self.config, insecure=self.insecure, cancel=self.cancel)

    def cache(self) -> Cache:
        return Cache(self.cache_root, cancel=self.cancel)


def resolve(client: Client, ref: Reference, expect: str = ARCHIVE_TYPE) -> Manifest:
    if ref.digest is not None:
        data, _, _ = client.get_manifest(ref.digest)
        artifact.check_bytes(data, ref.digest, "manifest")
        digest = ref.digest
        if ref.tag is not None:
            now = client.manifest_digest(ref.tag)
            if now != ref.digest:
                raise CatalyticError(
                    ErrorCode.REGISTRY_TAG_MOVED,
                    f"the tag {ref.tag} now names {shown(now or 'nothing')}, "
                    f"not the pinned {ref.digest}",
                    tag=ref.tag,
                    pinned=ref.digest,
                    now=now,
                )
    elif ref.tag is not None:
        data, _, named = client.get_manifest(ref.tag)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if named is not None and named != digest:
            raise CatalyticError(
                ErrorCode.REGISTRY_DIGEST_MISMATCH,
                f"the registry names the manifest of {ref.tag} {shown(named)}, "
                f"its bytes hash to {digest}",
                reason="DIGEST",
                digest=named,
                actual=digest,
            )
    else:
        raise CatalyticError(
            ErrorCode.USAGE, f"{ref} names a repository; give :TAG or @sha256:DIGEST"
        )
    return artifact.parse_manifest(data, digest, expect=expect, max_blob=MAX_ARCHIVE)


def fetch(client: Client, cache: Cache, digest: str, size: int) -> Path:
    """The checked blob, from the cache (checked again) or streamed into it."""
    found = cache.get(digest, size)
    if found is not None:
        return found
    return cache.store(client.get_blob(digest, size), digest, size)


def annotated_run_id(m: Manifest) -> str | None:
    """The run id the manifest's annotation claims (the registry's word, not the archive's),
    only when it has a tag's shape: anything else (a path, terminal escapes, a MiB of text)
    is never a file name nor shown."""
    run_id = m.annotations.get(artifact.A_RUN_ID, "")
    return run_id if TAG.match(run_id) else None


def archive_name(m: Manifest) -> str:
    stem = annotated_run_id(m) or m.layer.digest.split(":")[1][:16]
    return f"{stem}.catalytic.zip"


@contextlib.contextmanager
def pulled_archive(
    text: str, options: Options, *, attestations: bool = False
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(a private path to the checked archive, what was pulled) for `verify`, `restore
    bundle`, `replay` and `validate`; the path is removed afterwards. With `attestations`,
    `info["attached"]` is what `attached` found for the archive's manifest (for `verify
    --attested`, which pops it before reporting)."""
    ref = parse(text)
    client, cache = options.client(ref), options.cache()
    with contextlib.closing(client):
        m = resolve(client, ref)
        fetch(client, cache, m.layer.digest, m.layer.size)
        found = attached(client, cache, m) if attestations else None
        # Idle while the consumer works; referrers `found` fetches later connect anew.
        client.drop()
        with cache.view(m.layer.digest, m.layer.size, archive_name(m)) as path:
            info = _info(ref, m)
            if found is not None:
                info["attached"] = found
            yield path, info


def _info(ref: Reference, m: Manifest) -> dict[str, Any]:
    return {
        "reference": str(ref.with_digest(m.digest)),
        "digest": m.digest,
        "run_id": annotated_run_id(m),
        "archive": {"digest": m.layer.digest, "size": m.layer.size},
    }


def _write_new(src: Path, dest: Path) -> None:
    """Place checked bytes at `dest` (never overwritten): a hard link to the cache entry where
    the file system allows (its next read from the cache checks it again, so a later edit of
    `dest` only costs a new download), else a kernel copy. The link keeps the entry's mode,
    owner-only: widening it for `dest` would let others write the cache's inode. Not flushed:
    the file is the registry's bytes, fetched again at will, and every consumer verifies it."""
    try:
        os.link(src, dest)
        return
    except FileExistsError as exc:
        raise CatalyticError(
            ErrorCode.USAGE, f"{dest} exists; a pull never overwrites", path=str(dest)
        ) from exc
    except OSError:
        pass  # another file system, or links not allowed: copy
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise io_failure(f"write {dest}", dest, exc) from exc
    try:
        with open(src, "rb") as fh:
            _copy_all(fh.fileno(), fd, os.fstat(fh.fileno()).st_size)
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.link(tmp, dest)
    except FileExistsError as exc:
        raise CatalyticError(
            ErrorCode.USAGE, f"{dest} exists; a pull never overwrites", path=str(dest)
        ) from exc
    except OSError as exc:  # the disk full, or a directory this user may not write
        raise io_failure(f"write {dest}", dest, exc) from exc
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# copy_file_range(2) refuses these where the two files are on different file systems (EXDEV
# on most kernels), or where either one's file system cannot do it
_NO_RANGE_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _copy_all(src: int, dest: int, size: int) -> None:
    """`size` bytes from `src` to `dest`, from their current positions: by the kernel where
    it can copy between the two, else through one buffer. Fewer bytes than `size` (the source
    cut meanwhile) is an error, never a short file."""
    done, ranged = 0, True
    buf = memoryview(bytearray(1 << 20))
    while done < size:
        if ranged:
            try:
                n = os.copy_file_range(src, dest, min(size - done, 1 << 30))
            except OSError as exc:
                if exc.errno not in _NO_RANGE_COPY or done:
                    raise
                ranged = False
                continue
        else:
            n = os.readv(src, [buf[: min(len(buf), size - done)]])
            write_sliced(dest, buf[:n])
        if n == 0:
            raise OSError(errno.EIO, f"the cached blob ended after {done} of {size} bytes")
        done += n


def _place_all(plan: list[tuple[Path, Path]]) -> None:
    """Every (checked source, destination) placed, or none: all destinations are checked
    before the first is written, and if one is refused after all (created meanwhile, a full
    disk), those already placed are removed again, each only while it is still the file this
    pull made."""
    for _, dest in plan:
        if dest.exists() or dest.is_symlink():
            raise CatalyticError(
                ErrorCode.USAGE, f"{dest} exists; a pull never overwrites", path=str(dest)
            )
    placed: list[tuple[Path, os.stat_result]] = []
    try:
        for src, dest in plan:
            _write_new(src, dest)
            placed.append((dest, os.lstat(dest)))
    except BaseException:
        for dest, st in reversed(placed):
            with contextlib.suppress(OSError):
                now = os.lstat(dest)
                if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                    os.unlink(dest)
        raise


def pull(
    text: str, options: Options, output: Path | None, *, attestations: bool = True
) -> dict[str, Any]:
    ref = parse(text)
    client, cache = options.client(ref), options.cache()
    try:
        m = resolve(client, ref)
        out = output or Path.cwd() / archive_name(m)
        if out.exists() or out.is_symlink():
            raise CatalyticError(
                ErrorCode.USAGE, f"{out} exists; a pull never overwrites", path=str(out)
            )
        if not out.absolute().parent.is_dir():  # said now, not after a GiB has come down
            raise CatalyticError(
                ErrorCode.PATH_INVALID,
                f"{out.parent} is not a directory to pull into",
                path=str(out.parent),
            )
        blob = fetch(client, cache, m.layer.digest, m.layer.size)
        beside = _attestations(client, cache, m) if attestations else Beside([], [], 0)
    finally:
        client.close()
    stem = out.name.removesuffix(".zip").removesuffix(".catalytic")
    envelopes = beside.envelopes
    written, plan = [], [(blob, out)]
    for i, (path, digest, size) in enumerate(envelopes):
        name = f"{stem}.intoto.json" if len(envelopes) == 1 else f"{stem}.{i + 1}.intoto.json"
        dest = out.with_name(name)
        plan.append((path, dest))
        written.append({"file": str(dest), "digest": digest, "size": size})
    _place_all(plan)
    extra: dict[str, Any] = {"referrers_skipped": beside.skipped} if beside.skipped else {}
    if beside.unchecked:
        extra["referrers_unchecked"] = beside.unchecked
    if beside.malformed:
        extra["referrers_malformed"] = beside.malformed
    return {
        **_info(ref, m),
        "archive_file": str(out),
        "attestations": written,
        **extra,
        "bytes_downloaded": client.counters.bytes_down,
    }


@dataclass(frozen=True)
class Attached:
    """An attestation whose manifest was checked (digest, type, subject = the archive's
    manifest) and whose envelope is in the cache, checked."""

    digest: str  # the attestation's manifest
    envelope: Path
    layer: Descriptor


@dataclass
class Attachments:
    """The attestation referrers listed for an archive's manifest, fetched and checked one at
    a time as `search()` is iterated, so a verdict stops at the first that verifies."""

    via: str  # "referrers-api" or "fallback-tag"
    listed: list[Descriptor]  # ours, one per digest, in the registry's order
    fetch: Callable[[Descriptor, int], Attached]  # raises the refusal of one referrer
    downloaded: Callable[[], int]  # the client's bytes downloaded so far
    fetched: int = 0
    malformed: int = 0  # entries of the list that describe nothing, left out
    spent: int = 0  # bytes downloaded, refused referrers' included, or envelopes taken
    out_of_bytes: bool = False  # the next manifest or envelope would pass MAX_REFERRER_BYTES

    @property
    def unchecked(self) -> int:
        """Listed, never fetched: the search stopped (one verified, or a limit)."""
        return len(self.listed) - self.fetched

    @property
    def limit_reached(self) -> bool:
        return self.unchecked > 0 and (self.fetched == MAX_REFERRERS or self.out_of_bytes)

    def search(self) -> Iterator[Attached | CatalyticError]:
        """Each listed referrer checked, in order, at most MAX_REFERRERS fetched and
        MAX_REFERRER_BYTES downloaded in all: the attestation, or the refusal that skips it
        (its digest in `details["referrer"]`)."""
        while self.fetched < min(len(self.listed), MAX_REFERRERS):
            if self.spent >= MAX_REFERRER_BYTES:
                # checked before each fetch, manifests' bytes included: junk manifests listed
                # first would otherwise cost MAX_MANIFEST each with nothing left to take
                self.out_of_bytes = True
                return
            d = self.listed[self.fetched]
            before = self.downloaded()
            try:
                found = self.fetch(d, MAX_REFERRER_BYTES - self.spent)
            except _OutOfBytes:
                self.spent += self.downloaded() - before
                self.out_of_bytes = True
                return
            except CatalyticError as exc:
                self.fetched += 1
                self.spent += self.downloaded() - before
                if exc.code not in _REFUSALS:
                    raise  # the registry itself failed: not a verdict on this referrer
                exc.details.setdefault("referrer", d.digest)
                yield exc
                continue
            self.fetched += 1
            # an envelope the cache held counts too: what the search may check, not only fetch
            self.spent += max(self.downloaded() - before, found.layer.size)
            yield found


class _OutOfBytes(Exception):
    """The next manifest or envelope would pass what the search may still download."""


def attached(client: Client, cache: Cache, m: Manifest) -> Attachments:
    """The attestations listed for this archive's manifest (OCI 1.1 referrers API where the
    registry has it, else the fallback tag), each to be checked as the archive is: its
    manifest's digest, its type, its subject, its layer's digest and size. Other artifact types
    (an SBOM, a signature) are not ours to judge and are left out; a digest listed twice is
    one referrer."""
    found = referrers.listed(client, m.digest)
    ours = {d.digest: d for d in found.descriptors if d.artifact_type in (None, ATTESTATION_TYPE)}

    def one(d: Descriptor, room: int) -> Attached:
        try:
            data, _, _ = client.get_manifest(d.digest, cap=min(MAX_MANIFEST, room))
        except CatalyticError as exc:
            if room < MAX_MANIFEST and exc.details.get("reason") == "TOO_LARGE":
                raise _OutOfBytes from exc  # the limit on work, not a verdict on it
            raise
        artifact.check_bytes(data, d.digest, "attestation manifest")
        am = artifact.parse_manifest(data, d.digest, expect=ATTESTATION_TYPE, max_blob=MAX_ENVELOPE)
        if am.subject is None or am.subject.digest != m.digest:
            raise artifact.invalid(
                "SUBJECT",
                f"the referrer {d.digest} is not about the archive's manifest {m.digest}",
            )
        if am.layer.size > room - len(data):
            raise _OutOfBytes
        return Attached(d.digest, fetch(client, cache, am.layer.digest, am.layer.size), am.layer)

    return Attachments(
        found.via,
        list(ours.values()),
        one,
        lambda: client.counters.bytes_down,
        malformed=found.malformed,
    )


def envelope_bytes(a: Attached) -> bytes:
    """The cached envelope read once and checked again on the very bytes returned."""
    with open(a.envelope, "rb") as fh:
        raw = fh.read(MAX_ENVELOPE + 1)
    artifact.check_bytes(raw, a.layer.digest, "attestation envelope")
    return raw


def verify_attached(
    path: Path, found: Attachments, trust: TrustPolicy, limits: Limits
) -> list[dict[str, Any]]:
    """One row per attestation attached to the archive at `path` that was judged, up to the
    first that verifies: its DSSE signature checked against the bundle's verified key, that key
    against the caller's `trust` (never anything the registry says), and its statement against
    the statement rebuilt from the bundle in this archive (subjects: the run's outputs and
    commit; predicate: the bundle root and signature). A refused one is a row and the search
    goes on."""
    from catalytic_hooks.archive.runs import archived_run
    from catalytic_hooks.bundle.attest import verify_envelope
    from catalytic_hooks.core.canonical import loads_strict

    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        located: tuple[Path, Path] | None = None
        for item in found.search():
            if isinstance(item, CatalyticError):
                rows.append(_refused_row(str(item.details.get("referrer")), found.via, item))
                continue
            try:
                doc = loads_strict(envelope_bytes(item), what="the attestation")
                if located is None:
                    located = archived_run(stack, path, lambda: limits)
                if located is None:
                    raise CatalyticError(ErrorCode.USAGE, f"{path} is not an archive file")
                info = verify_envelope(doc, located[0], located[1], trust)
            except CatalyticError as exc:
                rows.append(_refused_row(item.digest, found.via, exc))
                continue
            rows.append(
                {
                    "digest": item.digest,
                    "via": found.via,
                    "valid": True,
                    "code": SuccessCode.PASS,
                    **info,
                }
            )
            break  # the verdict needs one: the rest is neither fetched nor judged
    return rows


def _refused_row(digest: str, via: str, exc: CatalyticError) -> dict[str, Any]:
    return {
        "digest": digest,
        "via": via,
        "valid": False,
        "code": exc.code.value,
        "message": exc.message,
    }


@dataclass(frozen=True)
class Beside:
    """What `pull` found attached: the attestations it writes beside the archive, the
    referrers it refused (skipped, never the end of the pull), and how many it never fetched
    (past MAX_REFERRERS)."""

    envelopes: list[tuple[Path, str, int]]  # (cached envelope, its digest, its size)
    skipped: list[dict[str, Any]]
    unchecked: int
    malformed: int = 0


def _attestations(client: Client, cache: Cache, m: Manifest) -> Beside:
    found = attached(client, cache, m)
    envelopes, skipped = [], []
    for item in found.search():
        if isinstance(item, CatalyticError):
            skipped.append(
                {
                    "digest": item.details.get("referrer"),
                    "code": item.code.value,
                    "reason": item.details.get("reason"),
                }
            )
            continue
        envelopes.append((item.envelope, item.layer.digest, item.layer.size))
    return Beside(envelopes, skipped, found.unchecked, found.malformed)


@dataclass(frozen=True)
class RepositoryRuns:
    runs: list[tuple[str, str]]  # (tag, reference), sorted by tag
    tags_ignored: int  # strings the registry listed that are not OCI tags


def repository_tags(text: str, options: Options) -> RepositoryRuns:
    """(tag, reference) of every run in a repository: its tags except the fallback tags of
    referrers (`sha256-<hex>`), and how many listed strings were not tags at all (dropped by
    the client). Nothing is pulled; `validate` pulls only what it picks."""
    ref = parse(text)
    client = options.client(ref)
    try:
        listed = client.tags()
    finally:
        client.close()
    runs = [(t, str(ref.with_tag(t))) for t in sorted(set(listed.tags)) if not _FALLBACK.match(t)]
    return RepositoryRuns(runs, listed.ignored)
