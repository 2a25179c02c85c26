"""How this tool runs git: the one place that builds a git command line and its environment.

Every git process the tool starts (git.repo's `Repo` methods, git.earlyspawn's spawned quick-path
processes, git.rangediff's batch processes) gets its argument vector from `git_argv` and its
environment from `git_env`; tests/test_architecture.py fails on a `["git", ...]` literal anywhere
else. So a decision made here holds for every call, including ones not written yet:

- **Objects are judged as they are.** git substitutes objects named by `refs/replace/*` and
  parents named by `info/grafts` in every command that reads objects; a pushed replace ref or a
  planted graft would make git show this tool an innocent commit, tree or policy blob in place of
  the real one. `GIT_NO_REPLACE_OBJECTS=1` turns replacement off, and `GIT_GRAFT_FILE` naming a
  path that cannot exist turns grafts off (`--no-replace-objects` alone does not: with git 2.39 a
  graft still rewrites `git log` and `git rev-list` under it; tests/test_security_replace.py).
  Both are environment variables, so git's own child processes inherit them. libgit2 (pygit2,
  used only to read objects by id: blobs, a commit's message and tree) has no replace-object
  support; it does apply `info/grafts` to a commit's parents, which this tool never asks it for.
- **Hooks never run** from a command of this tool: `core.hooksPath=/dev/null` on the command line
  (it outranks every configuration file). `git commit`, `git worktree add`, `git fetch` and
  `git update-ref` would otherwise run the repository's (or a checked-out commit's) hooks,
  `reference-transaction` included. The only exception is a command that reads git's
  configuration back (`config_read=True`): there the override would be reported as the
  repository's own setting.
- **Raw diffs are read one way**: `DIFF_FLAGS`, whatever `diff.*`, `status.*` or a committed
  `.gitmodules` (`submodule.<name>.ignore`) configure.
- **Every other setting forced on git** is spelled here too: `overrides` (`-c KEY=VALUE` on one
  command line) and `overrides_env` (the same through git's `GIT_CONFIG_COUNT` environment, for
  every command of a repository view), with the settings themselves (`RUN_PINNED`,
  `NO_NEGOTIATION`, `ssh_verifier`). `REPOSITORY_ENV` names the variables that locate a
  repository: honoured in a hook for the repository being committed to, stripped (git.repo's
  `clean_env`) before touching any other.

This module imports only `os`: git.earlyspawn and git.quickdigest use it before anything heavy
loads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# A file under /dev/null can never exist (ENOTDIR), and git reads a missing graft file silently;
# /dev/null itself would be read as an empty graft file, with git's deprecation hint every time.
NO_GRAFTS = os.path.join(os.devnull, "catalytic-no-grafts")
OBJECTS_AS_THEY_ARE = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_GRAFT_FILE": NO_GRAFTS}
# The setting that says where git finds hooks (also what `catalytic doctor` reports).
HOOKS_PATH = "core.hooksPath"


def overrides(*settings: tuple[str, str]) -> tuple[str, ...]:
    """`-c KEY=VALUE` for each setting: forced for one command, above every configuration file."""
    return tuple(a for key, value in settings for a in ("-c", f"{key}={value}"))


NO_HOOKS = overrides((HOOKS_PATH, os.devnull))
# Variables git sets for a hook; honoured for the repository being committed to, stripped
# before touching any other repository or worktree.
REPOSITORY_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
    "GIT_EXEC_PATH_OVERRIDE",
)
# What a run's digests are taken under (git.runstate.pinned), outranking whatever the repository,
# the user or the command configured.
# `sparse.expectFilesOutsideOfPatterns`: keep the skip-worktree bit of a file that appears
# outside the sparse cone (git would otherwise drop it while reading the index), so such a write
# is seen and undone like any other instead of looking like a change of index flags.
# `core.trustctime`, `core.checkStat`: with either relaxed by the repository's configuration, a
# command could rewrite a file keeping its size, inode and mtime (which anyone can set back) and
# `git status` would call it unchanged; the ctime is what a write cannot put back.
RUN_PINNED = (
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.ignoreStat", "false"),
    ("sparse.expectFilesOutsideOfPatterns", "true"),
    ("core.trustctime", "true"),
    ("core.checkStat", "default"),
)
# A batch fetch of promised objects asks for exactly the ids given, the way git's own lazy fetch
# does, without negotiating what the client already has.
NO_NEGOTIATION = overrides(("fetch.negotiationAlgorithm", "noop"))


def ssh_verifier(allowed_signers: str) -> tuple[str, ...]:
    """How a commit's SSH signature is checked, forced on the command line so that the judged
    repository cannot swap the verifier: OpenSSH's ssh-keygen against `allowed_signers`."""
    return overrides(
        ("gpg.format", "ssh"),
        ("gpg.ssh.allowedSignersFile", allowed_signers),
        ("gpg.ssh.program", "ssh-keygen"),
    )


def overrides_env(env: Mapping[str, str], settings: Sequence[tuple[str, str]]) -> dict[str, str]:
    """`env` with `settings` forced for every git command run under it (GIT_CONFIG_COUNT is git's
    documented way to pass `-c` through the environment), after any it already forces."""
    out = dict(env)
    n = int(out.get("GIT_CONFIG_COUNT", "0") or 0)
    for key, value in settings:
        out[f"GIT_CONFIG_KEY_{n}"] = key
        out[f"GIT_CONFIG_VALUE_{n}"] = value
        n += 1
    out["GIT_CONFIG_COUNT"] = str(n)
    return out


# Every raw diff (diff-tree, diff-index): recursive, NUL-separated, no rename or copy detection
# (a rename is a deletion and an addition, each judged), submodules always compared, and neither
# an external diff driver nor a textconv filter run (a repository's configuration names them).
DIFF_FLAGS = (
    "-r",
    "-z",
    "--no-renames",
    "--ignore-submodules=none",
    "--no-ext-diff",
    "--no-textconv",
)


def git_argv(args: Sequence[str], *, config_read: bool = False) -> list[str]:
    """The command line of `git ARGS` as this tool runs it."""
    return ["git", *(() if config_read else NO_HOOKS), *args]


def git_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with replacement and grafts off (they override whatever `env` says)."""
    return {**env, **OBJECTS_AS_THEY_ARE}


def shown(argv: Sequence[str]) -> str:
    """The first words of a command built by `git_argv`, for a message (without the override)."""
    rest = list(argv[1:])
    if rest[:2] == list(NO_HOOKS):
        rest = rest[2:]
    return " ".join(str(a) for a in rest[:3])
