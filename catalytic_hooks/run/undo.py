"""`catalytic run --restore`: snapshot the protected state into git's object database before a
command, and undo every non-durable mutation afterwards.

The undo never writes through a symlink (directory file descriptors with O_NOFOLLOW), never
touches durable roots, and never destroys bytes it could not give back: everything it overwrites
or deletes is first stored as a blob, and its id is reported in RESTORE_UNDO.json.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.fs.dirfd import (
    DIR_FLAGS,
    Emptied,
    empty_dir_at,
    lstat_at,
    open_parent,
    repository_reason,
)
from catalytic_hooks.fs.files import write_all
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.store import store_bytes, store_files
from catalytic_hooks.git.views import ViewEntry


@dataclass(frozen=True)
class Saved:
    kind: str  # "file" | "exec" | "symlink" | "absent" (outside a sparse checkout)
    oid: str | None  # blob id for files
    target: bytes | None = None  # link target for symlinks


@dataclass
class UndoReport:
    restored: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    tmp_removed: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    # What emptying the tmp roots left on purpose ({path, reason}): never a link's target, a
    # repository or git directory, another filesystem.
    tmp_kept: list[dict[str, str]] = field(default_factory=list)
    # Replace refs and graft files the command changed, put back (git.runstate.Substitutions).
    substitutions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "restored": self.restored,
            "removed": self.removed,
            "tmp_removed": sorted(self.tmp_removed),
            "refused": self.refused,
        }
        if self.tmp_kept:
            doc["tmp_kept"] = sorted(self.tmp_kept, key=lambda k: k["path"])
        if self.substitutions:
            doc["substitutions_restored"] = sorted(self.substitutions)
        return doc


def take(repo: Repo, entries: list[ViewEntry], absent: set[str] | None = None) -> dict[str, Saved]:
    """Snapshot `entries` (protected files of the PRE view). Clean tracked files are already in
    the object DB under their index id; everything else is written there now. `absent`: paths
    outside a sparse checkout, not on disk before (the undo removes what appears there)."""
    snap: dict[str, Saved] = {p: Saved("absent", None) for p in absent or ()}
    to_store: list[str] = []
    for e in entries:
        if e.kind == "gitlink":
            continue
        full = repo.top / e.path
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            snap[e.path] = Saved("symlink", None, os.readlink(os.fsencode(full)))
            continue
        kind = "exec" if st.st_mode & 0o111 else "file"
        if e.oid is not None:
            snap[e.path] = Saved(kind, e.oid)
        else:
            snap[e.path] = Saved(kind, None)
            to_store.append(e.path)
    for path, oid in zip(to_store, store_files(repo, to_store), strict=True):
        snap[path] = Saved(snap[path].kind, oid)
    return snap


def _save_current(repo: Repo, path: str) -> str | None:
    full = repo.top / path
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(os.fsencode(full))
        return store_bytes(repo, target)
    if stat.S_ISREG(st.st_mode):
        return store_files(repo, [path])[0]
    return None


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def _overwrite_in_place(dfd: int, name: str, data: bytes, mode: int) -> None:
    """The disk is full, so a second copy for an atomic rename does not fit: truncate the
    regular file that is there and write the original bytes into it (the journal survives a
    crash in between, so `catalytic recover` finishes the job)."""
    fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "no space left, and not a regular file to overwrite")
        os.ftruncate(fd, 0)
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(repo: Repo, path: str, saved: Saved) -> None:
    try:
        _put_atomic(repo, path, saved)
    except OSError as exc:
        if not _no_space(exc) or saved.kind == "symlink" or saved.oid is None:
            raise
        dfd, name = open_parent(repo.top, path, create=False)
        try:
            _overwrite_in_place(
                dfd, name, repo.read_blob(saved.oid), 0o755 if saved.kind == "exec" else 0o644
            )
        except FileNotFoundError:
            raise exc from None
        finally:
            os.close(dfd)


def _put_atomic(repo: Repo, path: str, saved: Saved) -> None:
    dfd, name = open_parent(repo.top, path, create=True)
    tmp = f".{name}.catalytic-{uuid.uuid4().hex}"
    try:
        try:
            st = os.lstat(name, dir_fd=dfd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(f"{path} is now a directory")
        except FileNotFoundError:
            pass
        if saved.kind == "symlink":
            assert saved.target is not None
            os.symlink(saved.target, tmp, dir_fd=dfd)
        else:
            assert saved.oid is not None
            data = repo.read_blob(saved.oid)
            mode = 0o755 if saved.kind == "exec" else 0o644
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd
            )
            try:
                write_all(fd, data)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)


def _delete(top: Path, path: str) -> None:
    dfd, name = open_parent(top, path, create=False)
    try:
        os.unlink(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def undo(
    repo: Repo,
    snap: dict[str, Saved],
    pre: dict[str, str],
    post: dict[str, str],
    report: UndoReport,
    *,
    unsaved_ok: bool = True,
) -> None:
    """Bring every protected path back to its PRE state (manifests: path → digest value).
    `unsaved_ok`: on a full disk, a path is restored even when the bytes it replaces could not be
    stored first (a run's own undo: the user's data first); recovery, acting on a journal that
    might be planted, refuses instead."""
    for path in sorted(set(pre) | set(post)):
        if pre.get(path) == post.get(path):
            continue
        try:
            try:
                saved_now = _save_current(repo, path)
            except (OSError, CatalyticError) as exc:
                if not _no_space(exc) or not unsaved_ok:
                    raise
                # Giving the user's data back comes first: the command's bytes for a path it
                # was not allowed to change are not kept when there is no room for them.
                saved_now = None
            if path in snap and snap[path].kind == "absent":
                if saved_now is not None or os.path.lexists(repo.top / path):
                    _delete(repo.top, path)
                    report.removed.append({"path": path, "saved_blob": saved_now})
            elif path in snap:
                _put(repo, path, snap[path])
                report.restored.append({"path": path, "saved_blob": saved_now})
            elif path in pre:
                # Only a submodule or nested repository is in PRE and not snapshotted (by its
                # commit id): this tool never moves a repository's HEAD, nor makes one.
                was = pre[path].removeprefix("gitlink:")
                report.refused.append(
                    {
                        "path": path,
                        "reason": f"a submodule or nested repository, at commit {was} before "
                        f"the run; this tool never moves or recreates a repository: check that "
                        f"commit out there (`git -C {path} checkout {was}`), then run "
                        "`catalytic recover`",
                    }
                )
            elif path in post:
                if os.path.isdir(repo.top / path) and not os.path.islink(repo.top / path):
                    # A nested repository the command created (recorded like a submodule): its
                    # history may be someone's work, and this tool never deletes a repository.
                    report.refused.append(
                        {
                            "path": path,
                            "reason": "a nested git repository the command created; this "
                            "tool never deletes a repository: move it away, then run "
                            "`catalytic recover`",
                        }
                    )
                    continue
                _delete(repo.top, path)
                report.removed.append({"path": path, "saved_blob": saved_now})
        except (OSError, CatalyticError) as exc:
            report.refused.append({"path": path, "reason": str(exc)})


def empty_tmp_roots(
    top: Path, tmp_roots: tuple[str, ...], existed: set[str], report: UndoReport
) -> None:
    """Remove everything under the tmp roots (a tmp root that did not exist before the
    operation is removed too), by directory fd from the top: a link is removed, never followed,
    and neither is a link on the way to a root (that root is kept and reported); a nested
    repository, a linked worktree, a git directory or another filesystem is left whole and
    reported in `tmp_kept` (the tmp residue then fails the proof). The roots are checked by
    core.policy.root_problem wherever they come from, so none lies in git's directory."""
    for troot in tmp_roots:
        if troot == "." or has_git_component(troot) or relpath_problem(troot) is not None:
            report.tmp_kept.append({"path": troot, "reason": "not a tmp root this tool empties"})
            continue
        try:
            pfd, name = open_parent(top, troot, create=False)
        except FileNotFoundError:
            continue
        except OSError:
            report.tmp_kept.append(
                {
                    "path": troot,
                    "reason": "a directory on the way to it is a "
                    "symbolic link or not a directory: not followed",
                }
            )
            continue
        try:
            _empty_root(pfd, name, troot, troot in existed, report)
        finally:
            os.close(pfd)


def _empty_root(pfd: int, name: str, troot: str, existed: bool, report: UndoReport) -> None:
    out = Emptied()
    st = lstat_at(pfd, name)
    try:
        if st is None:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=pfd)
            out.removed.append(troot)
            return
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        try:
            why = repository_reason(fd)
            if why is not None:
                out.kept.append({"path": troot, "reason": why})
                return
            empty = empty_dir_at(fd, troot, out)
        finally:
            os.close(fd)
        if empty and not existed:
            os.rmdir(name, dir_fd=pfd)
    except OSError as exc:
        out.failed.append({"path": troot, "reason": exc.strerror or str(exc)})
    finally:
        report.tmp_removed.extend(out.removed)
        report.tmp_kept.extend(out.kept)
        report.refused.extend(out.failed)
