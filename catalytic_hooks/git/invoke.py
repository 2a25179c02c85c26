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
NO_HOOKS = ("-c", f"core.hooksPath={os.devnull}")
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
