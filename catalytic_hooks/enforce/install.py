"""Native git hooks for users without the pre-commit framework (README: "Route 2: native git
hooks").

A hook we write carries a marker line; anything without it is foreign. A foreign hook is never
overwritten unless forced, and then it is kept beside ours as `<hook>.catalytic-chained` and run
first, so installing catalytic never silently disables a check somebody relied on.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.repo import Repo

MARKER = "# managed-by: catalytic-hooks"
CHAIN_SUFFIX = ".catalytic-chained"
HOOK_TYPES = ("pre-commit", "pre-push")
SERVER_HOOK_TYPES = ("pre-receive", "update")

_TEMPLATE = """\
#!/bin/sh
{marker} (installed by `catalytic install`; remove with `catalytic uninstall`)
# The interpreter catalytic was installed with, so the hook works whatever PATH git runs with.
PY={python}
HOOK={hook}
HERE=$(dirname "$0")
CHAINED="$HERE/$HOOK{suffix}"
# A chained hook runs first with git's exact arguments and (pre-push, pre-receive) the same
# stdin.
if [ -x "$CHAINED" ]; then
    if [ "$HOOK" = pre-push ] || [ "$HOOK" = pre-receive ]; then
        STDIN=$(mktemp) || exit 1
        cat > "$STDIN"
        "$CHAINED" "$@" < "$STDIN" || {{ rc=$?; rm -f "$STDIN"; exit $rc; }}
        exec 0< "$STDIN"
        rm -f "$STDIN"
    else
        "$CHAINED" "$@" || exit $?
    fi
fi
if [ -x "$PY" ]; then
    exec "$PY" -m catalytic_hooks hook "$HOOK" "$@"
elif command -v catalytic >/dev/null 2>&1; then
    exec catalytic hook "$HOOK" "$@"
fi
echo "catalytic-hooks: $PY is gone and no 'catalytic' on PATH;" \
     "reinstall with 'catalytic install'" >&2
exit 1
"""


@dataclass(frozen=True)
class InstallResult:
    hook: str
    path: str
    action: str  # installed | updated | chained | unchanged


def hooks_dir(repo: Repo) -> Path:
    out = repo.git("rev-parse", "--git-path", "hooks").decode().strip()
    p = Path(out)
    return p if p.is_absolute() else (repo.top / p)


def is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return MARKER.encode() in fh.read(4096)
    except OSError:
        return False


def render(hook: str) -> str:
    return _TEMPLATE.format(marker=MARKER, python=shlex.quote(sys.executable), hook=hook,
                            suffix=CHAIN_SUFFIX)


def install(repo: Repo, hook_types: list[str], force: bool) -> list[InstallResult]:
    for h in hook_types:
        if h not in (*HOOK_TYPES, *SERVER_HOOK_TYPES):
            raise CatalyticError(ErrorCode.USAGE, f"unknown hook type {h!r} (choose from "
                                 f"{', '.join((*HOOK_TYPES, *SERVER_HOOK_TYPES))})")
    directory = hooks_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    plans = []
    # Decide everything before writing anything: one foreign hook refuses the whole install.
    for h in hook_types:
        path = directory / h
        foreign = (path.exists() or path.is_symlink()) and not is_ours(path)
        if foreign and not force:
            raise CatalyticError(
                ErrorCode.HOOK_EXISTS,
                f"{path} exists and was not written by catalytic-hooks; rerun with --force to "
                f"keep it as {path.name}{CHAIN_SUFFIX} and run it before catalytic",
                path=str(path),
            )
        if foreign and (directory / (h + CHAIN_SUFFIX)).exists():
            raise CatalyticError(
                ErrorCode.HOOK_EXISTS,
                f"both {path} and {path.name}{CHAIN_SUFFIX} exist; resolve by hand",
                path=str(path),
            )
        plans.append((h, path, foreign))
    results = []
    for h, path, foreign in plans:
        content = render(h).encode()
        if foreign:
            os.rename(path, directory / (h + CHAIN_SUFFIX))
            action = "chained"
        elif path.exists():
            action = "unchanged" if path.read_bytes() == content else "updated"
        else:
            action = "installed"
        if action != "unchanged":
            atomic_write(path, content, mode=0o755)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        results.append(InstallResult(h, str(path), action))
    return results


def uninstall(repo: Repo, hook_types: list[str]) -> list[InstallResult]:
    directory = hooks_dir(repo)
    results = []
    for h in hook_types:
        path = directory / h
        chained = directory / (h + CHAIN_SUFFIX)
        if not path.exists() or not is_ours(path):
            results.append(InstallResult(h, str(path), "not ours" if path.exists() else "absent"))
            continue
        path.unlink()
        if chained.exists():
            os.rename(chained, path)
            results.append(InstallResult(h, str(path), "removed; chained hook restored"))
        else:
            results.append(InstallResult(h, str(path), "removed"))
    return results
