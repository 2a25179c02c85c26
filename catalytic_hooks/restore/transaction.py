"""The transaction under a SPECTRUM-06 restore: lock, staging, journal, placement, rollback
and crash recovery.

Placement uses link(2) from the staging directory, which fails instead of replacing an existing
target; staged files keep their inode until the commit point, so recovery after a crash removes a
target only if it is the very inode this attempt staged. Every write goes through directory file
descriptors opened with O_NOFOLLOW, so a symlink planted under the root can never redirect it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.core.workers import worker_count
from catalytic_hooks.fs.dirfd import (
    DIR_FLAGS,
    DirFds,
    lstat_at,
    open_beneath,
    open_dir_chain,
    open_regular_at,
    remove_tree_at,
)
from catalytic_hooks.fs.durable import have_syncfs
from catalytic_hooks.fs.files import CHUNK, read_fd, sha256_fd, write_all

MANIFEST = "RESTORE_MANIFEST.json"
REPORT = "RESTORE_REPORT.json"
STAGING_PREFIX = ".spectrum06_staging_"
JOURNAL_PREFIX = ".spectrum06_journal_"


def fail(
    code: ErrorCode, phase: str, message: str, reason: str | None = None, **details: Any
) -> CatalyticError:
    extra = {"phase": phase, **details}
    if reason is not None:
        extra["reason"] = reason
    return CatalyticError(code, message, **extra)


@dataclass(frozen=True)
class PlanEntry:
    key: str
    expected: str  # "sha256:<hex>"
    source_base: Path
    source_rel: str
    size: int


@dataclass
class Plan:
    root: Path  # the result root
    entries: list[PlanEntry]
    bundle_root: str
    chain_root: str | None = None
    new_dirs: list[str] = field(default_factory=list)  # directories below root to be created
    # Opens a source (base, relative path) like open_beneath; a bundle's source passes one
    # that keeps its directory fds (thousands of outputs in a few directories).
    opener: Callable[[Path, str], int] = open_beneath

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass
class Callbacks:
    """What a caller is told at a restore's phases: the final plan and the copy's progress (the
    command's progress bar), and the test seams for fault injection (a source changing after
    verification, a directory swapped for a symlink between staging and placement); each is
    optional. Not git hooks."""

    after_plan: Callable[[Plan], None] | None = None
    after_stage: Callable[[Plan], None] | None = None
    after_place: Callable[[Plan], None] | None = None
    progress: Callable[[int, int], None] | None = None  # (files done, bytes done)
    planned: Callable[[Plan], None] | None = None  # the final plan, before staging starts


def utf8_key(p: str) -> bytes:
    return p.encode("utf-8", "surrogateescape")


# -- PREFLIGHT --------------------------------------------------------------------------------


def check_target(root: Path) -> None:
    if not root.is_absolute():
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"restore root {root} is not an absolute path",
            "NOT_ABSOLUTE",
        )
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"restore root {root} does not exist",
            "MISSING",
        ) from exc
    if stat.S_ISLNK(st.st_mode):
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"restore root {root} is a symlink",
            "SYMLINK",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"restore root {root} is not a directory",
            "NOT_DIRECTORY",
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"restore root {root} is not writable",
            "NOT_WRITABLE",
        )


@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[int]:
    """An exclusive lock on the restore root directory itself (no lock file is left behind)."""
    fd = os.open(root, DIR_FLAGS)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise fail(
                ErrorCode.RESTORE_LOCKED,
                "EXECUTE",
                f"another restore into {root} is in progress",
                "LOCKED",
            ) from exc
        yield fd
    finally:
        os.close(fd)


def write_journal(rfd: int, name: str, doc: dict[str, Any]) -> None:
    tmp = name + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=rfd)
    try:
        write_all(fd, canonical_bytes(doc))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=rfd, dst_dir_fd=rfd)
    os.fsync(rfd)


def _copy_hash(src_fd: int, dst_fd: int) -> tuple[str, int]:
    h = hashlib.sha256()
    total = 0
    while chunk := os.read(src_fd, CHUNK):
        h.update(chunk)
        write_all(dst_fd, chunk)
        total += len(chunk)
    return "sha256:" + h.hexdigest(), total


def _hash_at(dfd: int, name: str) -> str:
    fd = open_regular_at(dfd, name)
    try:
        return "sha256:" + sha256_fd(fd)
    finally:
        os.close(fd)


def _open_source(plan: Plan, e: PlanEntry) -> int:
    try:
        return plan.opener(e.source_base, e.source_rel)
    except OSError as exc:
        raise fail(
            ErrorCode.SOURCE_MISSING,
            "EXECUTE",
            f"source of {e.key} vanished or is not a regular file",
            "SOURCE_CHANGED",
            path=e.key,
        ) from exc


def _split(key: str) -> tuple[list[str], str]:
    parts = key.split("/")
    return parts[:-1], parts[-1]


def stage(rfd: int, staging: str, plan: Plan, callbacks: Callbacks) -> None:
    """Copy every source into the staging directory, hashing while copying (one read). Raises
    COPY_INTEGRITY_FAILED when a staged copy does not match. Durability comes afterwards from
    one filesystem barrier (`durable`)."""
    sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
    done_files = done_bytes = 0
    try:
        with DirFds(sfd, create=True) as dirs:
            for e in plan.entries:
                parents, name = _split(e.key)
                dfd = dirs.get(parents)
                src = _open_source(plan, e)
                try:
                    # The umask decides the mode: a source's mode bits (executable, setuid) are
                    # unsigned metadata, so nothing of them is copied.
                    out = os.open(
                        name,
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o666,
                        dir_fd=dfd,
                    )
                    try:
                        actual, size = _copy_hash(src, out)
                        if not have_syncfs():
                            os.fsync(out)
                    finally:
                        os.close(out)
                finally:
                    os.close(src)
                if actual != e.expected:
                    raise fail(
                        ErrorCode.COPY_INTEGRITY_FAILED,
                        "EXECUTE",
                        f"staged copy of {e.key} does not match its hash",
                        path=e.key,
                        expected=e.expected,
                        actual=actual,
                    )
                done_files += 1
                done_bytes += size
                if callbacks.progress is not None:
                    callbacks.progress(done_files, done_bytes)
            if not have_syncfs():
                for fd in dirs.fds.values():
                    os.fsync(fd)
    finally:
        os.close(sfd)


def place(rfd: int, staging: str, keys: list[str], created_dirs: list[str]) -> None:
    """Hard-link each staged file into place; link(2) never replaces an existing target."""
    sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
    try:
        with DirFds(sfd, create=False) as src_dirs, DirFds(rfd, create=False) as dst_dirs:
            for key in keys:
                parents, name = _split(key)
                try:
                    for i in range(len(parents)):
                        if "/".join(parents[: i + 1]) in dst_dirs.fds:
                            continue
                        try:
                            os.mkdir(parents[i], 0o777, dir_fd=dst_dirs.get(parents[:i]))
                            created_dirs.append("/".join(parents[: i + 1]))
                        except FileExistsError:
                            pass
                    dst_dir = dst_dirs.get(parents)  # ELOOP/ENOTDIR on a planted symlink
                except OSError as exc:
                    raise fail(
                        ErrorCode.PATH_ESCAPE_DETECTED,
                        "EXECUTE",
                        f"a directory on the "
                        f"path of {key} was replaced during the restore "
                        f"({exc.strerror})",
                        "SYMLINK_ESCAPE",
                        path=key,
                    ) from exc
                try:
                    os.link(
                        name,
                        name,
                        src_dir_fd=src_dirs.get(parents),
                        dst_dir_fd=dst_dir,
                        follow_symlinks=False,
                    )
                except FileExistsError as exc:
                    raise fail(
                        ErrorCode.TARGET_EXISTS,
                        "EXECUTE",
                        f"{key} appeared in the "
                        "restore root during the restore; nothing was overwritten",
                        "RACE",
                        path=key,
                    ) from exc
                if not have_syncfs():
                    os.fsync(dst_dir)
    finally:
        os.close(sfd)


def _same_inode(rfd: int, staging: str, key: str) -> bool:
    parents, name = _split(key)
    try:
        a = open_dir_chain(rfd, [staging, *parents], create=False)
    except OSError:
        return False
    try:
        b = open_dir_chain(rfd, parents, create=False)
    except OSError:
        os.close(a)
        return False
    try:
        sa, sb = lstat_at(a, name), lstat_at(b, name)
        return (
            sa is not None and sb is not None and (sa.st_ino, sa.st_dev) == (sb.st_ino, sb.st_dev)
        )
    finally:
        os.close(a)
        os.close(b)


def rollback(rfd: int, journal: dict[str, Any]) -> None:
    """Undo an uncommitted attempt: remove only the targets that are this attempt's own staged
    inodes, then the directories it created (if empty), the staging directory and the journal."""
    staging = journal["staging"]
    for key in journal["placed"]:
        if _same_inode(rfd, staging, key):
            parents, name = _split(key)
            dfd = open_dir_chain(rfd, parents, create=False)
            try:
                os.unlink(name, dir_fd=dfd)
            finally:
                os.close(dfd)
    for d in sorted(journal["dirs"], key=lambda p: p.count("/"), reverse=True):
        parents, name = _split(d)
        try:
            dfd = open_dir_chain(rfd, parents, create=False)
        except OSError:
            continue
        try:
            os.rmdir(name, dir_fd=dfd)
        except OSError:
            pass  # not empty (someone else's file) or already gone: leave it
        finally:
            os.close(dfd)
    remove_tree_at(rfd, staging)


_TAG = re.compile(r"[0-9a-f]{32}\Z")


def journal_tag(name: str, prefix: str) -> str | None:
    """The attempt tag of a journal name this tool generates (`<prefix><32 hex>.json`)."""
    if not (name.startswith(prefix) and name.endswith(".json")):
        return None
    tag = name[len(prefix) : -len(".json")]
    return tag if _TAG.match(tag) else None


def _safe_keys(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, str) and relpath_problem(v) is None and not has_git_component(v)
        for v in values
    )


def journal_problem(name: str, journal: Any) -> str | None:
    """Why a journal found in a restore root is not one of this tool's, or None. A journal is
    bookkeeping read from the target, so it is hostile until it proves it belongs: a generated
    name, its own staging directory (same tag, one component), safe relative keys only."""
    tag = journal_tag(name, JOURNAL_PREFIX)
    if tag is None:
        return "not a name this tool generates"
    if not isinstance(journal, dict):
        return "not a journal"
    if journal.get("staging") != STAGING_PREFIX + tag:
        return "its staging directory is not its own"
    if not _safe_keys(journal.get("placed")) or not _safe_keys(journal.get("dirs")):
        return "it names paths that are not safe relative paths"
    return None


def recover_journal(rfd: int, name: str, report: dict[str, Any]) -> None:
    try:
        fd = open_regular_at(rfd, name)
        try:
            data = read_fd(fd, 1 << 26)
        finally:
            os.close(fd)
        journal: Any = loads_strict(data, what=name)
    except (OSError, CatalyticError):
        journal = None
    problem = journal_problem(name, journal)
    if problem is not None:
        report["refused"].append({"name": name, "reason": problem})
        return  # not ours: reported and left alone
    if journal.get("committed"):
        remove_tree_at(rfd, journal["staging"])
        report["completed"].append(journal.get("bundle_root"))
    else:
        rollback(rfd, journal)
        report["rolled_back"].append(journal.get("bundle_root"))
    os.unlink(name, dir_fd=rfd)
    os.fsync(rfd)


def new_attempt_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex
    return STAGING_PREFIX + tag, JOURNAL_PREFIX + tag + ".json"


def verify_targets(rfd: int, plan: Plan) -> None:
    """VERIFY: re-hash every target through directory fds, never following links (on all
    cores; the first mismatch in plan order is reported)."""
    from concurrent.futures import ThreadPoolExecutor

    with DirFds(rfd, create=False) as dirs:
        work = []
        for e in plan.entries:
            parents, name = _split(e.key)
            try:
                work.append((e, dirs.get(parents), name))
            except OSError as exc:
                raise fail(
                    ErrorCode.RESTORE_VERIFICATION_FAILED,
                    "VERIFY",
                    f"restored {e.key} is unreachable ({exc.strerror})",
                    path=e.key,
                ) from exc

        def one(item: tuple[PlanEntry, int, str]) -> str:
            try:
                return _hash_at(item[1], item[2])
            except OSError as exc:
                return f"unreadable ({exc.strerror or exc})"

        if plan.total_bytes >= 64 * 1024 * len(work):  # threads pay off on large files only
            with ThreadPoolExecutor(worker_count(2)) as pool:
                actuals = list(pool.map(one, work))
        else:
            actuals = [one(w) for w in work]
    for (e, _, _), actual in zip(work, actuals, strict=True):
        if actual != e.expected:
            raise fail(
                ErrorCode.RESTORE_VERIFICATION_FAILED,
                "VERIFY",
                f"restored {e.key} does not match its hash",
                path=e.key,
                expected=e.expected,
                actual=actual,
            )
