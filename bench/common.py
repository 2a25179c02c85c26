"""Shared helpers for the benchmarks: a seeded synthetic repository and a median timer."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "_corpus"


def compile_package() -> None:
    """Write the package's bytecode, as a pip install of the wheel does: an editable install
    under PYTHONDONTWRITEBYTECODE=1 (as in this project's CI image) would otherwise compile every
    module on every call, which is not what users run."""
    import catalytic_hooks

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(catalytic_hooks.__file__).parent)],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )


def _tool() -> list[str]:
    """The tool as users run it: `pip install` of this checkout (not editable, so bytecode is
    compiled and no editable-import finder runs at every start) into a virtual environment of
    its own under bench/_corpus, reinstalled from the checkout on every bench run.
    CATALYTIC_BENCH_DEV=1 measures the development install instead."""
    if os.environ.get("CATALYTIC_BENCH_DEV"):
        compile_package()
        return [sys.executable, "-m", "catalytic_hooks"]
    venv_dir = CORPUS / "venv-tool"
    py = venv_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, env=env)
    else:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
            check=True,
            env=env,
            capture_output=True,
        )
    return [str(venv_dir / "bin" / "catalytic")]


CATALYTIC = _tool()
# The interpreter the tool runs on (the venv's, or this one for CATALYTIC_BENCH_DEV=1).
PYTHON = (
    sys.executable if CATALYTIC[0] == sys.executable else str(Path(CATALYTIC[0]).parent / "python")
)


def size_mix(rng: random.Random) -> int:
    """Realistic mix: mostly small sources and configs, some medium data, a few large blobs
    (mean about 12 KB, so 100,000 files come to about 1.2 GB)."""
    r = rng.random()
    if r < 0.70:
        return rng.randint(200, 6_000)
    if r < 0.97:
        return rng.randint(6_000, 40_000)
    if r < 0.998:
        return rng.randint(40_000, 800_000)
    return rng.randint(800_000, 4_000_000)


def _built(marker: Path, tag: str) -> bool:
    """Whether the corpus whose completion `marker` records is there as `tag` says; if not,
    its directory is emptied for a fresh build."""
    if marker.exists() and marker.read_text() == tag:
        return True
    if marker.parent.exists():
        subprocess.run(["rm", "-rf", str(marker.parent)], check=True)
    marker.parent.mkdir(parents=True)
    return False


def build_repo(path: Path, files: int, seed: int = 1234, policy: str = "") -> Path:
    marker = path / ".bench-complete"
    if _built(marker, f"{files} {seed}"):
        return path
    rng = random.Random(seed)
    block = rng.randbytes(1 << 22)
    for i in range(files):
        d = path / f"d{i % 100:02d}" / f"s{(i // 100) % 50:02d}"
        d.mkdir(parents=True, exist_ok=True)
        n = size_mix(rng)
        off = rng.randrange(0, len(block) - n) if n < len(block) else 0
        (d / f"f{i}.dat").write_bytes(f"{i}\n".encode() + block[off : off + n])
    if policy:
        (path / ".catalytic.toml").write_text(policy)
    run(["git", "init", "-q", "-b", "main"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "corpus"], path)
    run(["git", "status", "--porcelain"], path)  # settle the index stat data
    marker.write_text(f"{files} {seed}")
    return path


def build_small_repo(path: Path, files: int, seed: int = 99, policy: str = "") -> Path:
    """`files` small files (20-400 bytes, a few with a shared header), 1,000 per directory in
    two levels: a monorepo's file count without its gigabytes. Written through `git
    fast-import` (one pass, no 1M calls to `git add`), then checked out."""
    marker = path / ".bench-complete"
    if _built(marker, f"small {files} {seed}"):
        return path
    run(["git", "init", "-q", "-b", "main"], path)
    rng = random.Random(seed)
    stream = [
        b"commit refs/heads/main\ncommitter bench <bench@example.invalid> 0 +0000\ndata 7\ncorpus\n"
    ]
    if policy:
        data = policy.encode()
        stream.append(b"M 100644 inline .catalytic.toml\ndata %d\n%s\n" % (len(data), data))
    for i in range(files):
        name = f"m{i // 100_000:02d}/d{(i // 1000) % 100:02d}/f{i:07d}.txt".encode()
        data = b"%d %s\n" % (i, rng.randbytes(rng.randint(10, 200)).hex().encode())
        stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (name, len(data), data))
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=path, input=b"".join(stream), check=True, env=GIT_ENV
    )
    run(["git", "checkout", "-q", "-f", "main"], path)
    run(["git", "status", "--porcelain"], path)  # settle the index stat data
    marker.write_text(f"small {files} {seed}")
    return path


def stager(repo: Path) -> Callable[[], None]:
    """A function that stages a fresh one-file change under `outputs/` at every call."""
    (repo / "outputs").mkdir(exist_ok=True)
    counter = [0]

    def change() -> None:
        counter[0] += 1
        (repo / "outputs" / "result.txt").write_text(f"run {counter[0]}\n")
        run(["git", "add", "outputs/result.txt"], repo)

    return change


def run(
    cmd: list[str],
    cwd: Path,
    check: bool = True,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        cmd, cwd=cwd, check=check, input=stdin, capture_output=True, env=env or GIT_ENV
    )


def median_time(
    fn: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None
) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median wall time of each function, run one after the other in every round."""
    return [statistics.median(t) for t in interleaved_rounds(fns, repeat)]


def interleaved_rounds(fns: list[Callable[[], object]], repeat: int) -> list[list[float]]:
    """Every round's wall time of each function, run one after the other in every round."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, acc in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return times


def round_ratio(ours: list[float], ref: list[float]) -> float:
    """The median of the rounds' own ratios: a drift of the machine between rounds (this one
    swings by a third from minute to minute) cancels out within a round."""
    return statistics.median(o / r for o, r in zip(ours, ref, strict=True))


def table(rows: list[tuple[str, float, str]]) -> str:
    out = ["| measurement | median | ratio |", "|---|---:|---|"]
    for name, secs, ratio in rows:
        out.append(f"| {name} | {secs * 1000:.0f} ms | {ratio} |")
    return "\n".join(out)
