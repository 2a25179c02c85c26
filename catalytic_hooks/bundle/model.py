"""Run bundles (docs/FORMATS.md §3): artifact names, roots, and where a bundle's bytes come from.

A bundle is read through a *source*: a directory on disk, or a directory inside a git commit's
tree (what pre-push verifies). Both never follow a symlink.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from catalytic_hooks.core.canonical import canonical_bytes, sha256_hex
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.lfs import MAX_POINTER, pointer_oid
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import DirFds, open_regular_at
from catalytic_hooks.fs.files import sha256_fd
from catalytic_hooks.fs.untrusted import read_beneath
from catalytic_hooks.git.history import children_at, entries_at
from catalytic_hooks.git.repo import Repo

TASK_SPEC = "TASK_SPEC.json"
STATUS = "STATUS.json"
OUTPUT_HASHES = "OUTPUT_HASHES.json"
PROOF = "PROOF.json"
IDENTITY = "VALIDATOR_IDENTITY.json"
PAYLOAD = "SIGNED_PAYLOAD.json"
SIGNATURE = "SIGNATURE.json"
ARTIFACTS = (TASK_SPEC, STATUS, OUTPUT_HASHES, PROOF, IDENTITY, PAYLOAD, SIGNATURE)
SIGNING_ARTIFACTS = (IDENTITY, PAYLOAD, SIGNATURE)
FORBIDDEN = ("logs", "tmp", "transcript.json")
STORE_DIR = "objects"
RECEIPTS = (
    "PRE_DIGEST.json",
    "POST_DIGEST.json",
    "PURITY_SCAN.json",
    "RESTORE_PROOF.json",
    "RESTORE_UNDO.json",
)
SIGNING_DOMAIN = b"CAT-DPT-SPECTRUM-04-v1:BUNDLE:"

HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
HEX128 = re.compile(r"^[0-9a-f]{128}\Z")
SHA256_REF = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def bundle_root(task_spec_raw: bytes, status: dict[str, Any], hashes: dict[str, str]) -> str:
    return sha256_hex(
        canonical_bytes(
            {
                "output_hashes": hashes,
                "status": status,
                "task_spec_hash": sha256_hex(task_spec_raw),
            }
        )
    )


def chain_root(bundle_roots: list[str], run_ids: list[str]) -> str:
    return sha256_hex(canonical_bytes({"bundle_roots": bundle_roots, "run_ids": run_ids}))


def signed_message(payload: dict[str, Any]) -> bytes:
    return SIGNING_DOMAIN + canonical_bytes(payload)


def store_path(sha_ref: str) -> str:
    hexd = sha_ref.removeprefix("sha256:")
    return f"{STORE_DIR}/sha256/{hexd[:2]}/{hexd[2:]}"


@dataclass(frozen=True)
class OutputRead:
    """What a source found for an output key: a regular file's SHA-256, or why not."""

    sha256: str | None
    problem: str | None = None
    # Read from the bundle's own content store (a mismatch there is a corrupt bundle), not from
    # the project (a mismatch there is an output edited after the run).
    in_store: bool = False


class BundleSource(Protocol):
    run_id: str
    label: str

    def entries(self) -> dict[str, str]:
        """Names directly in the run directory → "file" | "dir" | "symlink" | "other"."""
        ...

    def read(self, name: str) -> bytes: ...

    def output(self, key: str) -> OutputRead:
        """Hash the output `key` (content store first, then the project root)."""
        ...


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class DirSource:
    """A run directory on disk; outputs from its content store, else under `project_root`."""

    def __init__(self, run_dir: Path, project_root: Path):
        self.run_dir = run_dir
        self.project_root = project_root
        self.run_id = run_dir.name
        self.label = str(run_dir)
        self.hashes: dict[str, str] = {}  # set by the verifier once OUTPUT_HASHES is parsed
        # Directory fds per base, opened once each (O_NOFOLLOW, component by component): a
        # 20,000-output bundle otherwise walks every directory chain several times per file.
        self._dirs: dict[Path, DirFds] = {}
        self._missing: set[tuple[Path, str]] = set()  # directories found absent, once each
        # The verifier hashes large outputs on threads: a directory fd is valid only until the
        # next lookup (past `limit` directories a lookup closes them all), so a lookup and the
        # call that uses its fd are one step. Without it, 257 output directories made another
        # thread's open fail (EBADF), or land on a reused fd number.
        self._lock = threading.Lock()

    def open_at(self, base: Path, rel: str) -> int:
        """`open_beneath(base, rel)` through cached directory fds."""
        with self._lock:
            dfd, name = self.parent_at(base, rel)
            return open_regular_at(dfd, name)

    def lstat_at(self, base: Path, rel: str) -> os.stat_result:
        """`rel` below `base` lstat'ed through the same cached directory fds (no symlink
        followed on the way, none at the end)."""
        with self._lock:
            dfd, name = self.parent_at(base, rel)
            return os.lstat(name, dir_fd=dfd)

    def parent_at(self, base: Path, rel: str) -> tuple[int, str]:
        """(cached fd of the directory holding `rel` below `base`, its last component); the fd
        stays the cache's (never closed by the caller) and is valid until the next lookup
        (from threads, use `open_at` and `lstat_at`, which hold the lock across both)."""
        dirs = self._dirs.get(base)
        if dirs is None:
            rfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            dirs = self._dirs[base] = DirFds(rfd, create=False, limit=256)
        head, _, name = rel.rpartition("/")
        if not head:
            return dirs.root_fd, name
        cached = dirs.fds.get(head)  # an open directory fd (a path never opened is not there)
        if cached is not None:
            return cached, name
        parent = (base, head)
        if parent in self._missing:
            raise FileNotFoundError(rel)
        try:
            dfd = dirs.get(head.split("/"))
        except FileNotFoundError:
            self._missing.add(parent)
            raise
        return dfd, name

    def close(self) -> None:
        for dirs in self._dirs.values():
            dirs.close()
            os.close(dirs.root_fd)
        self._dirs.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def entries(self) -> dict[str, str]:
        try:
            with os.scandir(self.run_dir) as it:
                return {e.name: _kind(e.stat(follow_symlinks=False).st_mode) for e in it}
        except OSError as exc:
            raise CatalyticError(
                ErrorCode.ARTIFACT_MISSING,
                f"cannot read run directory {self.run_dir}: {exc.strerror}",
                artifact=str(self.run_dir),
            ) from exc

    def read(self, name: str) -> bytes:
        """An artifact's bytes through the safe reader: a FIFO, a device or a link where an
        artifact should be is refused before it is opened (OSError)."""
        return read_beneath(self.run_dir, name)

    def find(self, key: str) -> tuple[Path, str, int] | None:
        """(base, relative path, open fd) of the bytes for output `key`, or None when missing.
        Raises OSError for something that is there but is not a regular file."""
        expected = self.hashes.get(key)
        candidates = []
        if expected and SHA256_REF.match(expected):
            candidates.append((self.run_dir, store_path(expected)))
        candidates.append((self.project_root, key))
        for base, rel in candidates:
            try:
                return base, rel, self.open_at(base, rel)
            except FileNotFoundError:
                continue
        return None

    def locate(self, key: str) -> tuple[Path, str] | None:
        """(base, relative path) of the bytes for output `key`, or None when missing.
        Raises OSError for something that is there but is not a regular file."""
        found = self.find(key)
        if found is None:
            return None
        os.close(found[2])
        return found[0], found[1]

    def output(self, key: str) -> OutputRead:
        try:
            found = self.find(key)
            if found is None:
                return OutputRead(None, "missing")
            base, _, fd = found
        except OSError as exc:
            return OutputRead(None, f"not a regular file ({exc.strerror or exc})")
        try:
            if os.fstat(fd).st_size <= MAX_POINTER:
                # pread, capped: a file that grows after the fstat is never read whole here
                lfs = pointer_oid(os.pread(fd, MAX_POINTER + 1, 0))
                if lfs is not None and self.hashes.get(key) == "sha256:" + lfs:
                    return OutputRead(
                        None, "an LFS pointer: its content is not here (run `git lfs pull`)"
                    )
            return OutputRead(sha256_fd(fd), in_store=base == self.run_dir)
        finally:
            os.close(fd)


class GitSource:
    """A run directory inside a commit's tree; outputs from the same tree."""

    def __init__(self, repo: Repo, commit: str, run_path: str):
        self.repo = repo
        self.commit = commit
        self.run_path = run_path
        self.run_id = run_path.rsplit("/", 1)[-1]
        self.label = f"{commit[:10]}:{run_path}"
        self._listing: dict[str, tuple[str, str]] | None = None
        self.hashes: dict[str, str] = {}

    def _entries_raw(self) -> dict[str, tuple[str, str]]:
        if self._listing is None:
            self._listing = {
                name: (e.mode, e.oid)
                for name, e in children_at(self.repo, self.commit, self.run_path).items()
            }
        return self._listing

    def entries(self) -> dict[str, str]:
        kinds = {"100644": "file", "100755": "file", "040000": "dir", "120000": "symlink"}
        return {n: kinds.get(m, "other") for n, (m, _) in self._entries_raw().items()}

    def read(self, name: str) -> bytes:
        mode, oid = self._entries_raw()[name]
        if mode not in ("100644", "100755"):
            raise OSError(f"{name} is not a regular file")
        return self.repo.read_blob(oid)

    def output(self, key: str) -> OutputRead:
        expected = self.hashes.get(key)
        candidates = []
        if expected and SHA256_REF.match(expected):
            candidates.append(f"{self.run_path}/{store_path(expected)}")
        candidates.append(key)
        for path in candidates:
            entry = entries_at(self.repo, self.commit, [path]).get(path)
            if entry is None:
                continue
            mode, oid = entry
            if mode not in ("100644", "100755"):
                return OutputRead(None, "not a regular file")
            data = self.repo.read_blob(oid)
            # An LFS-tracked output is committed as a pointer, which names the SHA-256 of the
            # content: that is the output's hash, content present or not.
            lfs = pointer_oid(data) if path == key else None
            return OutputRead(lfs or hashlib.sha256(data).hexdigest(), in_store=path != key)
        return OutputRead(None, "missing")


def unsafe_key(key: str) -> str | None:
    """Why an output key may not be used (docs/FORMATS.md §0, plus: never git's own
    directory), or None."""
    problem = relpath_problem(key)
    if problem is None and has_git_component(key):
        return "names git's own directory (.git)"
    return problem


def project_root_for(run_dir: Path, explicit: Path | None) -> Path:
    """Where a bundle's outputs live: the explicit project root, else the top of the
    repository containing the run directory, else the current directory."""
    if explicit is not None:
        return explicit.resolve()
    repo = Repo.find(run_dir.parent if run_dir.parent.is_dir() else None)
    return repo.top if repo is not None else Path.cwd().resolve()


def run_id_problem(run_id: str, status: Any) -> str | None:
    """Why `run_id` (the run directory's name) cannot be this bundle's, or None: a bundle that
    records its run id (catalytic's do, in STATUS.json, under the signature) is known by that
    name only, so a signed run cannot be presented, filed or chronicled as another."""
    recorded = status.get("run_id") if isinstance(status, dict) else None
    if recorded is None or recorded == run_id:
        return None
    return f"the bundle records run id {recorded!r}, not {run_id!r}"
