"""Rebuilt environments kept by what they are, in the user's cache directory
(`$XDG_CACHE_HOME/catalytic/envs/<key>/`, key: the environment hash, the pins with their hashes
and the interpreter), so a second replay of the same environment skips the rebuild.

Never trusted blindly: SEAL.json, written last, holds the SHA-256 of every file and link in the
environment; before each reuse the tree is hashed again and must match it exactly (a file
changed, added or removed inside it, by a replayed command's `pip install` or anyone else,
means a rebuild). Bytecode caches (`__pycache__`) are deleted before the check instead of being
sealed: Python writes them on import, and a planted one could stand in for a module.

Concurrency: every entry has a lock file beside it. A rebuild holds it exclusively (a second
rebuild of the same environment waits, then reuses the first one's result); a replay using the
environment holds it shared until its command ends; `env prune` removes only entries it can lock
exclusively at once. An entry without a seal (a rebuild killed half way) is never used: the next
rebuild removes it first. A venv cannot be moved once built (its scripts name its path), so it is
built in place under the lock rather than renamed into place."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes, canonical_hash, loads_strict
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.fs.usercache import cache_base

SEAL = "SEAL.json"


def cache_root() -> Path:
    return cache_base() / "catalytic" / "envs"


_KEY = re.compile(r"^[0-9a-f]{32}\Z")  # what cache_key gives


def cache_key(doc: dict[str, Any]) -> str:
    return canonical_hash(doc)[:32]


def tree_manifest(root: Path) -> dict[str, str]:
    """{relative path: "sha256:<hex>" | "link:<target>" | "dir"} of everything under root,
    never following a link; `__pycache__` directories are removed first (module docstring)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if d == "__pycache__" and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
                dirnames.remove(d)
                continue
            rel = os.path.normpath(os.path.join(rel_dir, d))
            if os.path.islink(full):
                out[rel] = "link:" + os.readlink(full)
                dirnames.remove(d)
            else:
                out[rel] = "dir"
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = f"sha256:{_sha256(full)}:{'x' if st.st_mode & 0o111 else '-'}"
            else:
                out[rel] = "other"
    return out


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Entry:
    """One cached environment: `<root>/<key>/venv` and its seal, `<root>/<key>.lock`."""

    def __init__(self, root: Path, key: str):
        self.root = root
        self.key = key
        self.dir = root / key
        self.venv = self.dir / "venv"
        self.seal_path = self.dir / SEAL
        self._fd: int | None = None

    def lock(self, *, exclusive: bool, wait: bool = True) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._fd is None:
            self._fd = os.open(
                self.root / f"{self.key}.lock",
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o644,
            )
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(self._fd, flags)
        except BlockingIOError:
            return False
        return True

    def unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def sealed_report(self) -> dict[str, Any] | None:
        """The seal's report if the environment still matches it exactly, else None."""
        try:
            seal = loads_strict(self.seal_path.read_bytes(), what=str(self.seal_path))
        except (OSError, CatalyticError):
            return None
        if not isinstance(seal, dict) or not self.venv.is_dir():
            return None
        if seal.get("manifest") != tree_manifest(self.venv):
            return None
        report = seal.get("report")
        return report if isinstance(report, dict) else None

    def clear(self) -> None:
        """Remove a partial or altered environment (under the exclusive lock); a file or link
        in its place is removed as itself (rmtree refuses a link, and never follows one)."""
        try:
            st = os.lstat(self.dir)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(self.dir)
        else:
            os.unlink(self.dir)

    def seal(self, report: dict[str, Any]) -> None:
        atomic_write(
            self.seal_path,
            canonical_bytes({"manifest": tree_manifest(self.venv), "report": report}),
        )


def prune(root: Path | None = None) -> dict[str, Any]:
    """Remove every cached environment not in use (and leftovers of interrupted rebuilds)."""
    root = root or cache_root()
    removed, busy = [], []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    # Only names this cache makes (a key, its lock) are entries; anything else someone put
    # here is left alone and named.
    visible = [n for n in names if not n.startswith(".")]
    keys = sorted({n.removesuffix(".lock") for n in visible if _KEY.match(n.removesuffix(".lock"))})
    ignored = sorted(n for n in visible if not _KEY.match(n.removesuffix(".lock")))
    for key in keys:
        entry = Entry(root, key)
        if not entry.lock(exclusive=True, wait=False):
            busy.append(key)
            entry.unlock()
            continue
        try:
            if entry.dir.exists():
                entry.clear()
                removed.append(key)
            # The lock file stays: unlinking it while another process waits on it would let a
            # third one lock a new file of the same name, and two rebuilds would interleave.
        finally:
            entry.unlock()
    return {"cache": str(root), "removed": removed, "in_use": busy, "ignored": ignored}
