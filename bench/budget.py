"""What pull_budget.py and push_budget.py share: a blob of random bytes, one timed command with
the CPU the registry spent meanwhile, and the table of medians. Kept apart from common.py,
whose import installs the tool: these two time the client's own code from this checkout."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

Row = tuple[float, float, float, float]  # wall, user, system, the registry's CPU


def random_blob(path: Path, mib: int) -> tuple[str, int]:
    """MIB of random bytes written to `path`: (digest, size)."""
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            fh.write(chunk)
    return f"sha256:{h.hexdigest()}", path.stat().st_size


def registry_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], registry_pid: int, label: str) -> tuple[Row, int, bytes]:
    """One command in a fresh process: its row, its exit status, what it printed."""
    before = registry_cpu(registry_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    said = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.stdout.close()
    served = registry_cpu(registry_pid) - before
    print(
        f"{label}: {took:.2f} s, user {usage.ru_utime:.2f} s, "
        f"system {usage.ru_stime:.2f} s, registry {served:.2f} s",
        file=sys.stderr,
    )
    return (took, usage.ru_utime, usage.ru_stime, served), status, said


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def print_medians(rows: dict[str, list[Row]], mib: int, repeat: int) -> None:
    print(f"| way ({mib} MiB, median of {repeat}) | wall | user | system | registry |")
    print("|---|---|---|---|---|")
    for way, got in rows.items():
        cols = [median([r[k] for r in got]) for k in range(4)]
        print(f"| {way} | " + " | ".join(f"{c:.2f} s" for c in cols) + " |")


def upload_url(host: str, name: str, digest: str) -> str:
    """A new upload session of the registry at `host` for repository `name`: the URL a
    monolithic `PUT` of the blob `digest` goes to (curl's reference upload)."""
    post = urllib.request.Request(f"http://{host}/v2/{name}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(post) as resp:
        location = resp.headers["Location"]
    url = urllib.parse.urljoin(f"http://{host}/", location)
    return url + ("&" if "?" in url else "?") + f"digest={digest}"
