"""The user's cache directory, and private directories in it that no one else can write.

What a cache hands out is trusted because of who could have put it there: the registry's
verified cache re-hashes every entry, but a directory another user can write lets them swap a
checked file, or the directory holding it, between the check and its use. So every directory of
ours is this user's own, not writable by group or others (narrowed where an older umask left it
wider), never a link another user made; and the directory they live in is this user's (narrowed
likewise) or root's, and not writable by group or others unless sticky (where no one can
rename what is not theirs).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode, io_failure


def cache_base() -> Path:
    """`$XDG_CACHE_HOME`, else `~/.cache`. A relative value is ignored, as the XDG base
    directory specification says (it would put the cache in whatever directory a command runs
    in, a repository's work tree included)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        return Path(base)
    home = os.path.expanduser("~")
    if not os.path.isabs(home):  # no HOME and no passwd entry: nowhere that is the user's
        raise CatalyticError(
            ErrorCode.PATH_INVALID,
            "there is no home directory for the cache: set HOME or XDG_CACHE_HOME",
            reason="CACHE_UNSAFE",
        )
    return Path(home) / ".cache"


def _unsafe(path: Path, why: str) -> CatalyticError:
    return CatalyticError(
        ErrorCode.PATH_INVALID,
        f"the cache directory {path} {why}; a cache others can write could hand out files "
        "they swapped in (set XDG_CACHE_HOME to a directory of your own)",
        path=str(path),
        reason="CACHE_UNSAFE",
    )


def _narrow(path: Path, st: os.stat_result) -> None:
    """The user's own directory `path` (status `st`) without its group and other write bits;
    refused where the file system keeps them (one without modes: CIFS, say)."""
    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
    if os.stat(path).st_mode & 0o022:
        raise _unsafe(path, "can be written by others")


def _check_base(base: Path) -> None:
    """The directory the cache's own live in: the user's or root's, and no one else's to
    write unless sticky. The user's own is narrowed, as their cache's directories are: the
    previous version made `~/.cache` with `mkdir -p`, group-writable under `umask 002`, the
    default where every user has a group of their own."""
    st = os.stat(base)
    if not stat.S_ISDIR(st.st_mode):
        raise _unsafe(base, "is not a directory")
    if st.st_uid not in (os.geteuid(), 0):
        raise _unsafe(base, f"belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        if st.st_uid != os.geteuid():
            raise _unsafe(base, "can be written by others and is not sticky")
        _narrow(base, st)


def _own(path: Path) -> None:
    """`path` made (mode 0700) or checked: a directory of this user's, not a link another user
    made, its group and other write bits removed."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid not in (os.geteuid(), 0):
            raise _unsafe(path, f"is a link made by another user (uid {st.st_uid})")
        st = os.stat(path)  # the user's own link, or root's (a cache moved to a larger disk)
    if not stat.S_ISDIR(st.st_mode):
        raise _unsafe(path, "is not a directory")
    if st.st_uid != os.geteuid():
        raise _unsafe(path, f"belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o022:
        _narrow(path, st)


def private_dirs(base: Path, relative: list[str]) -> None:
    """The directories `relative` (paths under `base`, parents first) made or checked as this
    user's own; `base` made (0700, with its missing parents) or checked as a place they may
    live. IO_ERROR for what the disk refuses, PATH_INVALID (`CACHE_UNSAFE`) for what another
    user could write."""
    try:
        missing = []
        here = base
        while not os.path.lexists(here) and here != here.parent:
            missing.append(here)
            here = here.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
                os.mkdir(d, 0o700)
        _check_base(base)
        for rel in relative:
            _own(base / rel)
    except OSError as exc:
        raise io_failure(f"create the cache directory under {base}", base, exc) from exc
