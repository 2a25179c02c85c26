"""SPECTRUM-06 restore (FORMATS.md §5), transactional and crash-safe (DESIGN.md §6).

Order: PREFLIGHT (eligibility, target, path safety) → PLAN (sources, reject-if-exists) →
EXECUTE (lock, recover leftovers, stage with copy+hash in one pass, journal, place) → VERIFY
(re-hash every target) → result artifacts → commit point → cleanup.

Placement uses link(2) from the staging directory, which fails instead of replacing an existing
target; staged files keep their inode until the commit point, so recovery after a crash removes a
target only if it is the very inode this attempt staged. Every write goes through directory file
descriptors opened with O_NOFOLLOW, so a symlink planted under the root can never redirect it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import canonical_bytes, loads_strict
from .errors import CatalyticError, ErrorCode
from .fsio import (
    DIR_FLAGS,
    HAVE_SYNCFS,
    DirFds,
    open_dir_chain,
    read_fd,
    sync_filesystem,
    write_all,
)
from .paths import relpath_problem

MANIFEST = "RESTORE_MANIFEST.json"
REPORT = "RESTORE_REPORT.json"
STAGING_PREFIX = ".spectrum06_staging_"
JOURNAL_PREFIX = ".spectrum06_journal_"
CHAIN_PREFIX = ".spectrum06_chain_"
_CHUNK = 1 << 20


def fail(code: ErrorCode, phase: str, message: str, reason: str | None = None,
         **details: Any) -> CatalyticError:
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
    executable: bool


@dataclass
class Plan:
    root: Path  # the result root
    entries: list[PlanEntry]
    bundle_root: str
    chain_root: str | None = None
    new_dirs: list[str] = field(default_factory=list)  # directories below root to be created

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass
class Hooks:
    """Test seams for fault injection (a source changing after verification, a directory
    swapped for a symlink between staging and placement); no-ops in normal use."""

    after_plan: Callable[[Plan], None] | None = None
    after_stage: Callable[[Plan], None] | None = None
    after_place: Callable[[Plan], None] | None = None
    progress: Callable[[int, int], None] | None = None  # (files done, bytes done)


def utf8_key(p: str) -> bytes:
    return p.encode("utf-8", "surrogateescape")


# -- PREFLIGHT --------------------------------------------------------------------------------

def check_target(root: Path) -> None:
    if not root.is_absolute():
        raise fail(ErrorCode.RESTORE_TARGET_INVALID, "PREFLIGHT",
                   f"restore root {root} is not an absolute path", "NOT_ABSOLUTE")
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise fail(ErrorCode.RESTORE_TARGET_INVALID, "PREFLIGHT",
                   f"restore root {root} does not exist", "MISSING") from exc
    if stat.S_ISLNK(st.st_mode):
        raise fail(ErrorCode.RESTORE_TARGET_INVALID, "PREFLIGHT",
                   f"restore root {root} is a symlink", "SYMLINK")
    if not stat.S_ISDIR(st.st_mode):
        raise fail(ErrorCode.RESTORE_TARGET_INVALID, "PREFLIGHT",
                   f"restore root {root} is not a directory", "NOT_DIRECTORY")
    if not os.access(root, os.W_OK | os.X_OK):
        raise fail(ErrorCode.RESTORE_TARGET_INVALID, "PREFLIGHT",
                   f"restore root {root} is not writable", "NOT_WRITABLE")


def check_keys(keys: list[str]) -> None:
    """Path safety (§4.2, FORMATS.md §0): rejected, never rewritten."""
    for key in sorted(keys, key=utf8_key):
        problem = relpath_problem(key)
        if problem is not None:
            reason = "NULL_BYTE" if "\x00" in key else "UNSAFE_PATH"
            raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                       f"output key {key!r}: {problem}", reason, path=key)
        if key in (MANIFEST, REPORT) or key.split("/")[0].startswith(
                (STAGING_PREFIX, JOURNAL_PREFIX, CHAIN_PREFIX)):
            raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                       f"output key {key!r} is reserved for the restore itself",
                       "RESERVED_NAME", path=key)
    as_set = set(keys)
    for key in keys:
        parts = key.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in as_set:
                raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PREFLIGHT",
                           f"output {key!r} lies under output {'/'.join(parts[:i])!r}",
                           "PATH_CONFLICT", path=key)


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return None


def probe_targets(root: Path, keys: list[str]) -> list[str]:
    """Reject-if-exists and no symlink on any target's path; returns the directories that
    would have to be created (parents first)."""
    new_dirs: list[str] = []
    seen_new: set[str] = set()
    rfd = os.open(root, DIR_FLAGS)
    try:
        for key in sorted(keys, key=utf8_key):
            parts = key.split("/")
            dfd = os.dup(rfd)
            try:
                for i, part in enumerate(parts):
                    sub = "/".join(parts[:i + 1])
                    if sub in seen_new:
                        continue
                    st = _lstat_at(dfd, part)
                    last = i == len(parts) - 1
                    if st is None:
                        if last:
                            break
                        seen_new.add(sub)
                        new_dirs.append(sub)
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "PLAN",
                                   f"{sub} under the restore root is a symlink",
                                   "SYMLINK_ESCAPE", path=key)
                    if last:
                        raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                                   f"{key} already exists in the restore root", path=key)
                    if not stat.S_ISDIR(st.st_mode):
                        raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                                   f"{sub} exists and is not a directory", "PARENT_NOT_DIRECTORY",
                                   path=key)
                    nfd = os.open(part, DIR_FLAGS, dir_fd=dfd)
                    os.close(dfd)
                    dfd = nfd
            finally:
                os.close(dfd)
        for name in (MANIFEST, REPORT):
            if _lstat_at(rfd, name) is not None:
                raise fail(ErrorCode.TARGET_EXISTS, "PLAN",
                           f"{name} already exists in the restore root", path=name)
    finally:
        os.close(rfd)
    return new_dirs


# -- EXECUTE: lock, journal, staging, placement -----------------------------------------------

@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[int]:
    """An exclusive lock on the restore root directory itself (no lock file is left behind)."""
    fd = os.open(root, DIR_FLAGS)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise fail(ErrorCode.RESTORE_LOCKED, "EXECUTE", f"another restore into {root} is "
                       "in progress", "LOCKED") from exc
        yield fd
    finally:
        os.close(fd)


def _write_journal(rfd: int, name: str, doc: dict[str, Any]) -> None:
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
    while chunk := os.read(src_fd, _CHUNK):
        h.update(chunk)
        write_all(dst_fd, chunk)
        total += len(chunk)
    return "sha256:" + h.hexdigest(), total


def _hash_at(dfd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        h = hashlib.sha256()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return "sha256:" + h.hexdigest()
    finally:
        os.close(fd)


def _open_source(e: PlanEntry) -> int:
    from .bundle.model import open_beneath

    try:
        return open_beneath(e.source_base, e.source_rel)
    except OSError as exc:
        raise fail(ErrorCode.SOURCE_MISSING, "EXECUTE", f"source of {e.key} vanished or is not "
                   "a regular file", "SOURCE_CHANGED", path=e.key) from exc


def _split(key: str) -> tuple[list[str], str]:
    parts = key.split("/")
    return parts[:-1], parts[-1]


def stage(rfd: int, staging: str, plan: Plan, hooks: Hooks) -> None:
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
                src = _open_source(e)
                try:
                    mode = 0o755 if e.executable else 0o644  # never setuid/setgid bits
                    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                                  os.O_CLOEXEC, mode, dir_fd=dfd)
                    try:
                        actual, size = _copy_hash(src, out)
                        os.fchmod(out, mode)
                        if not HAVE_SYNCFS:
                            os.fsync(out)
                    finally:
                        os.close(out)
                finally:
                    os.close(src)
                if actual != e.expected:
                    raise fail(ErrorCode.COPY_INTEGRITY_FAILED, "EXECUTE",
                               f"staged copy of {e.key} does not match its hash", path=e.key,
                               expected=e.expected, actual=actual)
                done_files += 1
                done_bytes += size
                if hooks.progress is not None:
                    hooks.progress(done_files, done_bytes)
            if not HAVE_SYNCFS:
                for fd in dirs.fds.values():
                    os.fsync(fd)
    finally:
        os.close(sfd)


def durable(fd: int) -> None:
    """Everything written so far on the root's filesystem is on disk: staged files and their
    directories before the first placement, placed links before the commit point."""
    if not sync_filesystem(fd):
        os.fsync(fd)


def place(rfd: int, staging: str, keys: list[str], created_dirs: list[str]) -> None:
    """Hard-link each staged file into place; link(2) never replaces an existing target."""
    sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
    try:
        with DirFds(sfd, create=False) as src_dirs, DirFds(rfd, create=False) as dst_dirs:
            for key in keys:
                parents, name = _split(key)
                try:
                    for i in range(len(parents)):
                        if "/".join(parents[:i + 1]) in dst_dirs.fds:
                            continue
                        try:
                            os.mkdir(parents[i], 0o755, dir_fd=dst_dirs.get(parents[:i]))
                            created_dirs.append("/".join(parents[:i + 1]))
                        except FileExistsError:
                            pass
                    dst_dir = dst_dirs.get(parents)  # ELOOP/ENOTDIR on a planted symlink
                except OSError as exc:
                    raise fail(ErrorCode.PATH_ESCAPE_DETECTED, "EXECUTE", f"a directory on the "
                               f"path of {key} was replaced during the restore "
                               f"({exc.strerror})", "SYMLINK_ESCAPE", path=key) from exc
                try:
                    os.link(name, name, src_dir_fd=src_dirs.get(parents), dst_dir_fd=dst_dir,
                            follow_symlinks=False)
                except FileExistsError as exc:
                    raise fail(ErrorCode.TARGET_EXISTS, "EXECUTE", f"{key} appeared in the "
                               "restore root during the restore; nothing was overwritten",
                               "RACE", path=key) from exc
                if not HAVE_SYNCFS:
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
        sa, sb = _lstat_at(a, name), _lstat_at(b, name)
        return sa is not None and sb is not None and (sa.st_ino, sa.st_dev) == \
            (sb.st_ino, sb.st_dev)
    finally:
        os.close(a)
        os.close(b)


def remove_tree_at(dfd: int, name: str) -> None:
    """rm -r below a directory fd without following symlinks."""
    try:
        st = os.lstat(name, dir_fd=dfd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return
    sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
    try:
        for entry in os.listdir(sub):
            remove_tree_at(sub, entry)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=dfd)


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


def recover(root: Path, *, locked_fd: int | None = None) -> dict[str, Any]:
    """Finish or undo whatever an interrupted restore left in `root` (and chain roots)."""
    report: dict[str, Any] = {"rolled_back": [], "completed": [], "stale_staging_removed": []}

    def work(rfd: int) -> None:
        for name in sorted(os.listdir(rfd)):
            if name.startswith(CHAIN_PREFIX) and name.endswith(".json"):
                from .restore_chain import recover_chain

                recover_chain(rfd, name, report)
        for name in sorted(os.listdir(rfd)):
            if name.startswith(JOURNAL_PREFIX) and name.endswith(".json"):
                recover_journal(rfd, name, report)
        for name in sorted(os.listdir(rfd)):
            if name.startswith(STAGING_PREFIX) or (
                    name.startswith((JOURNAL_PREFIX, CHAIN_PREFIX)) and name.endswith(".tmp")):
                remove_tree_at(rfd, name)
                report["stale_staging_removed"].append(name)

    if locked_fd is not None:
        work(locked_fd)
    else:
        check_target(root)
        with root_lock(root) as fd:
            work(fd)
    return report


def recover_journal(rfd: int, name: str, report: dict[str, Any]) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=rfd)
    try:
        data = read_fd(fd)
    finally:
        os.close(fd)
    try:
        journal = loads_strict(data, what=name)
    except CatalyticError:
        journal = None
    if not isinstance(journal, dict) or "staging" not in journal:
        os.unlink(name, dir_fd=rfd)  # torn before its rename: nothing was placed yet
        return
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


# -- the whole single-bundle restore ----------------------------------------------------------

def eligible(run_dir: Path, project_root: Path | None, allow_untrusted: bool) -> tuple[Any, Any]:
    """Step 1.1: full SPECTRUM-05 verification, a verified proof, at least one output, and (as
    catalytic's policy) a trusted validator unless allowed otherwise."""
    from .bundle.model import DirSource
    from .bundle.trust import TrustSet, load_trust
    from .bundle.verify import _project_root_for, verify_bundle
    from .policy import load_policy

    run_dir = run_dir.resolve()
    proot = _project_root_for(run_dir, project_root)
    src = DirSource(run_dir, proot)
    try:
        v = verify_bundle(src)
    except CatalyticError as exc:
        reason = "PROOF_NOT_VERIFIED" if exc.code is ErrorCode.RESTORATION_FAILED \
            else exc.code.value
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", f"bundle {run_dir.name} is not "
                   f"eligible: {exc.message}", reason, verification=exc.to_dict()) from exc
    if not v.hashes:
        raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", "OUTPUT_HASHES.hashes is empty",
                   "HASHES_EMPTY")
    if not allow_untrusted:
        try:
            trust = load_trust(load_policy(proot), proot)
        except CatalyticError:
            trust = TrustSet([], "no readable policy")
        ok, why = trust.lookup(v.validator_id)
        if not ok:
            raise fail(ErrorCode.RESTORE_INELIGIBLE, "PREFLIGHT", f"untrusted bundle: {why} "
                       "(use --allow-untrusted to restore it anyway)", "UNTRUSTED",
                       validator_id=v.validator_id)
    return v, src


def build_plan(src: Any, v: Any, result_root: Path, *, probe: bool = True) -> Plan:
    from .bundle.model import open_beneath

    entries = []
    for key in sorted(v.hashes, key=utf8_key):
        try:
            where = src.locate(key)
            if where is None:
                raise FileNotFoundError(key)
            fd = open_beneath(*where)
        except OSError as exc:
            raise fail(ErrorCode.SOURCE_MISSING, "PLAN", f"source of {key} is missing or not a "
                       "regular file", "MISSING" if isinstance(exc, FileNotFoundError)
                       else "NOT_REGULAR", path=key) from exc
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        entries.append(PlanEntry(key, v.hashes[key], where[0], where[1], st.st_size,
                                 bool(st.st_mode & 0o111)))
    plan = Plan(result_root, entries, v.bundle_root)
    if probe:
        plan.new_dirs = probe_targets(result_root, [e.key for e in entries])
    return plan


def dry_run_report(plan: Plan, prefix: str = "") -> dict[str, Any]:
    return {
        "ok": True, "dry_run": True,
        "would_restore_files_count": len(plan.entries),
        "would_restore_bytes": plan.total_bytes,
        "would_restore_paths": [prefix + e.key for e in plan.entries],
    }


def artifacts(plan: Plan) -> tuple[bytes, bytes]:
    entries = [{"bytes": e.size, "relative_path": e.key, "sha256": e.expected}
               for e in sorted(plan.entries, key=lambda e: utf8_key(e.key))]
    manifest = canonical_bytes({"entries": entries})
    report = canonical_bytes({
        "bundle_roots": [plan.bundle_root], "chain_root": plan.chain_root, "ok": True,
        "restored_bytes": plan.total_bytes, "restored_files_count": len(entries),
    })
    return manifest, report


def execute(plan: Plan, hooks: Hooks, *, locked_fd: int | None = None) -> dict[str, Any]:
    if locked_fd is None:
        with root_lock(plan.root) as rfd:
            recover(plan.root, locked_fd=rfd)  # a crashed earlier attempt is undone first
            plan.new_dirs = probe_targets(plan.root, [e.key for e in plan.entries])
            return _execute_locked(rfd, plan, hooks)
    return _execute_locked(locked_fd, plan, hooks)


def _execute_locked(rfd: int, plan: Plan, hooks: Hooks) -> dict[str, Any]:
    if hooks.after_plan is not None:
        hooks.after_plan(plan)
    staging, jname = new_attempt_names()
    keys = [e.key for e in plan.entries]
    journal: dict[str, Any] = {"bundle_root": plan.bundle_root, "committed": False,
                               "dirs": plan.new_dirs, "placed": [*keys, MANIFEST, REPORT],
                               "staging": staging}
    os.mkdir(staging, 0o700, dir_fd=rfd)
    journal_written = False
    try:
        stage(rfd, staging, plan, hooks)
        manifest, report = artifacts(plan)
        sfd = os.open(staging, DIR_FLAGS, dir_fd=rfd)
        try:
            for name, data in ((MANIFEST, manifest), (REPORT, report)):
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644,
                             dir_fd=sfd)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.fsync(sfd)
        finally:
            os.close(sfd)
        durable(rfd)
        if hooks.after_stage is not None:
            hooks.after_stage(plan)
        _write_journal(rfd, jname, journal)  # before the first placement
        journal_written = True
        created: list[str] = []
        place(rfd, staging, keys, created)
        if hooks.after_place is not None:
            hooks.after_place(plan)
        verify_targets(rfd, plan)
        place(rfd, staging, [MANIFEST, REPORT], created)
        durable(rfd)
        journal["committed"] = True
        _write_journal(rfd, jname, journal)  # the commit point
    except BaseException as exc:
        rollback(rfd, journal)
        if journal_written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(jname, dir_fd=rfd)
        os.fsync(rfd)
        if isinstance(exc, OSError):  # e.g. ENOSPC: report it, after rolling back
            raise fail(ErrorCode.IO_ERROR, "EXECUTE", f"restore failed and was rolled back: "
                       f"{exc}", "IO_ERROR") from exc
        raise
    remove_tree_at(rfd, staging)
    os.unlink(jname, dir_fd=rfd)
    os.fsync(rfd)
    return {"ok": True, "result_root": str(plan.root), "bundle_root": plan.bundle_root,
            "chain_root": plan.chain_root, "restored_files_count": len(plan.entries),
            "restored_bytes": plan.total_bytes}


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
                raise fail(ErrorCode.RESTORE_VERIFICATION_FAILED, "VERIFY", f"restored {e.key} "
                           f"is unreachable ({exc.strerror})", path=e.key) from exc

        def one(item: tuple[PlanEntry, int, str]) -> str:
            try:
                return _hash_at(item[1], item[2])
            except OSError as exc:
                return f"unreadable ({exc.strerror or exc})"

        if plan.total_bytes >= 64 * 1024 * len(work):  # threads pay off on large files only
            with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 1))) as pool:
                actuals = list(pool.map(one, work))
        else:
            actuals = [one(w) for w in work]
    for (e, _, _), actual in zip(work, actuals, strict=True):
        if actual != e.expected:
            raise fail(ErrorCode.RESTORE_VERIFICATION_FAILED, "VERIFY",
                       f"restored {e.key} does not match its hash", path=e.key,
                       expected=e.expected, actual=actual)


def restore_bundle(run_dir: Path, restore_root: Path, *, project_root: Path | None = None,
                   allow_untrusted: bool = False, dry_run: bool = False,
                   hooks: Hooks | None = None) -> dict[str, Any]:
    v, src = eligible(run_dir, project_root, allow_untrusted)
    check_target(restore_root)
    check_keys(list(v.hashes))
    plan = build_plan(src, v, restore_root)
    if dry_run:
        return {**dry_run_report(plan), "bundle_root": v.bundle_root}
    return execute(plan, hooks or Hooks())
