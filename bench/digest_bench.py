"""Digest benchmark (issue: foundation). Not part of the test run.

    python bench/digest_bench.py [--files 100000] [--repeat 5] [--corpus bench/_corpus/digest]

Builds a seeded synthetic repository and reports the median wall time of `catalytic digest
--index` / `--worktree` with a cold and a warm hash cache, next to `git status --porcelain`,
`git ls-files -z | xargs -0 sha256sum` and the hashing limit (hashlib SHA-256 of every tracked
file in a process pool on all cores; also SHA-256 plus the git blob id, what a cold digest
computes) on the same tree, as ratios (page cache warm throughout).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
from pathlib import Path

from common import (
    CATALYTIC,
    PYTHON,
    build_repo,
    interleaved,
    median_time,
    run,
    table,
)

HASH_LIMIT = """
import hashlib, os, subprocess, sys
from concurrent.futures import ProcessPoolExecutor

def work(job):
    both, paths = job
    for p in paths:
        h, g = hashlib.sha256(), hashlib.sha1() if both else None
        with open(p, "rb", buffering=0) as f:
            if g is not None:
                g.update(b"blob %d\\0" % os.fstat(f.fileno()).st_size)
            while chunk := f.read(1 << 20):
                h.update(chunk)
                if g is not None:
                    g.update(chunk)
    return len(paths)

if __name__ == "__main__":
    files = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\\0")[:-1]
    both = sys.argv[1] == "both"
    with ProcessPoolExecutor(os.cpu_count()) as ex:
        sum(ex.map(work, [(both, files[i::256]) for i in range(256)]))
"""

LIBRARY = (
    "from catalytic_hooks.git.repo import Repo\n"
    "from catalytic_hooks.core.policy import load_policy\n"
    "from catalytic_hooks.git.hashing import HashCache\n"
    "from catalytic_hooks.git.digests import worktree_digest\n"
    "r = Repo.discover(); print(worktree_digest(r, load_policy(r.top), "
    "HashCache.for_repo(r)).digest)\n"
)

# The decomposition of a cold digest: the same build with the blob id not computed, every file's
# bytes simply taken as its index entry's blob (what trusting git's stat data would allow; unsafe,
# SECURITY.md "Caches", so it exists only here). The index's blob ids are listed first, inside
# the timed process: an upper bound.
NO_BLOB_ID = (
    "import subprocess\n"
    "from catalytic_hooks.core.policy import load_policy\n"
    "from catalytic_hooks.git import listing\n"
    "from catalytic_hooks.git.hashing import hash_disk\n"
    "from catalytic_hooks.git.repo import Repo\n"
    "from catalytic_hooks.git.snapshot import index_snapshot\n"
    "r = Repo.discover()\n"
    "top = str(r.top) + '/'\n"
    "out = subprocess.run(['git', 'ls-files', '-s', '-z'], capture_output=True).stdout\n"
    "oids = {x[x.index(b'\\t') + 1:].decode(): x[7:47].decode() for x in out.split(b'\\0') if x}\n"
    "def taken(fmt, path):\n"
    "    kind, sha, _ = hash_disk(None, path)\n"
    "    return kind, sha, oids[path[len(top):]]\n"
    "listing.hash_disk = taken\n"
    "print(index_snapshot(r, load_policy(r.top)).records.digest)\n"
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
    status_uc = median_time(
        lambda: run(["git", "-c", "core.untrackedCache=true", "status", "--porcelain"], repo),
        args.repeat,
    )
    sha = median_time(
        lambda: run(["bash", "-c", "git ls-files -z | xargs -0 sha256sum"], repo),
        max(1, args.repeat // 2),
    )
    warm_cmds = {view: [*CATALYTIC, "digest", view] for view in ("--index", "--worktree")}

    def cold(cmd: list[str]) -> None:
        drop_cache()
        run(cmd, repo)

    # The hashing limits and the cold builds interleaved, one of each per round, like the warm
    # rows: a ratio of medians taken minutes apart moves with this machine's speed.
    limit, limit2, *colds, unsafe = interleaved(
        [
            lambda: run([sys.executable, "-c", HASH_LIMIT, "sha256"], repo),
            lambda: run([sys.executable, "-c", HASH_LIMIT, "both"], repo),
            *(lambda cmd=cmd: cold(cmd) for cmd in warm_cmds.values()),
            lambda: cold([PYTHON, "-c", NO_BLOB_ID]),
        ],
        args.repeat,
    )
    rows: list[tuple[str, float, str]] = [
        ("git status --porcelain", status, "1.00× git status"),
        (
            "git status --porcelain (core.untrackedCache=true)",
            status_uc,
            f"{status_uc / status:.2f}× git status",
        ),
        ("git ls-files -z | xargs -0 sha256sum", sha, f"{sha / status:.2f}× git status"),
        (
            "hashing limit: hashlib SHA-256 of every file, all cores (interleaved with the "
            "rows below)",
            limit,
            "1.00× limit",
        ),
        (
            "hashing limit: SHA-256 + git blob id of every file, all cores",
            limit2,
            f"{limit2 / limit:.2f}× limit",
        ),
    ]
    for view, t in zip(warm_cmds, colds, strict=True):
        rows.append(
            (
                f"catalytic digest {view} (cold cache)",
                t,
                f"{t / limit:.2f}× limit, {t / limit2:.2f}× SHA-256 + blob id, "
                f"{sha / t:.2f}× faster than sha256sum",
            )
        )
    rows.append(
        (
            "the same cold --index build without the blob id (bench-only, unsafe)",
            unsafe,
            f"{unsafe / limit:.2f}× limit",
        )
    )
    drop_cache()  # nothing the unsafe build stored is used by the rows below
    for cmd in warm_cmds.values():
        run(cmd, repo)
    # Warm rows interleaved with their reference, one of each per round: this machine's
    # speed drifts, and a ratio of two medians taken minutes apart drifts with it.
    warm = interleaved(
        [
            lambda: run(["git", "status", "--porcelain"], repo),
            *(lambda cmd=cmd: run(cmd, repo) for cmd in warm_cmds.values()),
        ],
        3 * args.repeat,
    )
    status2 = warm[0]
    rows.append(
        (
            "git status --porcelain (interleaved with the two rows below)",
            status2,
            "1.00× git status",
        )
    )
    for view, t in zip(warm_cmds, warm[1:], strict=True):
        rows.append((f"catalytic digest {view} (warm cache)", t, f"{t / status2:.2f}× git status"))
    lib = median_time(lambda: run([PYTHON, "-c", LIBRARY], repo), args.repeat)
    rows.append(
        (
            "worktree digest via the Python API (no Typer CLI; what `catalytic run` uses)",
            lib,
            f"{lib / status2:.2f}× git status",
        )
    )
    text = (
        f"### digest_bench: {args.files} files, {platform.machine()}, "
        f"{platform.python_version()}\n\n" + table(rows)
    )
    print(text)


if __name__ == "__main__":
    main()
