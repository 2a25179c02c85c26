"""Run benchmark (issue: performance at monorepo scale). Not part of the test run.

    python bench/run_bench.py [--files 100000] [--repeat 3] [--corpus bench/_corpus/run]

`catalytic run --sign` against `in-toto-run` recording the same tree (materials `.` and products
`.`, `.git` excluded, both signing with an Ed25519 key), for a command that changes nothing and
for one that writes 10 durable outputs. in-toto is installed into its own virtual environment
under bench/_corpus (never a dependency of this project).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from common import CATALYTIC, build_repo, interleaved, run, table

POLICY = 'durable_roots = ["out"]\ntmp_roots = ["tmp"]\n'
WRITE10 = "mkdir -p out && for i in 0 1 2 3 4 5 6 7 8 9; do date +%s%N > out/f$i; done"


def intoto_venv(where: Path) -> Path:
    exe = where / "bin" / "in-toto-run"
    if not exe.exists():
        venv.create(where, with_pip=True, clear=True)
        subprocess.run(
            [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "in-toto"], check=True
        )
        subprocess.run(
            [str(where / "bin" / "python"), "-m", "compileall", "-q", str(where)],
            check=False,
            capture_output=True,
        )
    return exe


def pem_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        path.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / "_corpus" / "run")
    args = ap.parse_args()
    repo = build_repo(args.corpus, args.files, policy=POLICY)
    work = args.corpus.parent / "run-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    intoto = intoto_venv(args.corpus.parent / "venv-intoto")
    pem = pem_key(args.corpus.parent / "intoto-ed25519.pem")
    key = work / "validator"
    run([*CATALYTIC, "keygen", "--out", str(key)], repo)
    run([*CATALYTIC, "digest", "--worktree"], repo)  # warm the cache, as on any second run
    counter = [0]

    def ours(cmd: str) -> None:
        counter[0] += 1
        run(
            [
                *CATALYTIC,
                "run",
                "--run-id",
                f"b{counter[0]}",
                "--sign",
                str(key),
                "--",
                "sh",
                "-c",
                cmd,
            ],
            repo,
        )

    def theirs(cmd: str) -> None:
        run(
            [
                str(intoto),
                "-n",
                "step",
                "--signing-key",
                str(pem),
                "-m",
                ".",
                "-p",
                ".",
                "--exclude",
                ".git",
                "_runs",
                "-d",
                str(work),
                "--",
                "sh",
                "-c",
                cmd,
            ],
            repo,
        )

    def tidy() -> None:
        shutil.rmtree(repo / "out", ignore_errors=True)

    rows: list[tuple[str, float, str]] = []
    for label, cmd in (
        ("a command that changes nothing", "true"),
        ("a command writing 10 durable outputs", WRITE10),
    ):
        # One of each per round: this machine's speed drifts by more than 20 % within minutes,
        # and two medians taken a minute apart drift with it.
        ref, mine = interleaved(
            [lambda cmd=cmd: (tidy(), theirs(cmd)), lambda cmd=cmd: (tidy(), ours(cmd))],
            args.repeat,
        )
        rows.append((f"in-toto-run, {label}", ref, "1.00× in-toto-run"))
        rows.append(
            (f"catalytic run --sign, {label}", mine, f"{ref / mine:.1f}× faster than in-toto-run")
        )
    shutil.rmtree(repo / "_runs", ignore_errors=True)
    tidy()
    print(
        f"### run_bench: {args.files} files, {platform.machine()}, "
        f"{platform.python_version()}, in-toto from {intoto.parent.parent}\n\n" + table(rows)
    )


if __name__ == "__main__":
    sys.exit(main())
