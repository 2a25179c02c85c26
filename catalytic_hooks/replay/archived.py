"""`replay FILE`: an isolated replay of an archive (seed steps 2–3, §IX).

The archive is checked and unpacked into its own directory, `<replays_dir>/<run_id>-<UTC time>/`
(or `--replay-dir`, which must not exist): `archive/` (the bag), `repo/` (a standalone repository
built from the archive's objects, whose commit git computes) and `worktree/` (the replay). The
replay is judged like any other, its report and chronicle record (the caller's repository's,
if any) name the source archive, and the directory is removed unless `--keep`. An archive that
fails integrity is moved, never deleted, to the quarantine directory with a report naming the
first rule it broke and the file's SHA-256, unless `--no-quarantine`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from catalytic_hooks.archive.read import (
    LARGEST_ARCHIVE,
    extract,
    file_sha256,
    inspect_doc,
    prove_objects,
)
from catalytic_hooks.archive.verify import check_commit
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.clock import stamp_compact, stamp_seconds
from catalytic_hooks.core.errors import BUNDLE_CORRUPT, CatalyticError, ErrorCode
from catalytic_hooks.core.paths import name_part
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.fs.files import CHUNK, atomic_write, fsync_dir, write_all
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.replay.report import ReplayReport
from catalytic_hooks.replay.runner import ReplayOptions, replay


def quarantine_archive(path: Path, qdir: Path, exc: CatalyticError) -> Path:
    """Move (never delete) an archive that failed integrity, with a report beside it."""
    stamp = stamp_compact()
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / f"{name_part(path.name)}-{stamp}"
    digest = file_sha256(path)
    try:
        os.rename(path, dest)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        _move_across(path, dest, digest)
    reason = exc.details.get("reason") or exc.code.value
    report = {
        "archive": path.name,
        "original_path": str(path.absolute()),
        "sha256": digest,
        "quarantined_at": stamp_seconds(),
        "code": exc.code.value,
        "reason": reason,
        "message": exc.message,
        "details": exc.details,
        "moved_to": str(dest),
    }
    atomic_write(qdir / f"{dest.name}.QUARANTINE_REPORT.json", canonical_bytes(report))
    return dest


def _move_across(path: Path, dest: Path, digest: str | None) -> None:
    """A move to another file system (an archive on a USB stick or tmpfs, the quarantine in the
    repository): copy beside `dest`, make the copy durable, link it into place (never over a
    file), and only then remove the original, and only if the copy has the bytes that were
    hashed for the report; otherwise the original stays where it was."""
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if os.fstat(src).st_size > LARGEST_ARCHIVE:
        # a sparse terabyte costs nothing where it is and a terabyte of blocks as a copy
        os.close(src)
        raise OSError(errno.EFBIG, "larger than any archive; it stays where it is")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        try:
            h = hashlib.sha256()
            while chunk := os.read(src, CHUNK):
                h.update(chunk)
                write_all(fd, chunk)
        finally:
            os.close(src)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if digest is not None and h.hexdigest() != digest:
            raise OSError(errno.EAGAIN, "the archive changed while it was copied", str(path))
        os.link(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    try:
        os.unlink(path)
    except OSError:
        # The original cannot be removed (a read-only medium): a copy beside it would be a
        # second file in the quarantine on every run, so the move is undone instead.
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise


def _integrity_failure(exc: CatalyticError) -> bool:
    if exc.code is ErrorCode.ARCHIVE_INVALID:
        return True
    # the reason is the verification code's value (a replay's details are JSON data)
    return exc.code is ErrorCode.REPLAY_FAILED and exc.details.get("reason") in BUNDLE_CORRUPT


def replay_archive(
    path: Path,
    opts: ReplayOptions,
    *,
    caller: tuple[Path, Policy] | None,
    replay_dir: Path | None,
    quarantine_dir: Path,
    limits: Limits,
    quarantine: bool = True,
) -> ReplayReport:
    """Replay the archive at `path`; `caller` is the repository the command runs in (its top
    and policy: reports and chronicle go there), or None outside one."""
    try:
        return _replay_archive(path, opts, caller, replay_dir, limits)
    except CatalyticError as exc:
        if quarantine and _integrity_failure(exc) and path.is_file():
            # the refusal is what the caller must see; a quarantine that fails is added to it
            try:
                where = quarantine_archive(path, quarantine_dir, exc)
            except (OSError, CatalyticError) as err:  # CatalyticError: the report's write
                why = err.message if isinstance(err, CatalyticError) else err.strerror or str(err)
                exc.details["quarantine_error"] = why
                exc.message += f"; the archive could not be quarantined ({why})"
            else:
                exc.details["quarantine"] = str(where)
                exc.message += f"; the archive was moved to {where}"
        raise


def _replay_archive(
    path: Path,
    opts: ReplayOptions,
    caller: tuple[Path, Policy] | None,
    replay_dir: Path | None,
    limits: Limits,
) -> ReplayReport:
    run_id = inspect_doc(path, limits)["run_id"]
    stamp = stamp_compact()
    if replay_dir is None:
        base = (caller[0] / caller[1].replays_dir) if caller else Path.cwd() / "replays"
        base.mkdir(parents=True, exist_ok=True)
        replay_dir = base / f"{name_part(run_id)}-{stamp}"
    replay_dir = replay_dir.absolute()
    try:
        os.mkdir(replay_dir, 0o700)
    except FileExistsError as exc:
        raise CatalyticError(
            ErrorCode.USAGE,
            f"{replay_dir} exists; a replay directory must be new",
            path=str(replay_dir),
        ) from exc
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.USAGE, f"cannot create {replay_dir}: {exc.strerror}"
        ) from exc
    try:
        opened = extract(path, replay_dir / "archive", limits)
        proved = prove_objects(opened, replay_dir / "repo", bare=False)
        check_commit(opened, proved)
        repo = Repo.discover(replay_dir / "repo")
        # Outside a repository the reports go beside the replay directories, never into it.
        policy = caller[1] if caller else Policy(reports_dir="reports")
        run_opts = replace(
            opts,
            worktree=replay_dir / "worktree",
            quarantine=False,
            project_root=opened.project_root,
            home=caller,
            reports_root=replay_dir.parent,
            source_archive={"name": path.name, "sha256": opened.sha256},
            restoration_id=replay_dir.name,
        )
        rep = replay(repo, policy, opened.run_dir, run_opts)
        rep.replay_dir = str(replay_dir)
        rep.kept = opts.keep
        return rep
    finally:
        if not opts.keep:
            shutil.rmtree(replay_dir, ignore_errors=True)
