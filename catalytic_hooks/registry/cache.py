"""The verified cache: blobs by digest, never a byte served that was not checked.

Layout (`$XDG_CACHE_HOME/catalytic/oci`, default `~/.cache/catalytic/oci`):
`blobs/sha256/<hex>` holds bytes whose SHA-256 and size were checked while they streamed in;
`tmp/` holds downloads in progress (`<hex>.<random>.part`), renamed into `blobs/` only after the
check, so an interrupted or refused pull leaves nothing a reader could take. Reading checks again
(the digest of the file as it is now): a corrupted entry is removed and fetched anew. Views
(`view`) are hard links in a private directory, checked after linking, so what a consumer opens
is the inode that was checked. `pushes/` holds an empty file per run pushed to a repository
(`note_push`), which only ever makes a later push hash first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure
from catalytic_hooks.fs.files import sha256_fd, write_sliced
from catalytic_hooks.fs.usercache import cache_base, private_dirs
from catalytic_hooks.registry.client import Response
from catalytic_hooks.registry.reference import DIGEST

STALE_PART = 24 * 3600  # an abandoned download older than this is removed
STALE_PUSH = 90 * 24 * 3600  # a note of a push (`note_push`) not renewed since is removed
BUFFER = 1024 * 1024  # the buffer a download that is not spliced is read through


class _HashFile:
    """SHA-256 of a download the kernel moves into its file (`Response.move_into`), computed
    in a second thread from the file's page cache as the bytes land. The file is this pull's
    own, in the cache's owner-only tmp/, so what is hashed is what will be renamed."""

    # How far the landing runs ahead before the thread is told (a queue put and get apart), and
    # the piece read back and hashed at a time: small enough to stay in the core's L2 cache,
    # where SHA-256 runs at its full speed. Reading through this buffer beat mapping the file
    # (16 MiB read-only windows): a mapped page cache costs the hash a TLB miss per 4 KiB page,
    # more than the kernel's copy of the piece (bench/RESULTS.md, "Hashed from a read").
    STEP = 4 * 1024 * 1024
    PIECE = 256 * 1024

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        # Within the last step every landing is passed on, so that little is left to hash
        # once the last byte is in.
        self._tail = size - self.STEP
        self._h = hashlib.sha256()
        self._marks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._told = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="catalytic-hash", daemon=True)
        self._thread.start()

    def landed(self, upto: int) -> None:
        if upto - self._told >= self.STEP or upto > self._tail:
            self._told = upto
            self._marks.put(upto)

    def _work(self) -> None:
        hashed = 0
        piece = memoryview(bytearray(self.PIECE))
        try:
            while (upto := self._marks.get()) is not None:
                while hashed < upto:
                    n = os.preadv(self._fd, [piece[: min(self.PIECE, upto - hashed)]], hashed)
                    if not n:
                        # the file is ours alone and only grows: shorter than what landed
                        # means it was cut behind our back
                        raise _mismatch(
                            f"the download was cut to {hashed} bytes while it was checked",
                            "SIZE",
                        )
                    self._h.update(piece[:n])
                    hashed += n
        except BaseException as exc:  # re-raised by finish(), in the caller's thread
            self._error = exc

    def abandon(self) -> None:
        """Stop the thread, once it has hashed what it was told of, and forget the digest."""
        self._marks.put(None)
        self._thread.join()

    def finish(self, upto: int) -> str:
        """The hex digest of the file's first `upto` bytes, once the thread has hashed them."""
        if upto > self._told:
            self._marks.put(upto)
        self._marks.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._h.hexdigest()


def _receive(
    resp: Response, fd: int, digest: str, size: int, cancel: threading.Event | None = None
) -> tuple[int, str]:
    """(bytes received, their SHA-256) of the body written to `fd`: moved by the kernel where
    the answer allows (`Response.move_into`), else read into a buffer and written; either way
    hashed from the file as it lands. `cancel`, once set, stops it at the next landing as an
    interrupt would (KeyboardInterrupt: the caller's cleanup is the same)."""
    hashed = _HashFile(fd, size)
    landed = hashed.landed
    if cancel is not None:

        def landed(upto: int) -> None:
            if cancel.is_set():
                raise KeyboardInterrupt
            hashed.landed(upto)

    try:
        got = resp.move_into(fd, size, landed)
        if got is None:
            got = _read_into(resp, fd, digest, size, landed)
    except BaseException:
        hashed.abandon()
        raise
    return got, hashed.finish(got)


def _read_into(
    resp: Response, fd: int, digest: str, size: int, landed: Callable[[int], None]
) -> int:
    """The body read through one reused buffer (an answer over TLS, chunked, or of another
    declared length), never a byte past `size` written."""
    buf, got = memoryview(bytearray(BUFFER)), 0
    while n := resp.readinto(buf[: min(BUFFER, size + 1 - got)]):
        got += n
        if got > size:
            raise _mismatch(
                f"the registry sent more than the {size} bytes the descriptor of {digest} declares",
                "SIZE",
                digest=digest,
            )
        write_sliced(fd, buf[:n])
        landed(got)
    return got


def cache_root() -> Path:
    return cache_base() / "catalytic" / "oci"


def _mismatch(message: str, reason: str, **details: object) -> CatalyticError:
    return CatalyticError(ErrorCode.REGISTRY_DIGEST_MISMATCH, message, reason=reason, **details)


class Cache:
    def __init__(self, root: Path | None = None, cancel: threading.Event | None = None) -> None:
        self.root = root or cache_root()
        self._cancel = cancel
        # Digests whose entry this process found sound: a descriptor naming one with another
        # size is refused without hashing the entry again.
        self._sound: set[str] = set()
        self.blobs = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"
        self.pushes = self.root / "pushes"
        # The directories that are ours, under the one they live in: from `catalytic/` down
        # for the default root (shared with the environments' cache), else the root down.
        if root is None:
            self._base, top = cache_base(), ["catalytic", "catalytic/oci"]
        else:
            self._base, top = self.root.parent, [self.root.name]
        self._ours = [
            *top,
            *(f"{top[-1]}/{d}" for d in ("blobs", "blobs/sha256", "tmp", "pushes")),
        ]
        self._ready = False

    def _ensure(self) -> None:
        """Every directory of the cache this user's own and no one else's to write
        (fs.usercache), before anything in it is first read, written or removed: a cache
        another user could write could swap a checked entry, or the private view of one,
        between the check and its use. Once for this cache's life (a command's)."""
        if self._ready:
            return
        private_dirs(self._base, self._ours)
        self._sweep()
        self._ready = True

    def _sweep(self) -> None:
        now = time.time()
        for where, age in ((self.tmp, STALE_PART), (self.pushes, STALE_PUSH)):
            with contextlib.suppress(OSError):
                for entry in os.scandir(where):
                    with contextlib.suppress(OSError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > age:
                            if entry.is_dir(follow_symlinks=False):
                                shutil.rmtree(entry.path, ignore_errors=True)
                            else:
                                os.unlink(entry.path)

    def note_push(self, repository: str, run_id: str) -> bool:
        """Note that a push of `run_id` to `repository` (HOST/NAME) starts; True when none was
        noted before (or the note was older than STALE_PUSH). A note is an empty file named by
        the hash of the two: it only ever makes a later push hash its archive first."""
        self._ensure()
        key = hashlib.sha256(f"{repository}\n{run_id}".encode()).hexdigest()
        try:
            fd = os.open(self.pushes / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            os.utime(self.pushes / key, follow_symlinks=False)
            return False
        os.close(fd)
        return True

    def path(self, digest: str) -> Path:
        if not DIGEST.match(digest):
            raise CatalyticError(
                ErrorCode.REGISTRY_INVALID,
                f"{digest!r} is not a sha256 digest",
                reason="DESCRIPTOR",
            )
        return self.blobs / digest.split(":", 1)[1]

    def check(self, path: Path, digest: str, size: int) -> bool:
        """Whether the file at `path` is now exactly `size` bytes hashing to `digest`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                return False
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return False  # a file another user owns or may write is never served
            return f"sha256:{sha256_fd(fd)}" == digest
        finally:
            os.close(fd)

    def get(self, digest: str, size: int) -> Path | None:
        """The cached blob, checked now; a corrupted entry is removed (and so fetched again)."""
        self._ensure()  # before anything in it is read, or removed
        path = self.path(digest)
        if not os.path.lexists(path):
            return None
        if self.check(path, digest, size):
            self._sound.add(digest)
            return path
        with contextlib.suppress(OSError):
            held = os.lstat(path).st_size
            # Hashed at most once per digest: 256 junk referrers naming a 4 GiB archive must
            # not cost 256 hashes of it.
            if held != size and (digest in self._sound or self.check(path, digest, held)):
                self._sound.add(digest)
                # The entry is sound and the descriptor lies about its size (a junk referrer
                # naming the archive's blob): bytes that were checked are never removed on the
                # word of a registry, which would take them from under the pull using them.
                raise _mismatch(
                    f"a descriptor declares {size} bytes for {digest}, whose bytes are {held}",
                    "SIZE",
                    digest=digest,
                )
            os.unlink(path)
        return None

    def store(self, resp: Response, digest: str, size: int) -> Path:
        """Stream a registry answer into the cache, checking digest and size on the raw bytes
        as they arrive; only bytes that passed are ever renamed into `blobs/`."""
        self._ensure()
        final = self.path(digest)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{final.name}.", suffix=".part", dir=self.tmp)
        except OSError as exc:
            resp.close()
            raise io_failure(f"write into the registry cache {self.root}", self.tmp, exc) from exc
        try:
            try:
                got, hexdigest = _receive(resp, fd, digest, size, self._cancel)
            except OSError as exc:  # the transfer's own become REGISTRY_*: this is the disk's
                doing = f"write {digest} into the registry cache {self.root}"
                raise io_failure(doing, self.tmp, exc) from exc
            finally:
                resp.close()
            if got != size:
                raise _mismatch(
                    f"the registry sent {got} of the {size} bytes of {digest} (a truncated body)",
                    "TRUNCATED",
                    digest=digest,
                )
            actual = f"sha256:{hexdigest}"
            if actual != digest:
                raise _mismatch(
                    f"the registry's bytes for {digest} hash to {actual}: the "
                    "stored blob was changed or damaged in transit; nothing was "
                    "cached",
                    "DIGEST",
                    digest=digest,
                    actual=actual,
                )
            # No fsync: an entry that a crash tore or emptied fails the check on its next read
            # and is fetched again, so a pull pays for no flush of a GiB (curl does not either).
            os.close(fd)
            fd = -1
            try:
                os.replace(tmp, final)
            except OSError as exc:  # a directory where the entry goes, a read-only blobs/
                raise io_failure(f"place {digest} in the registry cache", final, exc) from exc
            self._sound.add(digest)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return final

    @contextlib.contextmanager
    def view(self, digest: str, size: int, name: str) -> Iterator[Path]:
        """A private path named `name` for a cached blob, checked after it was linked, removed
        afterwards."""
        self._ensure()
        src = self.path(digest)
        try:
            d = Path(tempfile.mkdtemp(prefix="view-", dir=self.tmp))
        except OSError as exc:
            raise io_failure(
                f"make a view in the registry cache {self.root}", self.tmp, exc
            ) from exc
        try:
            dest = d / name
            try:
                os.link(src, dest)
            except OSError:
                try:
                    shutil.copyfile(src, dest, follow_symlinks=False)
                except OSError as exc:
                    raise io_failure(f"make a view of {digest}", dest, exc) from exc
            if not self.check(dest, digest, size):
                with contextlib.suppress(OSError):
                    os.unlink(src)
                raise _mismatch(
                    f"the cached blob {digest} changed on disk; pull again", "CACHE", digest=digest
                )
            yield dest
        finally:
            shutil.rmtree(d, ignore_errors=True)
