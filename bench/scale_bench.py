"""Scale benchmark (issue: performance at monorepo scale). Not part of the test run.

    python bench/scale_bench.py [--sizes 10000,100000,1000000] [--repeat 5]

Seeded corpora of small files (bench/_corpus/scale-N, written with `git fast-import`). For each
size, next to its git reference measured in the same run:

- the pre-commit hook for a one-file change against `git diff-index --cached --quiet HEAD` plus
  `python -c pass` (reading the index once and starting the interpreter: the floor of any hook
  written in Python);
- the pre-push hook for one pushed commit against `git diff-tree -r --quiet` of that commit plus
  `python -c pass`;
- a warm `digest --worktree` against `git status --porcelain`;
- the peak resident memory of the digest process itself (its own maximum RSS, not git's): warm,
  after the index changed (the stored snapshot patched), and built from nothing.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from common import (
    CATALYTIC,
    CORPUS,
    PYTHON,
    build_small_repo,
    interleaved,
    run,
    stager,
)

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'
RSS = (
    "import resource, sys\nfrom catalytic_hooks.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def peak_mb(repo: Path, *args: str) -> float:
    proc = subprocess.run(
        [PYTHON, "-c", RSS, *args], cwd=repo, capture_output=True, text=True, check=True
    )
    return int(proc.stderr.strip().splitlines()[-1]) / 1024


def measure(n: int, repeat: int) -> list[tuple[str, str, str, str]]:
    repo = build_small_repo(CORPUS / f"scale-{n}", n, policy=POLICY)
    change = stager(repo)

    rows = []
    change()
    # Each hook interleaved with its floor's two parts, one of each per round: this machine's
    # speed drifts, and so would a ratio of medians taken minutes apart.
    py, diff, hook = interleaved(
        [
            lambda: run([PYTHON, "-c", "pass"], repo),
            lambda: run(["git", "diff-index", "--cached", "--quiet", "HEAD"], repo, check=False),
            lambda: run([*CATALYTIC, "hook", "pre-commit"], repo),
        ],
        3 * repeat,
    )
    floor = py + diff
    rows.append(
        (
            f"{n:,}",
            "hook pre-commit (one staged file)",
            f"{hook * 1000:.0f} ms",
            f"{hook / floor:.2f}× diff-index + python ({floor * 1000:.0f} ms)",
        )
    )
    run(["git", "commit", "-q", "--no-verify", "-m", "bench"], repo)
    new = run(["git", "rev-parse", "HEAD"], repo).stdout.decode().strip()
    old = run(["git", "rev-parse", "HEAD~1"], repo).stdout.decode().strip()
    line = f"refs/heads/main {new} refs/heads/main {old}\n".encode()
    py, tree, push = interleaved(
        [
            lambda: run([PYTHON, "-c", "pass"], repo),
            lambda: run(["git", "diff-tree", "-r", "--quiet", old, new], repo, check=False),
            lambda: run([*CATALYTIC, "hook", "pre-push", "origin", "/dev/null"], repo, stdin=line),
        ],
        3 * repeat,
    )
    push_floor = py + tree
    rows.append(
        (
            f"{n:,}",
            "hook pre-push (one commit)",
            f"{push * 1000:.0f} ms",
            f"{push / push_floor:.2f}× diff-tree + python ({push_floor * 1000:.0f} ms)",
        )
    )
    run([*CATALYTIC, "digest", "--worktree"], repo)
    status, warm = interleaved(
        [
            lambda: run(["git", "status", "--porcelain"], repo),
            lambda: run([*CATALYTIC, "digest", "--worktree"], repo),
        ],
        2 * repeat,
    )
    rows.append(
        (
            f"{n:,}",
            "digest --worktree (warm)",
            f"{warm * 1000:.0f} ms",
            f"{warm / status:.2f}× git status ({status * 1000:.0f} ms)",
        )
    )
    warm_mb = peak_mb(repo, "digest", "--worktree")
    change()
    patched_mb = peak_mb(repo, "digest", "--index")
    shutil.rmtree(repo / ".git" / "catalytic", ignore_errors=True)
    cold_mb = peak_mb(repo, "digest", "--index")
    run(["git", "commit", "-q", "--no-verify", "-m", "bench"], repo)
    rows.append(
        (
            f"{n:,}",
            "digest peak RSS (own process)",
            f"{warm_mb:.0f} / {patched_mb:.0f} / {cold_mb:.0f} MB",
            "warm / index changed (patched) / built from nothing",
        )
    )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows += measure(n, args.repeat)
    out = [
        "| files | measurement | median | ratio to the same-run reference |",
        "|---:|---|---:|---|",
    ]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    print(
        f"### scale_bench: {platform.machine()}, {platform.python_version()}\n\n" + "\n".join(out)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
