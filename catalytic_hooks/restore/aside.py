"""A new directory built beside its target and renamed into place whole (`restore bundle
--worktree DIR`): a kill at any instant leaves DIR absent, never half made.

The directory is built as `.<name>.catalytic-partial-<32 hex>` next to DIR and held locked
(flock) while it is built, so a partial directory found unlocked belongs to an attempt that
died: the next attempt at the same DIR removes it (`sweep`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from catalytic_hooks.core.errors import io_failure
from catalytic_hooks.fs.dirfd import DIR_FLAGS

PREFIX = ".%s.catalytic-partial-"
_HEX32 = re.compile(r"[0-9a-f]{32}")


def sweep(target: Path, remove: Callable[[Path], None]) -> None:
    """Remove, with `remove`, the partial directories of `target` no live attempt holds."""
    prefix = PREFIX % target.name
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        if not _HEX32.fullmatch(name[len(prefix) :]):
            continue
        try:
            fd = os.open(target.parent / name, DIR_FLAGS)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            remove(target.parent / name)
        except OSError:
            pass  # a live attempt's (locked), or left for the next attempt
        finally:
            os.close(fd)


@contextlib.contextmanager
def built_aside(target: Path, remove: Callable[[Path], None]) -> Iterator[tuple[Path, int]]:
    """(the partial directory, an fd holding it locked): made empty, removed with `remove` if
    the block fails. The block ends by moving it to `target`."""
    sweep(target, remove)
    partial = target.parent / f"{PREFIX % target.name}{uuid.uuid4().hex}"
    try:
        os.mkdir(partial)
        held = os.open(partial, DIR_FLAGS)
    except OSError as exc:
        raise io_failure(f"make the new directory beside {target}", partial, exc) from exc
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield partial, held
    except BaseException:
        remove(partial)
        raise
    finally:
        os.close(held)
