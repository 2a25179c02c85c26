"""Server-gate benchmark (issue: enforcement that holds for a team). Not part of the test run.

    python bench/receive_bench.py [--files 100000] [--repeat 5] [--corpus bench/_corpus/digest]

On the seeded synthetic repository (shared with digest_bench.py) held by a bare server, reports
the median wall time of `catalytic hook pre-receive` judging a push of 1 commit and of 1,000
commits (each writing one durable file), next to the bare minimum any gate pays for the same
range: `git rev-list old..new` plus `git diff-tree -r` of every commit, as ratios in one run.
"""

from __future__ import annotations

import argparse
import platform
import shutil
from pathlib import Path

from common import CATALYTIC, build_repo, median_time, run, table

POLICY = 'durable_roots = ["outputs"]\ntmp_roots = ["_tmp"]\n'


def commits(bare: Path, parent: str, n: int, tag: str, files: dict[str, str] | None = None) -> str:
    """n commits on top of `parent`, each adding one durable file (or, for n=1 with `files`,
    exactly those files), via fast-import: no hooks, no working tree."""
    lines = []
    for i in range(n):
        lines.append(
            f"commit refs/bench/{tag}\nmark :{i + 1}\n"
            f"committer bench <bench@example.invalid> {1700000000 + i} +0000\n"
            f"data 6\nbench\n"
        )
        lines.append(f"from {parent}\n" if i == 0 else f"from :{i}\n")
        for path, text in (files or {f"outputs/{tag}/{i}.txt": f"{tag} {i}\n"}).items():
            lines.append(f"M 100644 inline {path}\ndata {len(text.encode())}\n{text}\n")
    run(["git", "fast-import", "--quiet"], bare, stdin="".join(lines).encode())
    return run(["git", "rev-parse", f"refs/bench/{tag}"], bare).stdout.decode().strip()


def reference(bare: Path, old: str, new: str) -> None:
    listed = run(["git", "rev-list", f"{old}..{new}"], bare).stdout
    run(["git", "diff-tree", "-r", "--stdin"], bare, stdin=listed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / "_corpus" / "digest")
    args = ap.parse_args()
    repo = build_repo(args.corpus, args.files)
    bare = args.corpus.parent / "receive-server.git"
    if bare.exists():
        shutil.rmtree(bare)
    run(["git", "clone", "-q", "--bare", str(repo), str(bare)], args.corpus.parent)
    corpus = run(["git", "rev-parse", "HEAD"], bare).stdout.decode().strip()
    # The policy on top of the corpus, as the server's current tip: it judges the pushes.
    old = commits(bare, corpus, 1, "policy", {".catalytic.toml": POLICY})
    run(["git", "update-ref", "refs/heads/main", old], bare)
    run([*CATALYTIC, "install", "--server", "--git-dir", str(bare)], bare)
    rows = []
    for n in (1, 1000):
        new = commits(bare, old, n, f"push{n}")
        line = f"{old} {new} refs/heads/main\n".encode()
        ref = median_time(lambda new=new: reference(bare, old, new), args.repeat)
        gate = median_time(
            lambda line=line: run([*CATALYTIC, "hook", "pre-receive"], bare, stdin=line),
            args.repeat,
        )
        rows.append((f"rev-list + diff-tree, {n} commit(s)", ref, "1.00× reference"))
        rows.append(
            (f"catalytic hook pre-receive, {n} commit(s)", gate, f"{gate / ref:.2f}× reference")
        )
    print(
        f"### receive_bench: {args.files} files, {platform.machine()}, "
        f"{platform.python_version()}\n\n" + table(rows)
    )


if __name__ == "__main__":
    main()
