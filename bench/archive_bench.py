"""Archives (issue 28, item 7): `archive create`, `verify FILE` and `replay FILE` against
references measured in the same run, and peak memory against the number of entries.

    python bench/archive_bench.py [--files 10000] [--kib 20] [--verify-mib 1024] [--repeat 3]

1. create: a run with `--files` outputs of `--kib` KiB each (200 MB by default) archived, vs
   `zip -0 -X -qr` of the same files (run directory and outputs) plus `git bundle create` of
   the commit; target ≤ 1.2×. Also against the same reference followed by `sync` of the zip
   (create fsyncs the archive before linking it into place; zip leaves it in the page cache).
2. verify: an archive of about `--verify-mib` MiB (64 outputs) verified, vs `sha256sum` of the
   file (one pass); target ≤ 1.1×.
3. replay: `replay FILE` minus `replay RUN_DIR` of the same run (in its repository), vs
   `unzip -q` of the file; target: the difference ≤ 1.2× unzip.
4. memory: peak RSS of `archive create` and `verify FILE` at `--files`/10 and `--files` entries
   (flat in the number of entries: the writer keeps one record per entry, never the data).
Not run by the tests; the corpus lives under bench/_corpus/archive (rebuilt when missing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CATALYTIC, CORPUS, GIT_ENV, interleaved, interleaved_rounds, round_ratio

JOB = """\
import os, random, sys, pathlib
n, size = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
out = pathlib.Path("outputs")
for i in range(n):
    d = out / f"{i // 1000:03d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{i:06d}.bin").write_bytes(rng.randbytes(size))
"""


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env or GIT_ENV, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stdout!r} {proc.stderr!r}")


def peak_rss_mib(cmd: list[str], cwd: Path) -> float:
    """Peak resident memory of one command (wait4's rusage of that child alone)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd} failed")
    return usage.ru_maxrss / 1024


def cpu_seconds(cmd: list[str], cwd: Path) -> float:
    """User + system CPU time of one command and its children (wait4 per child), which the
    load of a shared machine does not inflate the way it inflates wall time."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{cmd} failed")
    return usage.ru_utime + usage.ru_stime


def build(name: str, files: int, size: int) -> Path:
    """A repository with one signed run of `files` outputs of `size` bytes."""
    root = CORPUS / "archive" / f"{name}-{files}x{size}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    repo = root / "repo"
    repo.mkdir(parents=True)
    sh(["git", "init", "-q"], repo)
    (repo / ".catalytic.toml").write_text(
        'durable_roots = ["outputs"]\ntrusted_validators = ".catalytic/allowed_validators"\n'
    )
    (repo / "job.py").write_text(JOB)
    key = root / "key"
    sh([*CATALYTIC, "keygen", "--out", str(key)], repo)
    sh([*CATALYTIC, "trust", "add", "bench", f"{key}.pub"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "job"], repo)
    sh(
        [
            *CATALYTIC,
            "run",
            "--run-id",
            "big",
            "--sign",
            str(key),
            "--",
            sys.executable,
            "job.py",
            str(files),
            str(size),
        ],
        repo,
    )
    (root / "done").write_text("ok\n")
    return root


def bench_create(root: Path, repeat: int) -> list[str]:
    repo = root / "repo"
    out = root / "created.zip"
    ref_zip, ref_bundle = root / "ref.zip", root / "ref.bundle"

    def ours() -> None:
        out.unlink(missing_ok=True)
        sh([*CATALYTIC, "archive", "create", "_runs/big", "-o", str(out)], repo)

    def reference() -> None:
        ref_zip.unlink(missing_ok=True)
        ref_bundle.unlink(missing_ok=True)
        sh(["zip", "-0", "-X", "-qr", str(ref_zip), "_runs/big", "outputs"], repo)
        sh(["git", "bundle", "create", "-q", str(ref_bundle), "HEAD"], repo)

    def durable() -> None:
        # create fsyncs the archive before it links it into place; zip does not
        reference()
        sh(["sync", str(ref_zip)], repo)

    r_ours, r_ref, r_durable = interleaved_rounds([ours, reference, durable], repeat)
    t_ours, t_ref, t_durable = (statistics.median(r) for r in (r_ours, r_ref, r_durable))
    cpu_ours, cpu_ref = [], []
    for _ in range(repeat):
        out.unlink(missing_ok=True)
        cpu_ours.append(
            cpu_seconds([*CATALYTIC, "archive", "create", "_runs/big", "-o", str(out)], repo)
        )
        ref_zip.unlink(missing_ok=True)
        ref_bundle.unlink(missing_ok=True)
        cpu_ref.append(
            cpu_seconds(["zip", "-0", "-X", "-qr", str(ref_zip), "_runs/big", "outputs"], repo)
            + cpu_seconds(["git", "bundle", "create", "-q", str(ref_bundle), "HEAD"], repo)
        )
    c_ours, c_ref = sorted(cpu_ours)[repeat // 2], sorted(cpu_ref)[repeat // 2]
    return [
        f"| archive create ({root.name}), wall | {t_ours:.2f} s | zip -0 -X -qr + git "
        f"bundle create: {t_ref:.2f} s | {t_ours / t_ref:.2f}× (rounds' median "
        f"{round_ratio(r_ours, r_ref):.2f}×) | ≤ 1.2× |",
        f"| archive create ({root.name}), CPU (user + sys) | {c_ours:.2f} s | "
        f"{c_ref:.2f} s | {c_ours / c_ref:.2f}× | (information: over two cores) |",
        f"| archive create ({root.name}), wall, vs a durable reference | {t_ours:.2f} s | "
        f"the same + `sync` of the zip (fsync, as create does): {t_durable:.2f} s | "
        f"{t_ours / t_durable:.2f}× (rounds' median {round_ratio(r_ours, r_durable):.2f}×) | "
        "(information) |",
    ]


def bench_verify(root: Path, repeat: int) -> list[str]:
    repo = root / "repo"
    archive = root / "verify.zip"
    if not archive.exists():
        sh([*CATALYTIC, "archive", "create", "_runs/big", "-o", str(archive)], repo)
    trust = repo / ".catalytic/allowed_validators"

    def ours() -> None:
        sh([*CATALYTIC, "verify", str(archive), "--trust-file", str(trust)], root)

    def reference() -> None:
        sh(["sha256sum", str(archive)], root)

    t_ours, t_ref = interleaved([ours, reference], repeat)
    mib = archive.stat().st_size / 2**20
    return [
        f"| verify FILE ({mib:.0f} MiB) | {t_ours:.2f} s | sha256sum of the file: "
        f"{t_ref:.2f} s | {t_ours / t_ref:.2f}× | ≤ 1.1× |"
    ]


def bench_replay(root: Path, repeat: int) -> list[str]:
    repo = root / "repo"
    archive = root / "created.zip"
    if not archive.exists():
        sh([*CATALYTIC, "archive", "create", "_runs/big", "-o", str(archive)], repo)
    trust = repo / ".catalytic/allowed_validators"
    away = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:

        def from_file() -> None:
            sh([*CATALYTIC, "replay", str(archive), "--trust-file", str(trust)], away)

        def from_repo() -> None:
            sh([*CATALYTIC, "replay", "_runs/big"], repo)

        def unzip() -> None:
            target = away / "unzipped"
            shutil.rmtree(target, ignore_errors=True)
            sh(["unzip", "-q", str(archive), "-d", str(target)], away)

        t_file, t_repo, t_unzip = interleaved([from_file, from_repo, unzip], repeat)
    finally:
        shutil.rmtree(away, ignore_errors=True)
    extra = t_file - t_repo
    return [
        f"| replay FILE − replay RUN_DIR ({root.name}) | {extra:.2f} s ({t_file:.2f} − "
        f"{t_repo:.2f}) | unzip -q of the file: {t_unzip:.2f} s | {extra / t_unzip:.2f}× | "
        "≤ 1.2× |"
    ]


def bench_memory(small: Path, large: Path) -> list[str]:
    rows = []
    for root in (small, large):
        repo = root / "repo"
        out = root / "memory.zip"
        out.unlink(missing_ok=True)
        create = peak_rss_mib([*CATALYTIC, "archive", "create", "_runs/big", "-o", str(out)], repo)
        verify = peak_rss_mib(
            [
                *CATALYTIC,
                "verify",
                str(out),
                "--trust-file",
                str(repo / ".catalytic/allowed_validators"),
            ],
            root,
        )
        rows.append(
            f"| peak RSS, {root.name} | create {create:.0f} MiB | verify "
            f"{verify:.0f} MiB | | flat |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--kib", type=int, default=20)
    ap.add_argument("--verify-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--only", default="create,verify,replay,memory", help="comma-separated measures to run"
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    t0 = time.time()
    many = build("many", args.files, args.kib * 1024)
    few = build("many", max(args.files // 10, 1), args.kib * 1024)
    big = build("big", 64, args.verify_mib * 2**20 // 64) if "verify" in only else many
    rows = [
        "| measure | catalytic | reference (same run) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    if "create" in only:
        rows += bench_create(many, args.repeat)
    if "verify" in only:
        rows += bench_verify(big, args.repeat)
    if "replay" in only:
        rows += bench_replay(many, args.repeat)
    if "memory" in only:
        rows += bench_memory(few, many)
    print("\n".join(rows))
    print(f"\n({time.time() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
