"""The git state a run's command could use to hide its mutations from the POST digest.

`git status` trusts the index flags (`skip-worktree`, `assume-unchanged`), the ignore rules
(`.git/info/exclude`, `core.excludesFile`), `core.fsmonitor` and the untracked cache. A command
run by `catalytic run` can change every one of them. So the run's digests come from a repository
view with fsmonitor, the untracked cache and `core.ignoreStat` switched off on the command line
(which outranks every config file), entries flagged at PRE or POST are re-hashed from disk, and a
fingerprint of the git state taken before the command is compared with one taken after it: any
difference fails the run, naming what changed.

The rules git reads from files are part of that state: which files it ignores (`.gitignore`
files, wherever they are, tracked, untracked or ignored themselves) and how it compares a file
with its blob (`.gitattributes` files, the global and system attributes files): a command that
ignores what it added, or marks a file it rewrote with a conversion that gives back the committed
blob, would otherwise pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.fs.files import atomic_write, sha256_path
from catalytic_hooks.git.indexid import identity_of
from catalytic_hooks.git.invoke import RUN_PINNED, overrides_env
from catalytic_hooks.git.refs import put_back_replace_refs, replace_refs
from catalytic_hooks.git.repo import Repo, literal
from catalytic_hooks.git.statefiles import trusted_files


def pinned(repo: Repo) -> Repo:
    """The same repository with git.invoke's `RUN_PINNED` settings forced for every git call."""
    env = overrides_env(repo.env, RUN_PINNED)
    view = Repo(repo.top, repo.git_dir, repo.common_dir, env)
    view._object_format = repo._object_format  # a repository's format never changes
    return view


@dataclass(frozen=True)
class IndexFlags:
    """Index entries git status does not look at: `assumed` (assume-unchanged, a lower-case
    tag of `ls-files -v`) and `sparse` (skip-worktree, tag S: outside a sparse checkout)."""

    assumed: frozenset[str] = frozenset()
    sparse: frozenset[str] = frozenset()

    @property
    def all(self) -> frozenset[str]:
        return self.assumed | self.sparse

    def union(self, other: IndexFlags) -> IndexFlags:
        return IndexFlags(self.assumed | other.assumed, self.sparse | other.sparse)


def index_file(repo: Repo) -> Path:
    env = repo.env.get("GIT_INDEX_FILE")
    if env:
        p = Path(env)
        return p if p.is_absolute() else repo.top / p
    return repo.git_dir / "index"


def index_identity(repo: Repo) -> str | None:
    """Size, inode, mtime and trailing checksum of the index file (None: no index yet)."""
    return identity_of(str(index_file(repo)))


_flag_memo: dict[tuple[Path, str], IndexFlags] = {}


def flagged_entries(repo: Repo) -> IndexFlags:
    """The flagged entries of the index; remembered for an index identity (its checksum covers
    every flag), so a run's PRE and POST phases list an unchanged index once."""
    ident = index_identity(repo)
    if ident is not None and (repo.top, ident) in _flag_memo:
        return _flag_memo[(repo.top, ident)]
    out = repo.git("ls-files", "-v", "-z", "--full-name")
    assumed, sparse = set(), set()
    # Usually every record is tagged "H " (cached, no flag): two C-level counts say so without
    # splitting 100,000 records in Python.
    plain = out.count(b"\0H ") + out.startswith(b"H ") == out.count(b"\0")
    for raw in () if plain else out.split(b"\0"):
        rec = raw.decode("utf-8", "surrogateescape")
        if len(rec) > 2:
            if rec[0] == "S":
                sparse.add(rec[2:])
            elif rec[0].islower():
                assumed.add(rec[2:])
    flags = IndexFlags(frozenset(assumed), frozenset(sparse))
    if ident is not None and ident == index_identity(repo):
        _flag_memo.clear()
        _flag_memo[(repo.top, ident)] = flags
    return flags


def _hash_tree(base: Path, label: str, into: dict[str, str]) -> None:
    """Every file (and symlink) under `base`, by content; a directory that is absent is not."""
    if not base.is_dir() or base.is_symlink():
        if base.is_symlink() or base.exists():
            into[label] = _file_hash(base)
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath, name)
            into[f"{label}/{p.relative_to(base).as_posix()}"] = _file_hash(p)


def _file_hash(p: Path) -> str:
    """Streamed, and never opening a FIFO or a device the command left there (its read would
    wait for ever, with the undo still to do)."""
    try:
        if p.is_symlink():
            return "link:" + os.readlink(p)
        mode = os.lstat(p).st_mode
        if not stat.S_ISREG(mode):
            return f"not a file:{stat.S_IFMT(mode):o}"
        return sha256_path(p)
    except OSError as exc:
        return f"unreadable:{exc.errno}"


# Where git finds the system-wide attributes (`$(prefix)/etc/gitattributes`; /etc with the
# usual prefix /usr). git 2.42 and later say where with `git var GIT_ATTR_SYSTEM`.
SYSTEM_ATTRIBUTES = "/etc/gitattributes"
RULE_FILES = (".gitignore", ".gitattributes")
RULE_FILE = "rule file "  # the prefix of a rule file's name in `git_state`
# A rule file whose name is not text (not UTF-8, or with a line break): named escaped, and never
# put back by `run --restore` (neither a record nor `git hash-object --stdin-paths` holds it).
ODD_RULE_FILE = "rule file, name escaped: "
# Pathspec magic honoured whatever the caller's environment says (GIT_LITERAL_PATHSPECS=1 would
# make `:(glob)**/.gitignore` match nothing).
_MAGIC_PATHSPECS = {"GIT_LITERAL_PATHSPECS": "0", "GIT_NOGLOB_PATHSPECS": "0"}


def plain_name(path: str) -> bool:
    """Whether `path` is text a record, a report and `git hash-object --stdin-paths` hold."""
    if "\n" in path or "\r" in path:
        return False
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, decoded with surrogateescape
        return False
    return True


def rule_files(repo: Repo) -> list[str]:
    """Every `.gitignore` and `.gitattributes` in the working tree that can change how git sees
    a path it does not already ignore: tracked, untracked, or ignored themselves (no exclude
    rule applied: `printf '*\\n' > src/.gitignore` ignores itself). Left out: those in a
    directory that rules outside it ignore (`.pytest_cache/.gitignore` where the repository
    ignores `.pytest_cache/`: pytest, mypy and ruff write one with every cache) and that holds
    no tracked file, for there they rule only over what is ignored anyway. Nested
    repositories are not entered."""
    out = repo.git(
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--full-name",
        "--",
        *(f":(glob)**/{name}" for name in RULE_FILES),
        extra_env=_MAGIC_PATHSPECS,
    )
    found = sorted(
        {
            p
            for raw in out.split(b"\0")
            if raw
            and (p := raw.decode("utf-8", "surrogateescape")).rsplit("/", 1)[-1] in RULE_FILES
        }
    )
    dirs = sorted({p.rsplit("/", 1)[0] for p in found if "/" in p})
    if not dirs:
        return found
    # check-ignore judges a directory by the rules of the directories above it, never by its
    # own rule files; a path inside an ignored directory is reported ignored too.
    listed = repo.git(
        "check-ignore",
        "-z",
        "--stdin",
        # Each line is a pathspec to check-ignore, which refuses the `literal` magic: `:build`
        # would be the short magic form of `build`, and a directory named so would pass for an
        # ignored one. After `./` nothing is magic; git echoes the line as given.
        input=b"".join(b"./" + os.fsencode(d) + b"\0" for d in dirs),
        check=False,
    )
    ignored = {os.fsdecode(d[2:]) for d in listed.split(b"\0") if d.startswith(b"./")}
    if not ignored:
        return found
    tracked = repo.git(
        "ls-files",
        "-z",
        "--cached",
        "--full-name",
        "--",
        *literal(sorted(ignored)),
        extra_env=_MAGIC_PATHSPECS,
    )
    holding = {os.fsdecode(t).rsplit("/", 1)[0] for t in tracked.split(b"\0") if t}
    live = {d for d in ignored if any(h == d or h.startswith(d + "/") for h in holding)}
    return [p for p in found if "/" not in p or p.rsplit("/", 1)[0] not in ignored - live]


def _system_attributes(repo: Repo) -> str:
    return repo.git_var("GIT_ATTR_SYSTEM") or SYSTEM_ATTRIBUTES


def git_state(repo: Repo, judges: Callable[[str], bool] | None = None) -> dict[str, str]:
    """Name → fingerprint of the configuration (every level, as git resolves it), the repository's
    config files, `info/`, hooks, the global excludes and attributes files, the system attributes
    file, the index flags and the rule files (`rule_files`) for which `judges` is true (None:
    every one): those whose directory can hold a path the run is judged on."""
    state: dict[str, str] = {}
    config = repo.config_list()
    state["git config (all levels)"] = hashlib.sha256(config).hexdigest()
    dirs = {repo.common_dir, repo.git_dir}
    for d in sorted(dirs):
        prefix = ".git" if d == repo.common_dir else f".git/worktrees/{d.name}"
        for name in ("config", "config.worktree", "info", "hooks"):
            _hash_tree(d / name, f"{prefix}/{name}", state)
    excludes = repo.config_get("core.excludesFile")
    if excludes is None:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        excludes = os.path.join(xdg, "git", "ignore")
    _hash_tree(Path(os.path.expanduser(excludes)), "core.excludesFile", state)
    attributes = repo.config_get("core.attributesFile")
    if attributes is None:
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        attributes = os.path.join(xdg, "git", "attributes")
    _hash_tree(Path(os.path.expanduser(attributes)), "core.attributesFile", state)
    _hash_tree(Path(_system_attributes(repo)), "system attributes", state)
    for path in rule_files(repo):
        if judges is None or judges(path):
            name = RULE_FILE + path if plain_name(path) else ODD_RULE_FILE + ascii(path)
            state[name] = _file_hash(repo.top / path)
    flags = "\0".join(sorted(flagged_entries(repo).all))
    state["index flags (skip-worktree, assume-unchanged)"] = hashlib.sha256(
        flags.encode("utf-8", "surrogateescape")
    ).hexdigest()
    # What makes the user's own git show other objects than the ones named (this tool reads with
    # both off: git.invoke): a replace ref would make `git show` and `git checkout -- PATH` hand
    # out bytes of the command's choosing for a protected file. `info/grafts` is under info/.
    for ref, oid in replace_refs(repo).items():
        state[f"replace ref {ref}"] = oid
    graft_file = os.environ.get("GIT_GRAFT_FILE")
    if graft_file:
        _hash_tree(Path(graft_file), "GIT_GRAFT_FILE", state)
    return state


@dataclass(frozen=True)
class Substitutions:
    """The replace refs and graft files as they were (a graft file's bytes, None: absent)."""

    replace: dict[str, str]
    grafts: dict[str, bytes | None]


def _graft_files(repo: Repo) -> list[Path]:
    files = [repo.common_dir / "info" / "grafts"]
    if os.environ.get("GIT_GRAFT_FILE"):
        files.append(Path(os.environ["GIT_GRAFT_FILE"]))
    return files


_NOT_REGULAR = object()


def _graft_state(path: Path) -> bytes | object | None:
    """A graft file's bytes, None when absent, _NOT_REGULAR for anything else (left alone)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return _NOT_REGULAR
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return _NOT_REGULAR


def substitutions(repo: Repo) -> Substitutions:
    """The replace refs and the graft files (plain files or absent ones: anything else is not
    this tool's to put back) as they are now."""
    grafts: dict[str, bytes | None] = {}
    for p in _graft_files(repo):
        got = _graft_state(p)
        if got is None or isinstance(got, bytes):
            grafts[str(p)] = got
    return Substitutions(replace_refs(repo), grafts)


def put_back_substitutions(repo: Repo, before: Substitutions) -> list[str]:
    """Undo a run's command's replace refs and grafts (`before`: from `substitutions` at PRE);
    what was put back, by name."""
    done = put_back_replace_refs(repo, before.replace)
    for path, data in sorted(before.grafts.items()):
        now = _graft_state(Path(path))
        if now == data:
            continue
        if data is None:
            os.unlink(path)  # a file or link the command made: never what a link points to
        else:
            atomic_write(Path(path), data)  # replaces a link, never writes through it
        done.append(path)
    return sorted(done)


def _cache_files(repo: Repo) -> list[Path]:
    """What a later digest or hook of any worktree of this repository trusts
    (git.statefiles.trusted_files): a command run in one worktree can write another's."""
    return [Path(p) for p in trusted_files(str(repo.common_dir))]


def cache_state(repo: Repo) -> list[str]:
    """Identity of every trusted state file of every worktree (size, inode, mtime, ctime: a
    write cannot put the ctime back). Taken just before and just after a run's command: a command
    that wrote them could make this or a later digest trust values it chose."""
    sig = []
    for p in _cache_files(repo):
        with contextlib.suppress(OSError):
            st = os.lstat(p)
            sig.append(f"{p}:{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}")
    return sig


def drop_caches(repo: Repo) -> None:
    """Remove every worktree's trusted state files (rebuilt from git objects and disk later;
    never a run journal)."""
    for p in _cache_files(repo):
        with contextlib.suppress(OSError):
            p.unlink()


def state_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def filtered_paths(repo: Repo, paths: list[str]) -> frozenset[str]:
    """Paths whose bytes on disk may differ from their blob (a clean/smudge filter such as
    git-lfs, eol=crlf, ident, working-tree-encoding, core.autocrlf): restoring them from the
    blob would not give back the same bytes, so their snapshot is taken from disk."""
    if not paths:
        return frozenset()
    if (repo.config_get("core.autocrlf") or "").lower() in ("true", "input"):
        return frozenset(paths)
    out = repo.git(
        "check-attr",
        "-z",
        "--stdin",
        "filter",
        "eol",
        "ident",
        "working-tree-encoding",
        input="".join(p + "\0" for p in paths).encode("utf-8", "surrogateescape"),
    )
    parts = out.decode("utf-8", "surrogateescape").split("\0")
    found = set()
    for i in range(0, len(parts) - 2, 3):
        path, attr, value = parts[i], parts[i + 1], parts[i + 2]
        if value in ("unspecified", "unset") or (attr == "eol" and value == "lf"):
            continue
        found.add(path)
    return frozenset(found)
