"""Git objects travelling in an archive: a deterministic pack file out, a checked import in.

`write_pack` writes the objects of a commit (its whole tree; with `history`, its ancestry too) as a
version 2 pack that depends on nothing but the objects: sorted by (type, id), never deltified,
each object in a zlib stream of *stored* deflate blocks written here (a deflate encoder's output
differs between zlib builds; stored blocks have exactly one encoding). So the same commit gives
the same pack bytes on every machine, and the archive holding it can be addressed by its hash.

`import_pack` is the other side, for untrusted packs: `git index-pack --strict` computes every
object id itself and fsck-checks every object and link, in a repository whose `shallow` file names
the commit when the archive carries no ancestry (so a missing parent is a boundary, not a broken
link). The caller then compares the ids git computed with what the signed bundle recorded.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import Repo, _run, clean_env

_TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
_KINDS = {code: kind for kind, code in _TYPES.items()}
_ORDER = {"commit": 0, "tree": 1, "blob": 2, "tag": 3}
_STORED_MAX = 65535  # the largest stored deflate block


@dataclass(frozen=True)
class PackInfo:
    commit: str
    tree: str
    object_format: str
    objects: int
    size: int


def stored_zlib(data: bytes) -> bytes:
    """`data` as a zlib stream of stored deflate blocks (RFC 1950/1951): header 78 01, blocks of
    at most 65,535 bytes (BFINAL on the last, an empty final block for no data), Adler-32."""
    out = [b"\x78\x01"]
    view = memoryview(data)
    pos = 0
    while True:
        chunk = view[pos : pos + _STORED_MAX]
        pos += len(chunk)
        final = pos >= len(data)
        n = len(chunk)
        out.append(bytes([1 if final else 0]) + struct.pack("<HH", n, n ^ 0xFFFF))
        out.append(bytes(chunk))
        if final:
            break
    out.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(out)


def _object_header(kind: str, size: int) -> bytes:
    """A pack entry's type and size: 3 type bits and 4 size bits, then 7 size bits a byte."""
    byte = (_TYPES[kind] << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def closure(repo: Repo, commit: str, history: bool) -> list[tuple[str, str]]:
    """(id, type) of the commit and every object it reaches: its whole tree (gitlinks are
    recorded in their trees, their commits are another repository's), with `history` its
    ancestors' too. Sorted by (type, id), the pack's order."""
    args = ["rev-list", "--objects", "--no-object-names"]
    if not history:
        args.append("--no-walk")
    listed = repo.git(*args, commit, "--").decode().split()
    checked = (
        repo.git(
            "cat-file",
            "--batch-check=%(objectname) %(objecttype)",
            input=("\n".join(listed) + "\n").encode(),
        )
        .decode()
        .splitlines()
    )
    objs = []
    for line in checked:
        oid, _, kind = line.partition(" ")
        if kind not in _TYPES:
            raise CatalyticError(
                ErrorCode.GIT_FAILED,
                f"object {oid} is missing from the repository (a partial or shallow clone?)",
                oid=oid,
            )
        objs.append((oid, kind))
    return sorted(objs, key=lambda o: (_ORDER[o[1]], o[0]))


def write_pack(repo: Repo, commit: str, out: BinaryIO, *, history: bool = False) -> PackInfo:
    """Write the deterministic pack of `commit` to `out`; the objects are read with one
    `git cat-file --batch`, one at a time (memory holds one object, never the pack)."""
    objs = closure(repo, commit, history)
    fmt = repo.object_format
    trailer = hashlib.sha256() if fmt == "sha256" else hashlib.sha1()
    size = 0

    def put(data: bytes) -> None:
        nonlocal size
        out.write(data)
        trailer.update(data)
        size += len(data)

    put(b"PACK" + struct.pack(">II", 2, len(objs)))
    feeder = _BatchReader(repo)
    try:
        for oid, kind in objs:
            got_kind, data = feeder.read(oid)
            if got_kind != kind:
                raise CatalyticError(ErrorCode.GIT_FAILED, f"object {oid} changed type")
            put(_object_header(kind, len(data)))
            put(stored_zlib(data))
    finally:
        feeder.close()
    digest = trailer.digest()
    out.write(digest)
    size += len(digest)
    tree = repo.tree_of(commit)
    return PackInfo(commit, tree, fmt, len(objs), size)


class _BatchReader:
    """One long-lived `git cat-file --batch`: ids in, (type, bytes) out."""

    def __init__(self, repo: Repo):
        self.proc = repo.start_batch("cat-file", "--batch")

    def read(self, oid: str) -> tuple[str, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(oid.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().decode().split()
        if len(header) != 3:
            raise CatalyticError(ErrorCode.GIT_FAILED, f"object {oid} is missing", oid=oid)
        size = int(header[2])
        data = self.proc.stdout.read(size)
        self.proc.stdout.read(1)  # the newline after each object
        return header[1], data

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


# -- the receiving side ------------------------------------------------------------------------


def init_repository(path: Path, object_format: str, *, bare: bool) -> Repo:
    """A new, empty repository at `path` (created), with no inherited git variable (and, as for
    every git command of this tool, hooks disabled: git.invoke)."""
    if object_format not in ("sha1", "sha256"):
        raise CatalyticError(
            ErrorCode.GIT_FAILED, f"object format {object_format!r} is not supported"
        )
    args = ["init", "-q", f"--object-format={object_format}"]
    if bare:
        args.append("--bare")
    proc = _run([*args, str(path)], clean_env())
    if proc.returncode != 0:
        raise CatalyticError(
            ErrorCode.GIT_FAILED, f"git init failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    git_dir = path if bare else path / ".git"
    return Repo(path, git_dir, git_dir, clean_env())


@dataclass(frozen=True)
class Imported:
    commit: str
    tree: str
    objects: int


PackProblem = Callable[[str, str], CatalyticError]


def import_pack(
    repo: Repo, pack: Path, commit: str, *, history: bool, problem: PackProblem
) -> Imported:
    """Index an untrusted pack into `repo` and prove what it holds: `commit` exists and is a
    commit (its id computed by git from the bytes), and the pack holds exactly its closure (the
    whole tree; the ancestry with `history`). `problem(reason, message)` makes the error."""
    problem_found = pack_problem(pack, repo.object_format)
    if problem_found is not None:
        raise problem("PACK_NOT_CANONICAL", f"the archive's pack is not canonical: {problem_found}")
    if not history:
        # The commit is a history boundary: its parents are absent by design.
        with open(repo.git_dir / "shallow", "w", encoding="ascii") as fh:
            fh.write(commit + "\n")
    with open(pack, "rb") as fh:
        proc = _run(["index-pack", "--strict", "--stdin"], repo.env, cwd=repo.git_dir, stdin=fh)
    if proc.returncode != 0:
        raise problem(
            "GIT_OBJECTS",
            "the archive's git objects are invalid: "
            f"{proc.stderr.decode(errors='replace').strip()[:300]}",
        )
    kind = repo.git_proc("cat-file", "-t", commit)
    if kind.returncode != 0 or kind.stdout.strip() != b"commit":
        raise problem("GIT_OBJECTS", f"the archive's git objects hold no commit {commit}")
    tree = repo.tree_of(commit)
    listed = repo.git_proc(
        "rev-list",
        "--objects",
        "--no-object-names",
        *([] if history else ["--no-walk"]),
        commit,
        "--",
    )
    if listed.returncode != 0:
        raise problem(
            "GIT_OBJECTS", f"the archive's git objects do not reach the whole tree of {commit}"
        )
    reached = len(listed.stdout.split())
    in_pack = _pack_count(pack)
    if in_pack != reached:
        raise problem(
            "GIT_OBJECTS",
            f"the archive's pack holds {in_pack} objects, the commit reaches {reached}",
        )
    return Imported(commit, tree, reached)


def pack_problem(pack: Path, object_format: str) -> str | None:
    """What keeps `pack` from being the canonical pack `write_pack` writes, or None.

    Checked before git reads a byte of it, because git trusts a pack's own size claims: one
    delta of a few hundred bytes whose instructions declare a 64 GiB result, or a deflate
    stream that expands a thousandfold, makes `index-pack` allocate that much. The canonical
    form admits neither: no delta types, and each object a zlib stream of stored blocks whose
    lengths add up to the object's declared size, so no object can stand for more bytes than
    the pack itself holds. Only headers are read; the blocks' bytes are skipped (git checks
    them and their Adler-32 itself)."""
    trailer = 32 if object_format == "sha256" else 20
    with open(pack, "rb") as fh:
        end = os.fstat(fh.fileno()).st_size - trailer
        head = fh.read(12)
        if len(head) != 12 or head[:8] != b"PACK\0\0\0\2":
            return "no version 2 pack header"
        count = struct.unpack(">I", head[8:12])[0]
        last_type = 1
        for index in range(count):
            where = f"object {index} (offset {fh.tell()})"
            byte = fh.read(1)
            if not byte:
                return f"{where}: the pack ends early"
            kind, size, shift = (byte[0] >> 4) & 7, byte[0] & 0x0F, 4
            header = 1
            while byte[0] & 0x80:
                byte = fh.read(1)
                if not byte or shift > 60:
                    return f"{where}: a malformed object header"
                size |= (byte[0] & 0x7F) << shift
                shift += 7
                header += 1
            if kind not in (1, 2, 3, 4):
                return f"{where}: type {kind} (a delta, or no object type)"
            if kind < last_type:
                return f"{where}: objects are not in type order"
            if header != len(_object_header(_KINDS[kind], size)):
                return f"{where}: a size header with padding"
            last_type = kind
            if fh.read(2) != b"\x78\x01":
                return f"{where}: not a zlib stream of stored blocks"
            left = size
            while True:
                block = fh.read(5)
                if len(block) != 5 or block[0] not in (0, 1):
                    return f"{where}: a deflate block that is not stored"
                n, check = struct.unpack("<HH", block[1:])
                want = min(_STORED_MAX, left)
                if n != want or check != n ^ 0xFFFF or bool(block[0]) != (left == n):
                    return f"{where}: stored blocks that do not add up to {size} bytes"
                left -= n
                if fh.seek(n, os.SEEK_CUR) > end:
                    return f"{where}: the pack ends early"
                if block[0]:
                    break
            if fh.seek(4, os.SEEK_CUR) > end:  # the Adler-32
                return f"{where}: the pack ends early"
        if fh.tell() != end:
            return "bytes between the last object and the trailer"
    return None


def _pack_count(pack: Path) -> int:
    with open(pack, "rb") as fh:
        head = fh.read(12)
    return int(struct.unpack(">I", head[8:12])[0]) if len(head) == 12 else -1


def checkout_detached(repo: Repo, commit: str) -> None:
    """Point HEAD at `commit` and check it out (a standalone repository's first checkout)."""
    repo.git("update-ref", "--no-deref", "HEAD", commit)
    repo.git("reset", "-q", "--hard", commit)


def add_objects(repo: Repo, pack: Path) -> None:
    """Add a pack's objects to an existing repository (`archive import`, after the archive was
    verified in a scratch repository)."""
    with open(pack, "rb") as fh:
        proc = _run(["index-pack", "--stdin"], repo.env, cwd=repo.top, stdin=fh)
    if proc.returncode != 0:
        raise CatalyticError(
            ErrorCode.GIT_FAILED,
            f"git index-pack failed: {proc.stderr.decode(errors='replace').strip()}",
        )
