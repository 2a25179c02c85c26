"""The page cache's price for the size of a write (the reason for fs.files.WRITE_SLICE).

    python bench/write_slices.py [--mib 1024] [--pause 3] [--repeat 2]

Writes MIB of random bytes to a new file in writes of 16 KiB, 32 KiB, 64 KiB and 1 MiB, the
sizes taking turns, each after PAUSE seconds of rest (long enough for a virtual machine's
balloon to hand the memory freed by the last file back to its host), and prints the wall and
system seconds of every run. Not run by the tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

SIZES = (16 << 10, 32 << 10, 64 << 10, 1 << 20)


def write(path: Path, size: int, total: int) -> tuple[float, float]:
    block = memoryview(os.urandom(size))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(total // size):
            os.write(fd, block)
    finally:
        os.close(fd)
    took = time.perf_counter() - t0
    return took, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before


def shown(runs: list[tuple[float, float]]) -> str:
    return "; ".join(f"{wall:.2f} s, {system:.2f} s" for wall, system in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--pause", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: TMPDIR)")
    args = ap.parse_args()
    total = args.mib << 20
    runs: dict[int, list[tuple[float, float]]] = {size: [] for size in SIZES}
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "f"
        for _ in range(args.repeat):
            for size in SIZES:  # interleaved, so a drift of the machine reaches every size
                time.sleep(args.pause)
                runs[size].append(write(path, size, total))
                path.unlink()
    rest = f"{args.mib} MiB after {args.pause:g} s of rest"
    print(f"| write size | {rest}: wall, system (each run) |")
    print("|---|---|")
    for size, got in runs.items():
        print(f"| {size >> 10} KiB | {shown(got)} |")


if __name__ == "__main__":
    main()
