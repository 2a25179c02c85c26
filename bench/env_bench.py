"""Environment rebuild and recording (issue: "Replays rebuild the recorded environment").

Measures, interleaved one of each per round, medians:
- `env rebuild --offline` of a 30-package environment from a local wheelhouse (uncached), against
  `uv pip sync --offline --no-index --find-links W --require-hashes --link-mode copy` run directly
  (target ≤ 1.1×) and `pip install --no-index --find-links W --require-hashes --no-deps`
  (target: the rebuild ≥ 3× faster); both references into a fresh `uv venv` / `python -m venv
  --without-pip`, which they need as well;
- a cached rebuild (the seal re-checked, target < 0.5 s);
- recording: the interpreter query on its own, and the time a run waits for it after its PRE
  phase (target: recording adds < 100 ms to a run).

The wheelhouse: 30 pure-Python wheels from a local PyPI mirror (/opt/pypi/files) when there is
one, else 30 generated wheels of 20 modules each. Usage: `python bench/env_bench.py [rounds]`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = Path(__file__).resolve().parent / "_corpus" / "env"
MIRROR = Path("/opt/pypi/files")
N = 30


def _wheelhouse() -> Path:
    house = CORPUS / "wheelhouse"
    if house.is_dir() and len(list(house.glob("*.whl"))) == N:
        return house
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    seen: set[str] = set()
    if MIRROR.is_dir():
        for w in sorted(MIRROR.glob("*-py3-none-any.whl")) + sorted(
            MIRROR.glob("*-py2.py3-none-any.whl")
        ):
            name = w.name.split("-")[0].lower()
            if name in seen or name in ("pip", "setuptools", "wheel"):
                continue
            seen.add(name)
            shutil.copyfile(w, house / w.name)
            if len(seen) == N:
                return house
    for i in range(len(seen), N):
        _generated(house, f"benchpkg{i:02d}")
    return house


def _generated(house: Path, name: str) -> None:
    import base64

    info = f"{name}-1.0.dist-info"
    files = {f"{name}/m{j}.py": (f"# module {j}\n" + "x = 1\n" * 200).encode() for j in range(20)}
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n"
    rec = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
        for p, d in files.items()
    )
    files[f"{info}/RECORD"] = (rec + f"{info}/RECORD,,\n").encode()
    with zipfile.ZipFile(house / f"{name}-1.0-py3-none-any.whl", "w") as z:
        for p, d in files.items():
            z.writestr(p, d)


def _quiet() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))
    } | {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    from catalytic_hooks.environment.build import RebuildOptions, _uv, rebuild
    from catalytic_hooks.provenance.environment import fingerprint

    uv = _uv()
    assert uv, "pip install uv"
    house = _wheelhouse()
    work = Path(tempfile.mkdtemp(prefix="env-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg")
    env = _quiet()
    reqs = work / "requirements.txt"
    wheels = sorted(house.glob("*.whl"))
    lines = []
    for w in wheels:
        name, version = w.name.split("-")[:2]
        digest = hashlib.sha256(w.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    reqs.write_text("\n".join(lines) + "\n")
    # The recorded environment: the same wheels installed by uv, recorded as a run records them.
    src = work / "recorded"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(src)], check=True, env=env)
    subprocess.run(
        [
            uv,
            "pip",
            "sync",
            "-q",
            "--python",
            str(src / "bin/python"),
            "--offline",
            "--no-index",
            "--find-links",
            str(house),
            "--require-hashes",
            str(reqs),
        ],
        check=True,
        env=env,
    )
    (work / "top").mkdir()
    shutil.copyfile(reqs, work / "top" / "requirements.txt")
    run_env = {**os.environ, "PATH": f"{src / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    recorded = fingerprint(work / "top", ("requirements.txt",), 0, env=run_env)
    assert len(recorded["packages"]) == N and all(p["hashes"] for p in recorded["packages"])

    times: dict[str, list[float]] = {k: [] for k in ("rebuild", "uv", "pip", "cached")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    for r in range(rounds):
        t, c = time.perf_counter(), _cpu()
        rebuild(
            recorded, RebuildOptions(into=work / f"rb{r}", offline=True, find_links=[str(house)])
        )
        times["rebuild"].append(time.perf_counter() - t)
        cpu["rebuild"].append(_cpu() - c)

        t, c = time.perf_counter(), _cpu()
        subprocess.run(
            [uv, "venv", "-q", "--python", sys.executable, str(work / f"uv{r}")],
            check=True,
            env=env,
        )
        subprocess.run(
            [
                uv,
                "pip",
                "sync",
                "-q",
                "--python",
                str(work / f"uv{r}/bin/python"),
                "--offline",
                "--no-index",
                "--find-links",
                str(house),
                "--require-hashes",
                "--link-mode",
                "copy",
                str(reqs),
            ],
            check=True,
            env=env,
        )
        times["uv"].append(time.perf_counter() - t)
        cpu["uv"].append(_cpu() - c)

        t, c = time.perf_counter(), _cpu()
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(work / f"pip{r}")],
            check=True,
            env=env,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(work / f"pip{r}/bin/python"),
                "install",
                "-q",
                "--no-index",
                "--find-links",
                str(house),
                "--require-hashes",
                "--no-deps",
                "-r",
                str(reqs),
            ],
            check=True,
            env=env,
        )
        times["pip"].append(time.perf_counter() - t)
        cpu["pip"].append(_cpu() - c)

        if r == 0:
            rebuild(recorded, RebuildOptions(offline=True, find_links=[str(house)])).release()
        t, c = time.perf_counter(), _cpu()
        done = rebuild(recorded, RebuildOptions(offline=True, find_links=[str(house)]))
        times["cached"].append(time.perf_counter() - t)
        cpu["cached"].append(_cpu() - c)
        assert done.cached
        done.release()

    rec_times, rec_cpu = _recording(work, run_env, rounds)
    med = {k: statistics.median(v) * 1000 for k, v in {**times, **rec_times}.items()}
    mc = {k: statistics.median(v) * 1000 for k, v in {**cpu, **rec_cpu}.items()}
    print("| measurement | wall (median) | CPU, all processes | ratio (wall; CPU) |")
    print("|---|---:|---:|---|")
    print(
        f"| env rebuild --offline, {N} packages (uncached) | {med['rebuild']:.0f} ms | "
        f"{mc['rebuild']:.0f} ms | {med['rebuild'] / med['uv']:.2f}×; "
        f"{mc['rebuild'] / mc['uv']:.2f}× uv pip sync |"
    )
    print(
        f"| uv venv + uv pip sync --offline --require-hashes --link-mode copy | "
        f"{med['uv']:.0f} ms | {mc['uv']:.0f} ms | 1.00× |"
    )
    print(
        f"| python -m venv + pip install --no-index --require-hashes --no-deps | "
        f"{med['pip']:.0f} ms | {mc['pip']:.0f} ms | rebuild {med['pip'] / med['rebuild']:.1f}×; "
        f"{mc['pip'] / mc['rebuild']:.1f}× faster |"
    )
    print(
        f"| env rebuild, cached (seal re-checked) | {med['cached']:.0f} ms | "
        f"{mc['cached']:.0f} ms | |"
    )
    print(
        f"| interpreter query alone, {N} packages | {med['query']:.0f} ms | "
        f"{mc['query']:.0f} ms | |"
    )
    print(
        f"| interpreter query alone, this interpreter ({med['tool_n']:.0f} packages) | "
        f"{med['query_tool']:.0f} ms | {mc['query_tool']:.0f} ms | |"
    )
    print(
        f"| run: waiting for the recording after PRE (small repository) | "
        f"{med['exposed']:.0f} ms | | |"
    )
    shutil.rmtree(work, ignore_errors=True)


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children: on a loaded machine the
    wall clock measures the load as much as the work."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _recording(
    work: Path, run_env: dict[str, str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The query alone, and what a run waits for after its PRE phase."""
    from catalytic_hooks.core.policy import load_policy
    from catalytic_hooks.git.hashing import HashCache
    from catalytic_hooks.git.repo import Repo
    from catalytic_hooks.provenance.pyquery import Interpreter, query
    from catalytic_hooks.run.engine import RunOptions, _finish_seen, _pre_phase, _start_seen

    out: dict[str, list[float]] = {"query": [], "query_tool": [], "exposed": [], "tool_n": []}
    cpu: dict[str, list[float]] = {"query": [], "query_tool": []}
    repo_dir = work / "repo"
    repo_dir.mkdir()
    genv = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x.invalid",
    }
    subprocess.run(["git", "init", "-q", str(repo_dir)], check=True, env=genv)
    for i in range(200):
        (repo_dir / f"f{i}.txt").write_text(f"{i}\n")
    subprocess.run(["git", "-C", str(repo_dir), "add", "-A"], check=True, env=genv)
    subprocess.run(["git", "-C", str(repo_dir), "commit", "-qm", "x"], check=True, env=genv)
    repo = Repo.discover(repo_dir)
    policy = load_policy(repo.top)
    py = str(Path(run_env["PATH"].split(os.pathsep)[0]) / "python")
    for _ in range(rounds):
        t, c = time.perf_counter(), _cpu()
        query(Interpreter(py, "bench"), run_env, work)
        out["query"].append(time.perf_counter() - t)
        cpu["query"].append(_cpu() - c)
        t, c = time.perf_counter(), _cpu()
        doc = query(Interpreter(sys.executable, "bench"), dict(os.environ), work)
        out["query_tool"].append(time.perf_counter() - t)
        cpu["query_tool"].append(_cpu() - c)
        out["tool_n"].append(len(doc["distributions"]) / 1000)
        opts = RunOptions(run_id="b", command=["python", "x.py"])
        probe, procs = _start_seen(repo, policy, opts, repo.top, run_env)
        _pre_phase(repo, policy, HashCache.for_repo(repo), opts)
        t = time.perf_counter()
        _finish_seen(repo, policy, opts, probe, procs)
        out["exposed"].append(time.perf_counter() - t)
    return out, cpu


if __name__ == "__main__":
    main()
