"""Restore benchmark (issue: restore engine). Not part of the test run.

    python bench/restore_bench.py [--repeat 3] [--scale 1.0]

Two corpora: 1 GiB in 1,000 files, and 20,000 small files. For each, the median wall time of
`catalytic restore bundle` (verification, staging with copy+hash, fsync, placement,
post-verification) next to `cp -r` followed by `sha256sum` of the copy, in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
from pathlib import Path

from common import CATALYTIC, median_time, run, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(base: Path, files: int, size: int) -> Path:
    marker = base / ".complete"
    if marker.exists() and marker.read_text() == f"{files} {size}":
        _own_repository(base)
        return base
    shutil.rmtree(base, ignore_errors=True)
    rng = random.Random(files)
    block = rng.randbytes(max(size, 1) + 4096)
    hashes = {}
    for i in range(files):
        rel = f"out/d{i % 50:02d}/f{i:05d}.bin"
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = f"{i}".encode() + block[i % 4096 : i % 4096 + size]
        p.write_bytes(data)
        hashes[rel] = "sha256:" + hashlib.sha256(data).hexdigest()
    from catalytic_hooks.bundle.keys import signer_from_seed
    from catalytic_hooks.bundle.sign import sign_run_dir

    run_dir = base / "_runs" / "bench"
    run_dir.mkdir(parents=True)
    (run_dir / "TASK_SPEC.json").write_text('{"task_id":"bench"}')
    (run_dir / "STATUS.json").write_text('{"status":"success","cmp01":"pass"}')
    (run_dir / "OUTPUT_HASHES.json").write_text(json.dumps({"hashes": hashes}))
    (run_dir / "PROOF.json").write_text('{"restoration_result":{"verified":true}}')
    sign_run_dir(run_dir, signer_from_seed(b"\x01" * 32))
    marker.write_text(f"{files} {size}")
    _own_repository(base)
    return base


def _own_repository(base: Path) -> None:
    # A restore records itself in the chronicle of the repository holding the project; without
    # a repository of its own the corpus would record into this checkout's.
    if not (base / ".git").exists():
        subprocess.run(["git", "init", "-q", str(base)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the corpora for a quick run")
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / "_corpus")
    args = ap.parse_args()
    rows = []
    for label, files, size in (
        ("1 GiB in 1,000 files", int(1000 * args.scale), 1 << 20),
        ("20,000 small files", int(20000 * args.scale), 2048),
    ):
        proj = build(args.corpus / f"restore-{files}-{size}", files, size)

        def fresh(target: Path = args.corpus / "restore-target") -> None:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)

        target = args.corpus / "restore-target"

        def restore(proj: Path = proj, target: Path = target) -> None:
            run(
                [
                    *CATALYTIC,
                    "restore",
                    "bundle",
                    str(proj / "_runs/bench"),
                    "--project-root",
                    str(proj),
                    "--restore-root",
                    str(target),
                    "--allow-untrusted",
                ],
                proj,
            )

        def cp_sha(proj: Path = proj, target: Path = target) -> None:
            run(
                [
                    "bash",
                    "-c",
                    f"cp -r '{proj}/out' '{target}/out' && "
                    f"find '{target}/out' -type f -print0 | xargs -0 sha256sum > /dev/null",
                ],
                proj,
            )

        t_cat = median_time(restore, args.repeat, setup=fresh)
        t_ref = median_time(cp_sha, args.repeat, setup=fresh)
        rows.append((f"{label}: cp -r + sha256sum", t_ref, "1.00×"))
        rows.append(
            (f"{label}: catalytic restore bundle", t_cat, f"{t_cat / t_ref:.2f}× cp -r + sha256sum")
        )
        shutil.rmtree(target, ignore_errors=True)
    print(
        f"### restore_bench: {platform.machine()}, {platform.python_version()}, "
        f"{os.cpu_count()} cores\n\n" + table(rows)
    )


if __name__ == "__main__":
    main()
