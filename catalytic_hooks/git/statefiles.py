"""Every file this tool keeps in a git directory, and the refs that pin a run's snapshot: their
names, their framing, who owns them and which of them a later command trusts. The quick paths
(git.quickdigest, enforce.quickaccept) and the full paths read and write them through this module
only, so it imports nothing but `os` and `zlib`.

Layout (`<git dir>` is a worktree's own: `.git` for the main worktree, `.git/worktrees/<id>` for
a linked one; `<common dir>` is `.git` for all of them):

- `<common dir>/catalytic/blob-sha256`: blob id -> SHA-256, shared (true in any worktree);
  trusted by digests.
- `<git dir>/catalytic/index-digest-<32 hex>` and its `.records`: the index snapshot of that
  worktree's index; trusted by digests and the quick digest.
- `<git dir>/catalytic/trees/`: the snapshot's scratch object store (its patches).
- `<git dir>/catalytic/digest-quick`: the quick digest's record; `commit-check`: the hooks'
  quick paths' record. `digest-quick-last` is trusted by nobody (a guess of paths to read early).
- `<git dir>/catalytic/runs/run-<32 hex>.json`: that worktree's run journals (an undo is
  pending: every check refuses, `recover` finishes it).
- `refs/catalytic/runs/main/<32 hex>`, `refs/catalytic/runs/worktrees/<id>/<32 hex>`: the tree
  pinning a journal's snapshot, named by the worktree that ran (refs are shared, and `git gc` in
  one worktree does not see another's per-worktree refs); trusted by nobody.

A git directory's files are trusted as much as the repository they describe, never across a
run's command (which can write any of them, in any worktree): a run compares `trusted_files` of
every worktree before and after its command and drops them all on any change (git.runstate). The
framing's CRC only catches accidental damage; it is not integrity.
"""

from __future__ import annotations

import os
import zlib

STATE = "catalytic"
BLOB_CACHE = "blob-sha256"
SNAPSHOT_PREFIX = "index-digest-"
SNAPSHOT_RECORDS = ".records"
TREES = "trees"
DIGEST_RECORD = "digest-quick"
DIGEST_GUESS = "digest-quick-last"
COMMIT_RECORD = "commit-check"
RUNS = "runs"
SERVER_CHRONICLE = "chronicle.jsonl"  # a bare repository's: amendments accepted at the gate
SERVER_PENDING = "pending-amendments"  # a bare repository's: verdicts waiting for post-receive
TRUSTED = (BLOB_CACHE, DIGEST_RECORD, COMMIT_RECORD)

_HEX = frozenset("0123456789abcdef")


def state_dir(git_dir: str) -> str:
    """`<git dir>/catalytic`: this tool's files for one worktree (or, for the common
    directory, the main worktree's and the shared blob cache)."""
    return os.path.join(git_dir, STATE)


def is_snapshot_name(name: str) -> bool:
    """A snapshot file name git.snapshot gives (`index-digest-` and 32 hex digits)."""
    return (
        name.startswith(SNAPSHOT_PREFIX)
        and len(name) == len(SNAPSHOT_PREFIX) + 32
        and _hex(name[len(SNAPSHOT_PREFIX) :])
    )


def _hex(s: str) -> bool:
    return bool(s) and all(c in _HEX for c in s)


def path(git_dir: str, name: str) -> str:
    """`<git dir>/catalytic/<name>` (`git_dir`: the common directory for `BLOB_CACHE`)."""
    return os.path.join(git_dir, STATE, name)


# -- the quick paths' records: magic, fields, CRC ------------------------------------------------

SEP = "\n\0\n"  # no git path and no root holds a NUL


def frame(magic: str, fields: list[str]) -> bytes:
    """A record: the magic and the fields, separated by `SEP`, then a CRC of the rest against
    accidental damage (not against a writer: anyone who can write the file can compute it)."""
    body = SEP.join([magic, *fields]).encode("utf-8", "surrogateescape")
    return body + SEP.encode() + b"%08x" % zlib.crc32(body)


def unframe(data: bytes, magic: str, count: int) -> list[str] | None:
    """The `count` fields of a record `frame(magic, ...)` wrote, or None."""
    body, sep, crc = data.rpartition(SEP.encode())
    if not sep or crc != b"%08x" % zlib.crc32(body):
        return None
    fields = body.decode("utf-8", "surrogateescape").split(SEP)
    if len(fields) != count + 1 or fields[0] != magic:
        return None
    return fields[1:]


def join_list(values: list[str]) -> str:
    return "\0".join(values)


def split_list(field: str) -> list[str]:
    return field.split("\0") if field else []


def read(path: str) -> bytes | None:
    """A state file's bytes; None when it cannot be read (a missing cache is only slower)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def store(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically unless it is already there. Best effort: without the
    file the next command is only slower."""
    if read(path) == data:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            return


# -- run journals: is an undo pending ------------------------------------------------------------


def journal_name(token: str) -> str:
    return f"run-{token}.json"


def journal_token(name: str) -> str | None:
    """The 32-hex token of a journal name this tool gives (`run-<token>.json`), else None."""
    if len(name) == 41 and name.startswith("run-") and name.endswith(".json") and _hex(name[4:36]):
        return name[4:36]
    return None


def runs_dir(git_dir: str) -> str:
    return os.path.join(git_dir, STATE, RUNS)


def pending(git_dir: str) -> list[str]:
    """The names of this worktree's run journals: an interrupted `run --restore` whose undo
    `catalytic recover` has still to finish. One directory listing, so every commit hook, digest
    and run asks, the quick paths included. An unreadable directory raises OSError (a quick
    path then leaves the decision to the full path, which reports it)."""
    try:
        names = os.listdir(runs_dir(git_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if journal_token(n) is not None)


def refuse_if_pending(git_dir: str | os.PathLike[str], what: str) -> None:
    """A pending undo is never taken as a baseline: refuse until `catalytic recover` ran."""
    found = pending(os.fspath(git_dir))
    if found:
        from catalytic_hooks.core.errors import CatalyticError, ErrorCode

        journal = os.path.join(runs_dir(os.fspath(git_dir)), found[0])
        raise CatalyticError(
            ErrorCode.RUN_UNDO_PENDING,
            f"{what} refused: an interrupted `catalytic run --restore` still has to be undone "
            f"({found[0]}); run `catalytic recover` first",
            journal=journal,
        )


# -- worktrees: who owns what ---------------------------------------------------------------------


def worktree_git_dirs(common_dir: str) -> list[str]:
    """The git directory of every worktree of the repository: the common directory (the main
    worktree's) and each `worktrees/<id>` directory git keeps for a linked one."""
    found = [common_dir]
    linked = os.path.join(common_dir, "worktrees")
    try:
        names = sorted(os.listdir(linked))
    except (FileNotFoundError, NotADirectoryError):
        return found
    return found + [
        os.path.join(linked, n) for n in names if os.path.isdir(os.path.join(linked, n))
    ]


def trusted_files(common_dir: str) -> list[str]:
    """Every state file of every worktree that lets a later command skip work on the strength
    of what it says (the blob cache, index snapshots, the quick paths' records): what a run's
    command must not be able to leave behind."""
    found = []
    for git_dir in worktree_git_dirs(common_dir):
        d = state_dir(git_dir)
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        found += [
            os.path.join(d, n) for n in names if n in TRUSTED or n.startswith(SNAPSHOT_PREFIX)
        ]
    return found


# -- the refs that pin a run's snapshot -----------------------------------------------------------

PIN_PREFIX = "refs/catalytic/runs/"


def _owner(git_dir: str, common_dir: str) -> str | None:
    """The ref path component naming the worktree whose git directory is `git_dir`, or None
    when its id cannot be one (git sanitises ids, so only a hand-made directory)."""
    git_dir, common_dir = os.path.realpath(git_dir), os.path.realpath(common_dir)
    if git_dir == common_dir:
        return "main"
    parent, wid = os.path.split(git_dir)
    if parent != os.path.join(common_dir, "worktrees"):
        return None
    bad = (
        wid.startswith(".")
        or wid.endswith(".lock")
        or ".." in wid
        or "@{" in wid
        or any(c in wid for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 32 for c in wid)
    )
    return None if bad else f"worktrees/{wid}"


def pin_ref(git_dir: str, common_dir: str, token: str) -> str:
    """The ref that keeps the snapshot of run `token` in this worktree from `git gc`. Refs are
    shared by every worktree (and `gc` in one does not see another's per-worktree refs), so the
    owner is in the name: only the owner sweeps it, or anyone once the owner is gone."""
    owner = _owner(git_dir, common_dir)
    return PIN_PREFIX + (f"{owner}/{token}" if owner else token)


def pin_refs(git_dir: str, common_dir: str, token: str) -> list[str]:
    """Every name run `token` of this worktree may be pinned under (a version before owners
    were named pinned it as `refs/catalytic/runs/<token>`)."""
    return sorted({pin_ref(git_dir, common_dir, token), PIN_PREFIX + token})


def orphan_pin(ref: str, git_dir: str, common_dir: str) -> bool:
    """Whether the pin `ref` protects nothing, as seen from the worktree at `git_dir`: its own
    pins without a journal; another worktree's only once that worktree's git directory is gone
    (`git worktree remove` or `prune`); an unowned (older) pin when no worktree has its journal.
    Anything else, or a name this tool does not give, is left alone."""
    rest = ref[len(PIN_PREFIX) :] if ref.startswith(PIN_PREFIX) else ""
    owner, _, token = rest.rpartition("/")
    if len(token) != 32 or not _hex(token):
        return False
    name = journal_name(token)
    if not owner:
        return not any(
            os.path.lexists(os.path.join(runs_dir(d), name)) for d in worktree_git_dirs(common_dir)
        )
    if owner == "main":
        owner_dir = common_dir
    elif (
        owner.startswith("worktrees/")
        and "/" not in owner[10:]
        and owner[10:] not in ("", ".", "..")
    ):
        owner_dir = os.path.join(common_dir, owner)
    else:
        return False
    if _owner(git_dir, common_dir) == owner:
        return not os.path.lexists(os.path.join(runs_dir(git_dir), name))
    return not os.path.lexists(owner_dir)
