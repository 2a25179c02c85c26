"""A new directory built beside its target and put into place whole (`restore bundle --worktree
DIR`): a kill at any instant leaves DIR absent, never half made.

The directory is built as `.catalytic-partial-<32 hex>` in DIR's parent, held locked (flock)
while it is built: it is made as `<that>.new`, locked, then renamed, so no other attempt ever
sees it unlocked while its maker lives. A partial directory found unlocked belongs to an attempt
that died; the next attempt in the same parent removes it (`sweep`). The last step, checking
that DIR does not exist and moving the partial there, holds a lock on the parent directory, so
two attempts at one DIR cannot both place theirs (the second is refused, `WORKTREE_EXISTS`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from catalytic_hooks.core.errors import ErrorCode, io_failure
from catalytic_hooks.fs.dirfd import DIR_FLAGS
from catalytic_hooks.restore.transaction import fail

PREFIX = ".catalytic-partial-"
_PARTIAL = re.compile(r"\.catalytic-partial-[0-9a-f]{32}(?:\.new)?\Z")


def new_target(path: Path) -> Path:
    """The `--worktree` DIR to make, refused if it exists or is named like a partial directory
    (which would be taken for a dead attempt's and removed). A link among the directories
    named is followed once, here, as mkdir -p or git clone would: what is made, and removed on
    failure, is then in the real directory (the removal opens the parent without following
    links)."""
    given = path.absolute()
    target = given.parent.resolve() / given.name
    if _PARTIAL.match(target.name):
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"{target.name} is a name this tool keeps for a directory it is building",
            "RESERVED_NAME",
        )
    if target.exists() or target.is_symlink():
        raise fail(
            ErrorCode.RESTORE_TARGET_INVALID,
            "PREFLIGHT",
            f"{target} exists; --worktree needs a new path",
            "WORKTREE_EXISTS",
        )
    return target


def sweep(parent: Path, remove: Callable[[Path], None]) -> None:
    """Remove, with `remove`, the partial directories in `parent` no live attempt holds."""
    try:
        names = [n for n in os.listdir(parent) if _PARTIAL.match(n)]
    except OSError:
        return
    for name in names:
        try:
            fd = os.open(parent / name, DIR_FLAGS)
        except OSError:
            continue  # a link or a file so named: never ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            remove(parent / name)
        except OSError:
            pass  # a live attempt's (locked), or left for the next attempt
        finally:
            os.close(fd)


@contextlib.contextmanager
def built_aside(target: Path, remove: Callable[[Path], None]) -> Iterator[tuple[Path, int]]:
    """(the partial directory, an fd holding it locked): made empty beside `target`, removed
    with `remove` if the block fails. The block ends with `placed`."""
    sweep(target.parent, remove)
    partial = target.parent / f"{PREFIX}{uuid.uuid4().hex}"
    making = partial.with_name(partial.name + ".new")
    try:
        os.mkdir(making)
        held = os.open(making, DIR_FLAGS)
    except OSError as exc:
        raise io_failure(f"make the new directory beside {target}", making, exc) from exc
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.rename(making, partial)
        yield partial, held
    except BaseException:
        remove(making)
        remove(partial)
        raise
    finally:
        os.close(held)


@contextlib.contextmanager
def placed(target: Path) -> Iterator[None]:
    """The block moves the partial directory to `target`, holding the parent locked, after
    checking that `target` does not exist (a directory there would have the move put the
    partial inside it)."""
    try:
        pfd = os.open(target.parent, DIR_FLAGS)
    except OSError as exc:
        raise io_failure(f"lock {target.parent}", target.parent, exc) from exc
    try:
        fcntl.flock(pfd, fcntl.LOCK_EX)
        if os.path.lexists(target):
            raise fail(
                ErrorCode.RESTORE_TARGET_INVALID,
                "EXECUTE",
                f"{target} appeared while it was being made beside it; nothing was placed there",
                "WORKTREE_EXISTS",
            )
        yield
    finally:
        os.close(pfd)
