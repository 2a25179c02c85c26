"""Registries (issue 31, item 7): `archive push` and `archive pull` of a 1 GiB archive to and
from Debian's docker-registry on loopback, against curl moving the same blob to and from the
same registry in the same run, and the peak memory of push and pull.

    python bench/registry_bench.py [--mib 1024] [--repeat 3] [--work DIR] [--only pull]

1. push: `catalytic archive push FILE oci://127.0.0.1:PORT/bench/pN` (the reader's checks,
   then, the tag naming nothing yet, POST and one streamed PATCH while a second thread hashes
   the file, and the closing PUT ?digest=), each time into a new repository so the blob really
   travels, vs `curl -T FILE` PUT to an upload location the same registry opened (the digest
   computed beforehand, outside the timing); target ≥ 80% of curl's throughput.
2. pull: `catalytic archive pull REF -o FILE` with an empty cache (GET streamed into the
   cache, SHA-256 and size checked on the way, then the checked copy to FILE), vs
   `curl -o FILE` of the blob; target ≥ 80%.
3. memory: peak RSS of push and pull (wait4's rusage of that child alone); target < 64 MiB.
The throughput column is the median of the rounds' own ratios: each round runs ours and curl
back to back, so a drift of the machine between rounds cancels out, and who goes first
alternates, so the cost of the round's first GiB of fresh memory falls on both alike.
`--work DIR` puts the registry's storage, the cache and every written file under DIR (say
/dev/shm, a tmpfs): on a virtual disk whose write speed swings from one GiB to the next, that
measures the transfer instead of the disk, for both sides alike.
Not run by the tests; the corpus lives under bench/_corpus/archive/registry-* (rebuilt when
missing).
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
import urllib.request
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from archive_bench import build
from common import CATALYTIC, CORPUS, GIT_ENV

from tests.registries import Distribution


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one command; its CPU seconds go to stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr.read() if proc.stderr else ''!r}")
    print(
        f"  {Path(cmd[0]).name} {cmd[1]}: {took:.2f} s, CPU {usage.ru_utime:.2f} s user, "
        f"{usage.ru_stime:.2f} s system",
        file=sys.stderr,
    )
    return took, usage.ru_maxrss / 1024


def curl_upload(host: str, name: str, path: Path, digest: str) -> float:
    req = urllib.request.Request(f"http://{host}/v2/{name}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as resp:
        location = resp.headers["Location"]
    url = urllib.parse.urljoin(f"http://{host}/", location)
    url += ("&" if "?" in url else "?") + f"digest={digest}"
    t0 = time.perf_counter()
    subprocess.run(
        [
            "curl",
            "-sf",
            "-X",
            "PUT",
            "-T",
            str(path),
            "-H",
            "Content-Type: application/octet-stream",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


Rows = dict[str, list[float]]


def timed_push(
    host: str, name: str, archive: Path, work: Path, env: dict[str, str], rows: Rows
) -> None:
    push = [*CATALYTIC, "archive", "push", str(archive), f"oci://{host}/{name}"]
    t, rss = run([*push, "--no-attestation"], work, env)
    rows["push"].append(t)
    rows["push_rss"].append(rss)


def timed_curl_up(host: str, name: str, archive: Path, digest: str, rows: Rows) -> None:
    rows["curl_up"].append(curl_upload(host, name, archive, digest))


def timed_pull(host: str, name: str, work: Path, env: dict[str, str], rows: Rows) -> None:
    """`archive pull` with an empty cache, into a file that does not exist yet; both removed
    afterwards, so that the next step starts from the same state."""
    out = work / "pulled.zip"
    shutil.rmtree(work / "cache", ignore_errors=True)
    out.unlink(missing_ok=True)
    t, rss = run(
        [
            *CATALYTIC,
            "archive",
            "pull",
            f"oci://{host}/{name}:big",
            "-o",
            str(out),
            "--no-attestations",
        ],
        work,
        env,
    )
    rows["pull"].append(t)
    rows["pull_rss"].append(rss)
    out.unlink()
    shutil.rmtree(work / "cache")


def timed_curl(
    host: str, name: str, digest: str, work: Path, env: dict[str, str], rows: Rows
) -> None:
    out = work / "pulled.zip"
    t, _ = run(
        ["curl", "-sf", "-o", str(out), f"http://{host}/v2/{name}/blobs/{digest}"], work, env
    )
    rows["curl_down"].append(t)
    out.unlink()


def main() -> None:
    import urllib.parse  # noqa: F401 (used by curl_upload)

    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--work", type=Path, default=CORPUS, help="where to write (default: the corpus)"
    )
    ap.add_argument("--only", choices=("push", "pull"), help="measure one direction")
    args = ap.parse_args()
    root = build("registry", 64, args.mib * 2**20 // 64)
    archive = root / "big.catalytic.zip"
    if not archive.exists():
        subprocess.run(
            [*CATALYTIC, "archive", "create", "_runs/big", "-o", str(archive)],
            cwd=root / "repo",
            env=GIT_ENV,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    size = archive.stat().st_size
    h = hashlib.sha256()
    with open(archive, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    digest = f"sha256:{h.hexdigest()}"
    work = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.work))
    reg = Distribution(work).start()
    env = {**GIT_ENV, "XDG_CACHE_HOME": str(work / "cache")}
    rows: dict[str, list[float]] = {
        k: [] for k in ("push", "curl_up", "pull", "curl_down", "push_rss", "pull_rss")
    }
    try:
        for i in range(args.repeat):
            # --only pull: one untimed push, then every round pulls that same repository
            name = "bench/p0" if args.only == "pull" else f"bench/p{i}"
            if args.only == "pull" and i == 0:
                push = [*CATALYTIC, "archive", "push", str(archive), f"oci://{reg.host}/{name}"]
                run([*push, "--no-attestation"], work, env)
            # Who goes first alternates: the first to write a GiB after a pause pays for fresh
            # memory, which on a virtual machine that hands freed memory back to its host
            # costs up to seconds of system time (see RESULTS.md).
            first_ours = i % 2 == 0
            if args.only != "pull":
                up = [
                    partial(timed_push, reg.host, name, archive, work, env, rows),
                    partial(timed_curl_up, reg.host, f"bench/c{i}", archive, digest, rows),
                ]
                for step in up if first_ours else up[::-1]:
                    step()
            if args.only == "push":
                continue
            down = [
                partial(timed_pull, reg.host, name, work, env, rows),
                partial(timed_curl, reg.host, name, digest, work, env, rows),
            ]
            for step in down if first_ours else down[::-1]:
                step()
            print(
                f"round {i + 1}: pull {rows['pull'][-1]:.2f} s, curl {rows['curl_down'][-1]:.2f} s",
                file=sys.stderr,
            )
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items() if v}
    ratio = {
        ours: sorted(r / o for o, r in zip(rows[ours], rows[ref], strict=True))[
            len(rows[ours]) // 2
        ]
        for ours, ref in (("push", "curl_up"), ("pull", "curl_down"))
        if rows[ours]
    }
    mib = size / 2**20
    print(f"| step ({mib:.0f} MiB archive) | ours | curl | throughput vs curl | peak RSS |")
    print("|---|---|---|---|---|")
    for ours, ref, rss in (("push", "curl_up", "push_rss"), ("pull", "curl_down", "pull_rss")):
        if ours not in ratio:
            continue
        print(
            f"| archive {ours} | {med[ours]:.2f} s ({mib / med[ours]:.0f} MiB/s) | "
            f"{med[ref]:.2f} s ({mib / med[ref]:.0f} MiB/s) | "
            f"{100 * ratio[ours]:.0f}% | {med[rss]:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
