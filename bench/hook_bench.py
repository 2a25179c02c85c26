"""Hook benchmark (issue: commit and push enforcement). Not part of the test run.

    python bench/hook_bench.py [--files 100000] [--repeat 7] [--corpus bench/_corpus/digest]

On the seeded synthetic repository (shared with digest_bench.py), reports the median wall time of
`git commit` of a one-file change with and without the native pre-commit hook, and of
`catalytic hook pre-commit` alone, next to `git status --porcelain`, as ratios in one run.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from common import CATALYTIC, build_repo, median_time, run, stager, table

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / "_corpus" / "digest")
    args = ap.parse_args()
    repo = build_repo(args.corpus, args.files)
    if not (repo / ".catalytic.toml").exists():
        (repo / ".catalytic.toml").write_text(POLICY)
        run(["git", "add", ".catalytic.toml"], repo)
        run(["git", "commit", "-q", "--no-verify", "-m", "policy"], repo)
    run([*CATALYTIC, "install", "--hook-type", "pre-commit", "--force"], repo)
    change = stager(repo)

    status = median_time(lambda: run(["git", "status", "--porcelain"], repo), args.repeat)
    plain = median_time(
        lambda: run(["git", "commit", "-q", "--no-verify", "-m", "x"], repo),
        args.repeat,
        setup=change,
    )
    hooked = median_time(
        lambda: run(["git", "commit", "-q", "-m", "x"], repo), args.repeat, setup=change
    )
    change()
    hook_alone = median_time(lambda: run([*CATALYTIC, "hook", "pre-commit"], repo), args.repeat)
    run(["git", "commit", "-q", "--no-verify", "-m", "x"], repo)
    rows = [
        ("git status --porcelain", status, "1.00× git status"),
        ("git commit (no hook)", plain, f"{plain / status:.2f}× git status"),
        (
            "git commit (pre-commit hook)",
            hooked,
            f"hook adds {(hooked - plain) / status:.2f}× git status",
        ),
        ("catalytic hook pre-commit alone", hook_alone, f"{hook_alone / status:.2f}× git status"),
    ]
    print(
        f"### hook_bench: {args.files} files, {platform.machine()}, "
        f"{platform.python_version()}\n\n" + table(rows)
    )


if __name__ == "__main__":
    main()
