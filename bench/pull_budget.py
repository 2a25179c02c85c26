"""Where a pull's time goes: the CPU budget behind the pull figure of registry_bench.py.

    python bench/pull_budget.py [--mib 1024] [--repeat 5]

Serves one blob of MIB random bytes from Debian's docker-registry on loopback and, in every
round, downloads it into a new file three ways, each in a fresh process, the order rotating
from round to round:

- `curl`: `curl -o FILE`, the reference of registry_bench.py;
- `checked`: the pull's transfer (`Client.get_blob` into `Cache.store`: the kernel moves the
  body into the file, a second thread hashes it as it lands, size checked), without the
  command's start and manifest;
- `unchecked`: the same client and the same move with no digest, to show what the check
  costs; a measurement only, never a path of the product;
- `curl+openssl`: `curl -o FILE` then `openssl dgst -sha256 FILE`, a download checked with
  standard tools (the processor's SHA extensions, as the pull's hash; coreutils' `sha256sum`
  has none here and takes four times as long).

For each it prints the wall time, the process's user and system CPU (wait4), and the CPU the
registry spent serving it (/proc/PID/stat); then the medians, SHA-256 of MIB in memory on one
core, and how long `checked` went on hashing after its last byte landed. Not run by the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from budget import Row, median, print_medians, random_blob, timed, upload_url

WAYS = ("curl", "checked", "unchecked", "curl+openssl")


def child(way: str, host: str, digest: str, size: int, out: Path) -> None:
    """One download in this process: `checked` is the pull's own transfer, unchanged."""
    from catalytic_hooks.fs.files import write_sliced
    from catalytic_hooks.registry.cache import BUFFER, Cache
    from catalytic_hooks.registry.client import Client
    from catalytic_hooks.registry.reference import parse

    client = Client(parse(f"oci://{host}/budget/blob@{digest}"))
    resp = client.get_blob(digest, size)
    if way == "checked":
        from catalytic_hooks.registry import cache

        # How long the hashing thread runs on after the last byte landed (the measurement
        # wraps the method; the pull itself is unchanged): the part of the check that the
        # transfer could not hide.
        finish = cache._HashFile.finish
        tail: list[float] = []

        def timed(self: cache._HashFile, upto: int) -> str:
            t0 = time.perf_counter()
            try:
                return finish(self, upto)
            finally:
                tail.append(time.perf_counter() - t0)

        cache._HashFile.finish = timed  # type: ignore[method-assign]
        stored = Cache(out.parent / "cache").store(resp, digest, size)
        os.replace(stored, out)
        print(f"tail {tail[0]:.4f}")
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if resp.move_into(fd, size, lambda _: None) is None:  # as Cache.store falls back
            buf = memoryview(bytearray(BUFFER))
            while n := resp.readinto(buf):
                write_sliced(fd, buf[:n])
    finally:
        os.close(fd)
        resp.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        way, host, digest, size, out = args.child
        child(way, host, digest, int(size), Path(out))
        return
    from tests.registries import Distribution  # here: a child needs none of the test helpers

    work = Path(tempfile.mkdtemp(prefix="pull-budget-"))
    blob = work / "blob"
    digest, size = random_blob(blob, args.mib)
    reg = Distribution(work).start()
    assert reg.proc is not None
    rows: dict[str, list[Row]] = {w: [] for w in WAYS}
    tails: list[float] = []
    try:
        put = upload_url(reg.host, "budget/blob", digest)
        subprocess.run(["curl", "-sf", "-X", "PUT", "-T", str(blob), put], check=True)
        blob.unlink()
        url = f"http://{reg.host}/v2/budget/blob/blobs/{digest}"
        out = work / "out"
        for i in range(args.repeat):
            for way in WAYS[i % len(WAYS) :] + WAYS[: i % len(WAYS)]:
                cmd = ["curl", "-sf", "-o", str(out), url]
                if way == "curl+openssl":
                    cmd = ["sh", "-c", 'curl -sf -o "$1" "$2" && openssl dgst -sha256 "$1"']
                    cmd += ["sh", str(out), url]
                elif way != "curl":
                    cmd = [sys.executable, __file__, "--child", way, reg.host, digest]
                    cmd += [str(size), str(out)]
                row, status, printed = timed(cmd, reg.proc.pid, f"round {i + 1} {way}")
                said = printed.split()
                if way == "checked" and said[:1] == [b"tail"]:
                    tails.append(float(said[1]))
                if status != 0 or out.stat().st_size != size:
                    raise SystemExit(f"{way} failed")
                out.unlink()
                shutil.rmtree(work / "cache", ignore_errors=True)
                rows[way].append(row)
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    data = memoryview(os.urandom(1 << 20))
    t0 = time.perf_counter()
    h = hashlib.sha256()
    for _ in range(args.mib):
        h.update(data)
    alone = time.perf_counter() - t0
    print_medians(rows, args.mib, args.repeat)
    print(f"\nSHA-256 of {args.mib} MiB in memory, one core: {alone:.2f} s")
    if tails:
        print(f"`checked`: the hash finished {median(tails):.2f} s after the last byte landed")


if __name__ == "__main__":
    main()
