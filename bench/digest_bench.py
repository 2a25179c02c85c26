"""Digest benchmark (issue: foundation). Not part of the test run.

    python bench/digest_bench.py [--files 100000] [--repeat 5] [--corpus bench/_corpus/digest]

Builds a seeded synthetic repository and reports the median wall time of `catalytic digest
--index` / `--worktree` with a cold and a warm hash cache, next to `git status --porcelain` and
`git ls-files -z | xargs -0 sha256sum` on the same tree, as ratios (page cache warm throughout).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
from pathlib import Path

from common import CATALYTIC, build_repo, median_time, run, table

LIBRARY = (
    "from catalytic_hooks.git.repo import Repo\n"
    "from catalytic_hooks.core.policy import load_policy\n"
    "from catalytic_hooks.git.hashing import HashCache\n"
    "from catalytic_hooks.git.digests import worktree_digest\n"
    "r = Repo.discover(); print(worktree_digest(r, load_policy(r.top), "
    "HashCache.for_repo(r)).digest)\n"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / "_corpus" / "digest")
    args = ap.parse_args()
    repo = build_repo(args.corpus, args.files)
    cache = repo / ".git" / "catalytic"

    def drop_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    status = median_time(lambda: run(["git", "status", "--porcelain"], repo), args.repeat)
    run(["git", "-c", "core.untrackedCache=true", "status", "--porcelain"], repo)
    status_uc = median_time(lambda: run(["git", "-c", "core.untrackedCache=true", "status",
                                         "--porcelain"], repo), args.repeat)
    sha = median_time(lambda: run(["bash", "-c", "git ls-files -z | xargs -0 sha256sum"],
                                  repo), max(1, args.repeat // 2))
    rows: list[tuple[str, float, str]] = [
        ("git status --porcelain", status, "1.00× git status"),
        ("git status --porcelain (core.untrackedCache=true)", status_uc,
         f"{status_uc / status:.2f}× git status"),
        ("git ls-files -z | xargs -0 sha256sum", sha, f"{sha / status:.2f}× git status"),
    ]
    for view in ("--index", "--worktree"):
        cmd = [*CATALYTIC, "digest", view]
        cold = median_time(lambda cmd=cmd: run(cmd, repo), max(1, args.repeat // 2),
                           setup=drop_cache)
        run(cmd, repo)
        warm = median_time(lambda cmd=cmd: run(cmd, repo), args.repeat)
        rows.append((f"catalytic digest {view} (cold cache)", cold,
                     f"{sha / cold:.2f}× faster than sha256sum"))
        rows.append((f"catalytic digest {view} (warm cache)", warm,
                     f"{warm / status:.2f}× git status, {warm / status_uc:.2f}× with "
                     "untracked cache"))
    lib = median_time(lambda: run([sys.executable, "-c", LIBRARY], repo), args.repeat)
    rows.append(("worktree digest via the Python API (no Typer CLI; what `catalytic run` uses)",
                 lib, f"{lib / status:.2f}× git status"))
    text = (f"### digest_bench: {args.files} files, {platform.machine()}, "
            f"{platform.python_version()}\n\n" + table(rows))
    print(text)


if __name__ == "__main__":
    main()
