"""Repository-relative path rules (docs/FORMATS.md §0), used wherever a path enters the program.

A path that normalisation would change is rejected, never rewritten: an ambiguity rejects.
"""

from __future__ import annotations

import hashlib
import re

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

_DRIVE = re.compile(r"^[A-Za-z]:")
# Components that start with a letter, digit or underscore and hold no NUL, backslash or colon:
# none of relpath_problem's refusals can apply, so nearly every real path (10,000 output keys of
# one bundle) is decided by one match instead of a split and a loop.
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")


def name_part(text: str, room: int = 160) -> str:
    """`text` as part of a file name this tool makes (`<run id>-<time>`, `replay-<run id>-...`):
    itself when its UTF-8 fits in `room` bytes, else a prefix that fits and `~` with 16 hex of
    its SHA-256, so a run id of up to 255 bytes (one legal path component) never makes a name
    longer than a file system allows, and two long ids stay apart."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= room:
        return text
    cut = raw[: room - 17].decode("utf-8", "ignore")
    return f"{cut}~{hashlib.sha256(raw).hexdigest()[:16]}"


def relpath_problem(path: str) -> str | None:
    """Why `path` is not a safe relative POSIX path, or None when it is."""
    if not isinstance(path, str):
        return "not a string"
    if _PLAIN.fullmatch(path):
        return None
    if path == "":
        return "empty path"
    if "\x00" in path:
        return "NUL byte"
    if "\\" in path:
        return "backslash"
    if path.startswith("/"):
        return "absolute path"
    if _DRIVE.match(path):
        return "drive path"
    for part in path.split("/"):
        if part == "":
            return "empty component"
        if part in (".", ".."):
            return f"'{part}' component"
    return None


def check_relpath(path: str, *, what: str = "path") -> str:
    problem = relpath_problem(path)
    if problem is not None:
        raise CatalyticError(
            ErrorCode.PATH_INVALID,
            f"{what} {path!r} is not a safe relative path: {problem}",
            path=path,
            reason=problem,
        )
    return path


def normalise_root(root: str) -> str:
    """Normalise a configured root (`cache/`, `./cache` → `cache`; `.` stays `.`).

    Roots are configuration written by people, so harmless spellings are accepted; anything
    absolute, with `..`, or empty is a configuration error.
    """
    if not isinstance(root, str) or root.strip() == "":
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"root {root!r} is empty", root=root)
    if "\x00" in root or "\n" in root or "\r" in root:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"root {root!r} has a control character")
    text = root.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"root {root!r} is absolute", root=root)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"root {root!r} contains '..'", root=root)
    return "/".join(parts) if parts else "."


# Code points HFS+ ignores in a file name (git's utf8.c next_hfs_char): `.g\u200cit` is `.git`
# there.
_HFS_IGNORED = frozenset(
    (
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        0x202A,
        0x202B,
        0x202C,
        0x202D,
        0x202E,
        0x206A,
        0x206B,
        0x206C,
        0x206D,
        0x206E,
        0x206F,
        0xFEFF,
    )
)


def is_git_name(name: str) -> bool:
    """Whether one path component names git's own directory on some filesystem git protects
    (git's `is_ntfs_dotgit` and `is_hfs_dotgit`): `.git` in any case; followed by dots or spaces
    (Windows strips them) or by `:` (an NTFS stream, `.git::$INDEX_ALLOCATION`); its 8.3 short
    name `git~1`; with code points HFS+ ignores. Stricter than git where the rules combine."""
    # Every code point HFS+ ignores is outside ASCII: an ASCII name (nearly all) skips the
    # per-character filter, which was a quarter of `archive create` on 10,000 outputs.
    low = (
        name.lower()
        if name.isascii()
        else "".join(c for c in name if ord(c) not in _HFS_IGNORED).lower()
    )
    for stem in (".git", "git~1"):
        if low.startswith(stem):
            rest = low[len(stem) :].split(":", 1)[0]
            if rest.strip(". ") == "":
                return True
    return False


def has_git_component(path: str) -> bool:
    """Whether some component of `path` would be git's own directory on some filesystem
    (is_git_name). Such an output would let a bundle write into a repository's hooks or config
    when restored into a worktree; such a root would let a run or a recovery delete it."""
    if path.isascii() and "git" not in path.lower():
        return False  # both of git's spellings hold "git"; only non-ASCII code points hide it
    return any(is_git_name(part) for part in path.split("/"))
