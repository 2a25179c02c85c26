"""All access to git: the only module that imports pygit2 or runs the git CLI.

Listings come from the git CLI (`ls-files -s -z`, `status --porcelain=v2`, `diff-index`);
object contents come from pygit2's object database, imported lazily so hook start-up does not pay
for it (docs/decisions/0001).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.earlyspawn import status_args, untracked_args
from catalytic_hooks.git.invoke import (
    DIFF_FLAGS,
    NO_NEGOTIATION,
    REPOSITORY_ENV,
    git_argv,
    git_env,
    shown,
)

MODE_LINK = "120000"
MODE_GITLINK = "160000"


def _git_missing() -> CatalyticError:
    return CatalyticError(
        ErrorCode.GIT_MISSING, "git is not installed (no `git` on PATH); install git 2.39 or newer"
    )


# While a run's undo must finish, git's children get a process group of their own: a terminal's
# Ctrl-C (sent to the whole foreground group) must not kill the `git hash-object` the undo needs.
_ISOLATE = [False]


@contextlib.contextmanager
def isolated_children() -> Iterator[None]:
    _ISOLATE[0] = True
    try:
        yield
    finally:
        _ISOLATE[0] = False


def _popen(
    args: Sequence[str], env: dict[str, str], config_read: bool = False, **kw: Any
) -> subprocess.Popen[bytes]:
    """`git ARGS` started as git.invoke builds it."""
    argv, env = git_argv(args, config_read=config_read), git_env(env)
    if not _ISOLATE[0]:
        return subprocess.Popen(argv, env=env, **kw)
    # A group of its own, and the terminal signals ignored until it is in it: the child
    # inherits SIG_IGN through fork, so one arriving before setpgid cannot kill it either.
    guarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in guarded}
    try:
        return subprocess.Popen(argv, env=env, process_group=0, **kw)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def scratch_objects_env(repo: Repo, scratch: Path) -> dict[str, str]:
    """The repository's environment with new objects going to `scratch` and its own object
    directories (a quarantine's included) read as alternates: git can then write trees
    without writing to the repository."""
    env = repo.env
    alternates = [
        p
        for p in (
            env.get("GIT_OBJECT_DIRECTORY") or str(repo.common_dir / "objects"),
            env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES"),
        )
        if p
    ]
    return {
        **env,
        "GIT_OBJECT_DIRECTORY": str(scratch),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.pathsep.join(alternates),
    }


def _run(
    args: Sequence[str],
    env: dict[str, str],
    input: bytes | None = None,
    config_read: bool = False,
    **kw: Any,
) -> subprocess.CompletedProcess[bytes]:
    """`git ARGS` run to completion as git.invoke builds it, with a missing git reported as such
    (not as a bug)."""
    try:
        if not _ISOLATE[0]:
            return subprocess.run(
                git_argv(args, config_read=config_read),
                env=git_env(env),
                capture_output=True,
                input=input,
                **kw,
            )
        stdin = subprocess.PIPE if input is not None else kw.pop("stdin", None)
        proc = _popen(
            args,
            env,
            config_read,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,
        )
        out, err = proc.communicate(input)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    except FileNotFoundError as exc:
        raise _git_missing() from exc


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_ENV}
    if extra:
        env.update(extra)
    return env


def is_zero_oid(oid: str) -> bool:
    return len(oid) in (40, 64) and set(oid) == {"0"}


class IndexEntry(NamedTuple):
    mode: str
    oid: str
    stage: int
    path: str


class TreeEntry(NamedTuple):
    mode: str
    oid: str
    path: str


def _failed(proc: subprocess.Popen[bytes], err: bytes) -> CatalyticError:
    return CatalyticError(
        ErrorCode.GIT_FAILED,
        f"git {shown(proc.args)} failed: "  # type: ignore[arg-type]
        f"{err.decode(errors='replace').strip()}",
        returncode=proc.returncode,
    )


# The most changed paths one check judges (all the commits of a range together, or the staged
# tree). A "tree bomb" (trees whose N entries all name the same subtree) lists N^3 paths from a
# pack of a few KB: git walks it by id for nothing, but every path costs the gate a record and a
# finding, so without a bound a small push exhausts the server's memory. The largest real commits
# (a vendored tree, a monorepo import) change some hundreds of thousands of paths, and the first
# commit of a repository of a million files (the scale the hooks are built for: README) changes
# a million; past twice that the change is refused as too large to judge (CHANGE_TOO_LARGE),
# never accepted unjudged. git needs about 470 MB a million paths: within GIT_DIFF_MEMORY.
MAX_CHANGED_PATHS = 2_000_000


# git's diff machinery queues every changed path before it prints the first (measured: no output
# for a tree bomb of 10^9 paths, 24 GB resident after 107 s), so streaming its output cannot
# bound git itself: the diffs a check reads run with their heap capped here. git needs about
# 470 MB per million changed paths (measured), so 2 GiB leaves MAX_CHANGED_PATHS room four times.
GIT_DIFF_MEMORY = 2 << 30


def _cap_git_memory(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """RLIMIT_DATA (heap and anonymous mappings, not the mapped packfiles) on the started diff,
    so that git fails with "Out of memory" instead of taking the host's. Set on the running
    child, not in it before exec: a `preexec_fn` makes Python fork instead of vfork, 2.5 ms more
    per git on the commit hook's path, while git needs seconds to grow past the cap."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    # Never above a hard limit the host set (the child inherited it; raising it would fail).
    cap = GIT_DIFF_MEMORY if hard == resource.RLIM_INFINITY else min(hard, GIT_DIFF_MEMORY)
    with contextlib.suppress(ProcessLookupError):  # git already done: nothing to cap
        resource.prlimit(proc.pid, resource.RLIMIT_DATA, (cap, hard))
    return proc


def _diff_failed(proc: subprocess.Popen[bytes], err: bytes, where: str) -> CatalyticError:
    """A capped diff's failure: out of memory is the change being too large to judge."""
    if _out_of_memory(err):
        return too_many_paths(where, git_memory=GIT_DIFF_MEMORY)
    return _failed(proc, err)


def _out_of_memory(err: bytes) -> bool:
    return b"Out of memory" in err or b"out of memory" in err


def too_many_paths(where: str, **details: Any) -> CatalyticError:
    return CatalyticError(
        ErrorCode.CHANGE_TOO_LARGE,
        f"{where} changes more than {MAX_CHANGED_PATHS:,} paths: too large to judge, refused "
        "(split it into smaller commits and pushes)",
        limit=MAX_CHANGED_PATHS,
        **details,
    )


@dataclass(frozen=True)
class RawChange:
    """One line of `git diff --raw`: status letter A/D/M/T, old and new mode and oid."""

    status: str
    old_mode: str
    new_mode: str
    old_oid: str
    new_oid: str
    path: str


@dataclass
class WorktreeStatus:
    modified: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    submodule_moved: set[str] = field(default_factory=set)
    untracked: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class Repo:
    """A repository as git sees it from `top` (its working tree) with a given environment."""

    def __init__(self, top: Path, git_dir: Path, common_dir: Path, env: dict[str, str]):
        self.top = top
        self.git_dir = git_dir
        self.common_dir = common_dir
        self.env = env
        self._pygit2: Any = None
        self._object_format: str | None = None

    # -- discovery -------------------------------------------------------------------------
    @classmethod
    def discover(cls, start: Path | None = None) -> Repo:
        """Find the repository. From the current directory git's environment (GIT_DIR,
        GIT_INDEX_FILE, ...) is honoured, as in a hook; an explicit other path strips it."""
        env = dict(os.environ) if start is None else clean_env()
        cwd = Path.cwd() if start is None else Path(start)
        if not cwd.is_dir():
            raise CatalyticError(ErrorCode.NOT_A_REPOSITORY, f"{cwd} is not a directory")
        proc = _run(
            [
                "rev-parse",
                "--show-toplevel",
                "--absolute-git-dir",
                "--git-common-dir",
                "--show-object-format",
            ],
            env,
            cwd=cwd,
        )
        if proc.returncode != 0:
            raise CatalyticError(
                ErrorCode.NOT_A_REPOSITORY,
                f"{cwd} is not inside a git working tree: "
                f"{proc.stderr.decode(errors='replace').strip()}",
            )
        out = proc.stdout
        lines = os.fsdecode(out).splitlines()
        if len(lines) != 4 or not lines[0]:
            raise CatalyticError(ErrorCode.NOT_A_REPOSITORY, f"{cwd} has no working tree")
        top, git_dir = Path(lines[0]), Path(lines[1])
        common = Path(lines[2])
        if not common.is_absolute():
            common = (cwd / common).resolve()
        repo = cls(top, git_dir, common, env)
        repo._object_format = lines[3] or "sha1"  # asked in the same call: one process less
        return repo

    @classmethod
    def discover_bare(cls, start: Path | None = None) -> Repo:
        """A repository without a working tree (a server's bare repository, where pre-receive
        runs): git is run from the git directory, with git's environment when `start` is None
        (the quarantine variables of receive-pack included)."""
        env = dict(os.environ) if start is None else clean_env()
        cwd = Path.cwd() if start is None else Path(start)
        proc = _run(["rev-parse", "--absolute-git-dir", "--git-common-dir"], env, cwd=cwd)
        lines = os.fsdecode(proc.stdout).splitlines()
        if proc.returncode != 0 or len(lines) != 2:
            raise CatalyticError(
                ErrorCode.NOT_A_REPOSITORY,
                f"{cwd} is not a git repository: {proc.stderr.decode(errors='replace').strip()}",
            )
        git_dir = Path(lines[0])
        common = Path(lines[1])
        if not common.is_absolute():
            common = (cwd / common).resolve()
        if env.get("GIT_DIR") and not Path(env["GIT_DIR"]).is_absolute():
            env["GIT_DIR"] = str(git_dir)  # git is run from the git directory, not from cwd
        return cls(git_dir, git_dir, common, env)

    @staticmethod
    def find(start: Path | None = None) -> Repo | None:
        try:
            return Repo.discover(start)
        except CatalyticError:
            return None

    # -- running git ------------------------------------------------------------------------
    def git(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> bytes:
        env = self.env if not extra_env else {**self.env, **extra_env}
        proc = _run(args, env, input, cwd=self.top)
        if check and proc.returncode != 0:
            raise CatalyticError(
                ErrorCode.GIT_FAILED,
                f"git {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace').strip()}",
                returncode=proc.returncode,
            )
        return proc.stdout

    def git_ok(self, *args: str) -> bool:
        return self.git_proc(*args).returncode == 0

    def git_proc(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run git and hand back the whole result, for commands whose exit code is an answer."""
        return _run(args, self.env, cwd=self.top)

    @property
    def object_format(self) -> str:
        if self._object_format is None:
            out = self.git("rev-parse", "--show-object-format", check=False).strip()
            self._object_format = out.decode() or "sha1"
        return self._object_format

    def empty_tree(self) -> str:
        algo = hashlib.sha256 if self.object_format == "sha256" else hashlib.sha1
        return algo(b"tree 0\x00").hexdigest()

    def rev_parse(self, rev: str) -> str | None:
        proc = _run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"],
            self.env,
            cwd=self.top,
        )
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def tree_of(self, rev: str) -> str:
        proc = _run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{tree}"],
            self.env,
            cwd=self.top,
        )
        if proc.returncode != 0:
            raise CatalyticError(ErrorCode.GIT_FAILED, f"unknown revision {rev!r}", rev=rev)
        return proc.stdout.decode().strip()

    def head(self) -> str | None:
        return self.rev_parse("HEAD")

    def config_get(self, key: str) -> str | None:
        proc = _run(["config", "--get", key], self.env, config_read=True, cwd=self.top)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def config_set_own(self, key: str, value: str) -> None:
        """Set `key` in this repository's own config file (never the user's or the system's)."""
        self.git("config", "--file", str(self.common_dir / "config"), key, value)

    def git_var(self, name: str) -> str | None:
        """`git var NAME` (None: this git does not know the variable)."""
        proc = _run(["var", name], self.env, cwd=self.top)
        return proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else None

    def config_get_all(self, key: str) -> list[str]:
        """Every value of a multi-valued key, in git's order."""
        proc = _run(["config", "--get-all", key], self.env, config_read=True, cwd=self.top)
        return proc.stdout.decode(errors="replace").splitlines() if proc.returncode == 0 else []

    def config_list(self) -> bytes:
        """Every configuration entry with its origin, as git resolves them (NUL-separated)."""
        return _run(
            ["config", "--list", "--show-origin", "-z"], self.env, config_read=True, cwd=self.top
        ).stdout

    def hooks_dir(self) -> Path:
        """Where git looks for this repository's hooks (`core.hooksPath` honoured)."""
        proc = _run(["rev-parse", "--git-path", "hooks"], self.env, config_read=True, cwd=self.top)
        if proc.returncode != 0:
            raise CatalyticError(
                ErrorCode.GIT_FAILED,
                "git rev-parse --git-path hooks failed: "
                f"{proc.stderr.decode(errors='replace').strip()}",
            )
        p = Path(os.fsdecode(proc.stdout.strip()))
        return p if p.is_absolute() else self.top / p

    # -- listings ---------------------------------------------------------------------------
    def run_env(
        self, env: dict[str, str], *args: str, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """A git command with another environment (a scratch object store); not checked."""
        return _run(args, env, input, cwd=self.top)

    def start_env(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        try:
            return _popen(args, env, cwd=self.top, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            raise _git_missing() from exc

    def stream_env(
        self, env: dict[str, str], *args: str, input: bytes
    ) -> Generator[bytes, None, None]:
        """`git ARGS` (with `-z` output) fed `input`, its NUL-separated fields yielded as git
        writes them: memory stays one block however long the output (a tree bomb's diff lists
        billions of paths). Closing the iterator early kills git. Fails with GIT_FAILED."""
        with tempfile.TemporaryFile() as err:
            try:
                proc = _cap_git_memory(
                    _popen(
                        args, env, cwd=self.top, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=err,
                    )
                )  # fmt: skip
            except FileNotFoundError as exc:
                raise _git_missing() from exc
            # Fed from a thread: git answers while it reads, and a full pipe each way would
            # block both of us.
            feeder = threading.Thread(target=_feed, args=(proc.stdin, input), daemon=True)
            feeder.start()
            try:
                assert proc.stdout is not None
                yield from fields(proc.stdout)
            except BaseException:
                # Closed early (the cap, or output out of step): git would write on for nothing.
                # Only then: at the end of its output git may still be exiting, and must not be
                # killed into a failure.
                proc.kill()
                raise
            finally:
                proc.wait()
                feeder.join()
                assert proc.stdout is not None
                proc.stdout.close()
            if proc.returncode != 0:
                err.seek(0)
                raise _diff_failed(proc, err.read(), "a diff git could not hold")

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a git command whose output is collected later with `finish`, so independent
        listings run concurrently."""
        try:
            return _popen(
                args, self.env, cwd=self.top, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise _git_missing() from exc

    def start_batch(self, *args: str) -> subprocess.Popen[bytes]:
        """A long-lived git command fed on stdin and read on stdout as it answers (`cat-file
        --batch`); its stderr is dropped."""
        try:
            return _popen(
                args,
                self.env,
                cwd=self.top,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise _git_missing() from exc

    @staticmethod
    def finish(proc: subprocess.Popen[bytes]) -> bytes:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise _failed(proc, err)
        return out

    def ls_index_start(self, pathspecs: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        args = ["ls-files", "-s", "-z", "--full-name"]
        if pathspecs:
            args += ["--", *(f":(literal){p}" for p in pathspecs)]
        return self.start(*args)

    @staticmethod
    def parse_index(out: bytes) -> list[IndexEntry]:
        # "<mode> <oid> <stage>\t<path>": mode is always 6 digits and stage 1 digit, so
        # slicing beats splitting on a 100,000-entry index.
        entries = []
        for rec in out.decode("utf-8", "surrogateescape").split("\0"):
            if rec:
                tab = rec.index("\t")
                entries.append(
                    IndexEntry(rec[:6], rec[7 : tab - 2], int(rec[tab - 1]), rec[tab + 1 :])
                )
        return entries

    def ls_index(self, pathspecs: Sequence[str] = ()) -> list[IndexEntry]:
        return self.parse_index(self.finish(self.ls_index_start(pathspecs)))

    def ls_tree(self, rev: str, pathspecs: Sequence[str] = ()) -> list[TreeEntry]:
        args = ["ls-tree", "-r", "-z", "--full-tree", rev]
        if pathspecs:
            args += ["--", *pathspecs]
        out = self.git(*args)
        entries = []
        for rec in out.decode("utf-8", "surrogateescape").split("\0"):
            if rec:
                tab = rec.index("\t")
                mode, _typ, oid = rec[:tab].split(" ")
                entries.append(TreeEntry(mode, oid, rec[tab + 1 :]))
        return entries

    def status_start(self, *, ignored: bool) -> subprocess.Popen[bytes]:
        started = time.time_ns()  # as git.earlyspawn.Spawned records it (git.indexid.settled)
        proc = self.start(*status_args(ignored))
        proc.started_ns = started  # type: ignore[attr-defined]
        return proc

    def finish_status(self, proc: subprocess.Popen[bytes]) -> WorktreeStatus:
        st = self.parse_status(self.finish(proc))
        if "--untracked-files=normal" in proc.args:  # type: ignore[operator]
            self._expand_untracked(st)
        return st

    def _expand_untracked(self, st: WorktreeStatus) -> None:
        """Untracked files that `git status` in its normal mode does not list one by one: inside
        an untracked directory it shows `dir/` (a nested repository looks the same and is left
        as it is), and a directory standing where a deleted tracked file was it omits. Both are
        listed by `git ls-files -o` (the same ignore rules) in one call."""
        hidden = [
            p
            for p in st.deleted
            if os.path.isdir(self.top / p) and not os.path.islink(self.top / p)
        ]
        collapsed = [
            p for p in st.untracked if p.endswith("/") and not (self.top / p / ".git").exists()
        ]
        if not (hidden or collapsed):
            return
        listed = self.untracked_under([*collapsed, *(p + "/" for p in hidden)])
        gone = set(collapsed)
        st.untracked = sorted({*(p for p in st.untracked if p not in gone), *listed})

    @staticmethod
    def parse_status(out: bytes) -> WorktreeStatus:
        st = WorktreeStatus()
        for rec in out.split(b"\0"):
            if not rec:
                continue
            kind = rec[:1]
            if kind in (b"1", b"u"):
                fields = rec.split(b" ", 8 if kind == b"1" else 10)
                xy, sub, path = fields[1].decode(), fields[2].decode(), os.fsdecode(fields[-1])
                if kind == b"u" or xy[1] != ".":
                    st.modified.add(path)
                if xy[1] == "D":
                    st.deleted.add(path)
                if sub.startswith("S") and sub[1] == "C":
                    st.submodule_moved.add(path)
            elif kind == b"?":
                st.untracked.append(os.fsdecode(rec[2:]))
            elif kind == b"!":
                st.ignored.append(os.fsdecode(rec[2:]))
        return st

    def staged_start(self, old: str) -> subprocess.Popen[bytes]:
        """`diff_raw(old, None)` started now, read with `staged_finish` (it reads the whole
        index: in a large repository the slowest thing a commit check asks)."""
        args = ("diff-index", "--cached", "--raw", *DIFF_FLAGS, old)
        try:
            return _cap_git_memory(
                _popen(args, self.env, cwd=self.top, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            )
        except FileNotFoundError as exc:
            raise _git_missing() from exc

    def staged_finish(self, proc: subprocess.Popen[bytes]) -> list[RawChange]:
        """Read as git writes it, and at most MAX_CHANGED_PATHS: a HEAD that is a tree bomb
        against a small index lists every one of its paths as removed."""
        assert proc.stdout is not None
        try:
            changes = _parse_raw_fields(fields(proc.stdout), "the staged change")
        except CatalyticError:
            proc.kill()
            proc.communicate()
            raise
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise _diff_failed(proc, err, "the staged change")
        return changes

    def diff_raw(self, old: str, new: str | None, pathspecs: Sequence[str] = ()) -> list[RawChange]:
        """Changed paths between two trees (new=None: the index), read as git writes them and
        refused past MAX_CHANGED_PATHS (the adoption commit a push carries is diffed here)."""
        if new is None:
            args = ["diff-index", "--cached", "--raw", *DIFF_FLAGS, old]
        else:
            args = ["diff-tree", "--raw", *DIFF_FLAGS, old, new]
        if pathspecs:
            args += ["--", *pathspecs]
        stream = self.stream_env(self.env, *args, input=b"")
        with contextlib.closing(stream) as parts:
            return _parse_raw_fields(parts, f"the diff {old[:12]}..{(new or 'index')[:12]}")

    # -- objects ----------------------------------------------------------------------------
    def _repo2(self) -> Any:
        if self._pygit2 is None:
            import pygit2

            self._pygit2 = pygit2.Repository(str(self.git_dir))
        return self._pygit2

    def pygit2_repository(self) -> Any:
        """libgit2's view of the object database (SHA-1 repositories only)."""
        return self._repo2()

    def promisor_remote(self) -> str | None:
        """The remote a partial clone fetches promised objects from (None: not partial)."""
        out = _run(
            ["config", "--get-regexp", r"^remote\..*\.promisor$"],
            self.env,
            config_read=True,
            cwd=self.top,
        ).stdout
        for line in out.decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lower() == "true":
                return key[len("remote.") : -len(".promisor")]
        return None

    def prefetch(self, oids: Iterable[str]) -> None:
        """In a partial clone, fetch the promised objects among `oids` in one batch (what git
        does lazily one object at a time), the way git's own lazy fetch asks for them."""
        remote = self.promisor_remote()
        if remote is None:
            return
        try:
            odb = self._repo2()
        except Exception:  # libgit2 cannot open it (SHA-256): git fetches lazily
            return
        missing = [o for o in set(oids) if o not in odb]
        if missing:
            self.git(
                *NO_NEGOTIATION,
                "fetch",
                remote,
                "--no-tags",
                "--no-write-fetch-head",
                "--recurse-submodules=no",
                "--filter=blob:none",
                "--stdin",
                input="".join(o + "\n" for o in missing).encode(),
            )

    def read_blob(self, oid: str) -> bytes:
        try:
            data: bytes = self._repo2()[oid].data
        except Exception as exc:
            # libgit2 does not see objects that only git's environment points to (a push still
            # in receive-pack's quarantine, GIT_ALTERNATE_OBJECT_DIRECTORIES), promised objects
            # of a partial clone, nor SHA-256 repositories at all: ask git itself.
            proc = self.git_proc("cat-file", "blob", oid)
            if proc.returncode != 0:
                raise CatalyticError(ErrorCode.GIT_FAILED, f"object {oid} is missing") from exc
            return proc.stdout
        return data

    def has_tracked_changes(self) -> bool:
        """Whether a tracked file differs from HEAD, in the index or on disk."""
        return bool(self.git("status", "--porcelain", "--untracked-files=no").strip())

    def has_changes_under(self, paths: list[str]) -> bool:
        """Whether a file under `paths` (relative to the top) differs from HEAD, in the index
        or on disk, or is there untracked (not ignored)."""
        out = self.git("status", "--porcelain", "--untracked-files=all", "--", *paths)
        return bool(out.strip())

    def index_matches(self, rev: str) -> bool:
        """Whether the index holds exactly `rev`'s tree (nothing staged)."""
        return self.git_ok("diff-index", "--cached", "--quiet", *DIFF_FLAGS, rev, "--")

    def is_shallow(self) -> bool:
        return self.git("rev-parse", "--is-shallow-repository").strip() == b"true"

    def fetch(self, remote: str, *what: str) -> bool:
        """`git fetch --no-tags --quiet` of `what` (refspecs, `--deepen=N`, `--unshallow`) from
        `remote`; whether it succeeded."""
        return self.git_ok(
            "fetch",
            "--no-tags",
            "--quiet",
            *[w for w in what if w.startswith("--")],
            remote,
            *[w for w in what if not w.startswith("--")],
        )

    def lfs_version(self) -> str | None:
        """`git lfs version` (None: git-lfs is not installed)."""
        proc = self.git_proc("lfs", "version")
        return proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else None

    def commit_subject(self, oid: str) -> str:
        return self.git("log", "-1", "--format=%s", oid).decode(errors="replace").strip()

    def untracked_under(self, dirs: Sequence[str]) -> list[str]:
        """Every untracked, not ignored path below `dirs` (a nested repository as `dir/`)."""
        out = self.git(*untracked_args(dirs))
        return [os.fsdecode(p) for p in out.split(b"\0") if p]

    def nested_id(self, path: str) -> str:
        """What a nested repository at `path` is recorded by: its HEAD, or the null id when it
        has no commit yet (or a broken `.git`), so that creating one is still a change."""
        return self.submodule_head(path) or "0" * (64 if self.object_format == "sha256" else 40)

    def submodule_head(self, path: str) -> str | None:
        sub = self.top / path
        if not (sub / ".git").exists():
            return None
        proc = _run(["rev-parse", "HEAD"], clean_env(), cwd=sub)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _parse_raw_fields(parts: Iterator[bytes], what: str) -> list[RawChange]:
    """The raw diff records of `what`, refused past MAX_CHANGED_PATHS."""
    changes: list[RawChange] = []
    for meta in parts:
        if not meta.startswith(b":"):
            continue
        if len(changes) >= MAX_CHANGED_PATHS:
            raise too_many_paths(what)
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode().split(" ")
        path = os.fsdecode(next(parts))
        changes.append(RawChange(status[0], old_mode, new_mode, old_oid, new_oid, path))
    return changes


def fields(stream: IO[bytes]) -> Iterator[bytes]:
    """The NUL-terminated fields of a `-z` output, read a block at a time."""
    rest = b""
    while block := stream.read(1 << 20):
        parts = (rest + block).split(b"\0")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _feed(stdin: IO[bytes] | None, data: bytes) -> None:
    assert stdin is not None
    # git gone early (killed at the cap, or failed): its error is reported from its exit status.
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        stdin.close()


def git_version() -> str:
    """`git --version` as git prints it ("" when git is missing)."""
    try:
        return _run(["--version"], dict(os.environ)).stdout.decode(errors="replace").strip()
    except CatalyticError:
        return ""


def ssh_version() -> str:
    """OpenSSH's version (`ssh -V` prints it on stderr; ssh-keygen has no version option)."""
    try:
        proc = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    except FileNotFoundError:
        return ""
    return (proc.stderr or proc.stdout).strip()


def literal(paths: Iterable[str]) -> list[str]:
    return [f":(literal){p}" for p in paths]
