"""`env rebuild` and `replay --rebuild-env` (DESIGN §13, seed step 4): an isolated virtual
environment holding exactly the recorded pins, nothing resolved, nothing more.

1. the plan: the recorded pins, validated (environment.pins);
2. an interpreter of the recorded implementation and version (exact preferred, the same minor
   version accepted and reported; none: ENV_PYTHON_MISSING);
3. every wheel chosen and fetched into a private directory, hash-checked (environment.sources);
4. a venv with no seed packages (`uv venv`; `python -m venv --without-pip` for pip), made
   while step 3 runs and removed when it refuses;
5. the installer given exactly those files, `--no-deps`, `--require-hashes`, no index, files
   copied (`--link-mode copy`: uv otherwise hard-links into its cache, and editing one file
   would edit the other); then editable and directory installs from the checkout;
6. the rebuilt environment's hash, asked of its own interpreter, must equal the recorded one
   before anything runs (ENV_MISMATCH listing the differences).

Any failure or Ctrl-C removes what was built; the cache (environment.cache) never holds a
partial environment."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.environment.cache import Entry, cache_key, cache_root
from catalytic_hooks.environment.pins import Pin, Plan, plan_of
from catalytic_hooks.environment.sources import Served, Source, make_sources, serve
from catalytic_hooks.environment.tags import describe_platform, supported_tags
from catalytic_hooks.provenance.environment import compare_distributions, environment_hash
from catalytic_hooks.provenance.locks import normalise
from catalytic_hooks.provenance.pyquery import Interpreter, own_facts, query

INSTALLERS = ("uv", "pip")
INSTALL_TIMEOUT = 3600.0


@dataclass
class RebuildOptions:
    into: Path | None = None  # a new directory; None: the cache
    offline: bool = False
    index: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    python: str | None = None  # an interpreter to use instead of searching
    checkout: Path | None = None  # where editable and directory installs come from
    # What editable and directory builds see of the environment. Their build code is the run's
    # own (the recorded commit's setup.py or backend), so a replay gives it what it gives the
    # replayed command (`replay_env`), never the caller's secrets; None: the installer's.
    build_env: dict[str, str] | None = None
    installer: str | None = None  # "uv" | "pip"; None: uv when available
    cache: bool = True
    # Take pins the run recorded no hash for from the first source that has them (reported as
    # hash_checked false); otherwise they refuse the rebuild, as --require-hashes does.
    allow_unhashed: bool = False


@dataclass
class Rebuilt:
    venv: Path
    report: dict[str, Any]
    cached: bool
    _entry: Entry | None = None
    _temporary: Path | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def command_env(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with this environment first on PATH and VIRTUAL_ENV set, as an activated venv."""
        path = str(self.venv / "bin") + os.pathsep + env.get("PATH", os.defpath)
        out = {k: v for k, v in env.items() if k not in ("PYTHONHOME", "CONDA_PREFIX")}
        return {**out, "PATH": path, "VIRTUAL_ENV": str(self.venv)}

    def release(self) -> None:
        """Done with it: the cache entry unlocked, a temporary one removed."""
        if self._entry is not None:
            self._entry.unlock()
            self._entry = None
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None


# -- the interpreter --------------------------------------------------------------------------


_NOT_PASSED = ("PYTHON", "PIP_", "UV_", "CONDA_")


def _quiet_env(given: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`given` without the variables that configure Python, pip, uv or conda."""
    return {k: v for k, v in given.items() if not k.startswith(_NOT_PASSED) and k != "VIRTUAL_ENV"}


def _uv() -> str | None:
    try:
        found = importlib.import_module("uv").find_uv_bin()
        return str(found)
    except (ImportError, FileNotFoundError, AttributeError):
        return shutil.which("uv")


_UV_FIND = ("--no-config", "--no-project", "--system")


@contextlib.contextmanager
def _empty_dir() -> Iterator[Path]:
    """A new empty private directory for the search to start programs in, so nothing of the
    caller's working directory (a repository, which can commit a `.venv` or a `json.py`) is
    where they start. What could still be read from its parents is switched off where it is
    read: uv's virtual environments (`--system`), projects (`--no-project`) and configuration
    (`--no-config`), and the interpreter's own import path (`-I`)."""
    here = Path(tempfile.mkdtemp(prefix="catalytic-search-"))
    try:
        yield here
    finally:
        shutil.rmtree(here, ignore_errors=True)


def find_python(plan: Plan, override: str | None) -> tuple[str, dict[str, Any], bool]:
    """(path, facts, exact) of an interpreter for the plan; ENV_PYTHON_MISSING otherwise."""
    if not override:
        own = own_facts()
        if (own["implementation"], own["version"]) == (plan.implementation, plan.python_version):
            return sys.executable, own, True  # this interpreter: nothing to search or start
    with _empty_dir() as here:
        return _search(plan, override, here)


def _search(plan: Plan, override: str | None, here: Path) -> tuple[str, dict[str, Any], bool]:
    cands: list[str] = []
    if override:
        cands = [shutil.which(override) or override]
    else:
        for name in (f"python{plan.minor}", "python3", "python"):
            found = shutil.which(name)
            if found:
                cands.append(found)
        cands.append(sys.executable)
        uv = _uv()
        if uv:
            proc = subprocess.run(
                # --system: uv otherwise looks for a `.venv` in the working directory and
                # every parent (a planted /tmp/.venv, a repository's) and runs its interpreter
                [uv, "python", "find", *_UV_FIND, plan.python_version],
                cwd=here,
                capture_output=True,
                env=_quiet_env(),
                timeout=60,
                check=False,
            )
            if proc.returncode == 0 and proc.stdout.strip():
                cands.insert(0, os.fsdecode(proc.stdout.strip()))
    seen: set[str] = set()
    near: tuple[str, dict[str, Any]] | None = None
    tried = []
    for cand in cands:
        real = os.path.realpath(cand)
        if real in seen:
            continue
        seen.add(real)
        facts = query(Interpreter(cand, "search"), _quiet_env(), here, facts_only=True)
        if "error" in facts:
            continue
        tried.append(f"{cand} ({facts.get('implementation')} {facts.get('version')})")
        if facts.get("implementation") != plan.implementation:
            continue
        if facts.get("version") == plan.python_version:
            return cand, facts, True
        if near is None and ".".join(str(facts.get("version")).split(".")[:2]) == plan.minor:
            near = (cand, facts)
    if near is not None:
        return near[0], near[1], False
    raise CatalyticError(
        ErrorCode.ENV_PYTHON_MISSING,
        f"the run needs {plan.implementation} "
        f"{plan.python_version} (or another {plan.minor}.x); none was found"
        + (f" (found: {', '.join(tried)})" if tried else "")
        + f"; install Python {plan.python_version} (for example `uv python "
        f"install {plan.python_version}`) or give --python PATH",
        needed=plan.python_version,
        implementation=plan.implementation,
        found=tried,
    )


# -- installing ---------------------------------------------------------------------------------


def pick_installer(wanted: str | None) -> tuple[str, str | None]:
    """("uv", path) or ("pip", None). uv when available (speed); pip, this interpreter's, as
    the fallback."""
    if wanted not in (None, *INSTALLERS):
        raise CatalyticError(ErrorCode.USAGE, f"--installer must be uv or pip, not {wanted!r}")
    uv = _uv() if wanted in (None, "uv") else None
    if wanted == "uv" and uv is None:
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            "uv is not installed (pip install uv), or choose --installer pip",
        )
    return ("uv", uv) if uv else ("pip", None)


def _run(
    args: list[str], what: str, package: str | None = None, env: dict[str, str] | None = None
) -> None:
    _finish(_start(args, what, env), what, package)


def _start(
    args: list[str], what: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """In a session of its own: what it leaves running (a build backend's daemon) is ended
    with it (`_finish`, `_stop`)."""
    try:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_installer_env() if env is None else env,
            start_new_session=True,
        )
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED, f"{what}: cannot start {args[0]}: {exc.strerror or exc}"
        ) from exc


def _finish(proc: subprocess.Popen[bytes], what: str, package: str | None = None) -> None:
    try:
        _, err = proc.communicate(timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        _stop(proc)
        raise CatalyticError(ErrorCode.ENV_REBUILD_FAILED, f"{what}: timed out") from exc
    except BaseException:
        _stop(proc)
        raise
    _end_group(proc)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-6:]
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            f"{what} failed: " + " | ".join(tail),
            **({"package": package} if package else {}),
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ended and waited for, so that nothing writes into a directory being removed."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    _end_group(proc)
    if proc.stderr is not None:
        proc.stderr.close()


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """What the step left behind in its session is killed: nothing it started outlives it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _build_env(given: dict[str, str]) -> dict[str, str]:
    """`given` (a replay's allow-list), and what the installer is told here (no configuration
    of the user's)."""
    told = _installer_env()
    env = _quiet_env(given)
    env.update((k, v) for k, v in told.items() if k.startswith(("PIP_", "UV_")))
    return env


def _installer_env() -> dict[str, str]:
    """No configuration of the user's reaches the installer: it is told everything."""
    env = _quiet_env()
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


CREATING = "creating the virtual environment"


def _create_venv(
    installer: tuple[str, str | None], interp: str, target: Path
) -> subprocess.Popen[bytes]:
    """Started, not waited for: the wheels are chosen and hashed meanwhile (`_finish` it)."""
    if installer[1] is not None:
        return _start(
            [installer[1], "venv", "--no-config", "--quiet", "--python", interp, str(target)],
            CREATING,
        )
    return _start([interp, "-I", "-m", "venv", "--without-pip", str(target)], CREATING)


def _install_wheels(
    installer: tuple[str, str | None], venv: Path, wheels: Path, served: list[Served]
) -> None:
    if not served:
        return
    reqs = wheels / "requirements.txt"
    reqs.write_text(
        "".join(f"{s.name}=={s.version} --hash={s.sha256}\n" for s in served), encoding="utf-8"
    )
    py = str(venv / "bin" / "python")
    if installer[1] is not None:
        links = [
            a
            for d in sorted({str(s.path.parent) for s in served} | {str(wheels)})
            for a in ("--find-links", d)
        ]
        _run(
            [
                installer[1],
                "pip",
                "sync",
                "--no-config",
                "--quiet",
                "--python",
                py,
                "--offline",
                "--no-index",
                *links,
                "--require-hashes",
                "--no-build",
                "--link-mode",
                "copy",
                str(reqs),
            ],
            "installing the pinned wheels",
        )
    else:
        _run(
            [
                sys.executable,
                "-I",  # `-m` would import a pip/ or venv.py from the working directory first
                "-m",
                "pip",
                "--python",
                py,
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--find-links",
                str(wheels),
                "--require-hashes",
                "--only-binary",
                ":all:",
                "-r",
                str(reqs),
            ],
            "installing the pinned wheels",
        )


def _install_builds(
    installer: tuple[str, str | None],
    venv: Path,
    wheels: Path,
    builds: tuple[Pin, ...],
    checkout: Path | None,
    env: dict[str, str] | None,
) -> list[dict[str, Any]]:
    """Editable and directory installs whose source is inside the repository, from the
    checkout (the replay's worktree), without build isolation: the build backend is one of
    the recorded pins, already installed, and nothing is fetched."""
    done = []
    for pin in builds:
        src = _build_source(pin, checkout)
        edit = ["-e"] if pin.kind == "editable" else []
        py = str(venv / "bin" / "python")
        if installer[1] is not None:
            args = [
                installer[1],
                "pip",
                "install",
                "--no-config",
                "--quiet",
                "--python",
                py,
                "--offline",
                "--no-index",
                "--find-links",
                str(wheels),
                "--no-deps",
                "--no-build-isolation",
                "--link-mode",
                "copy",
                *edit,
                str(src),
            ]
        else:
            args = [
                sys.executable,
                "-I",  # `-m` would import a pip/ or venv.py from the working directory first
                "-m",
                "pip",
                "--python",
                py,
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--no-build-isolation",
                *edit,
                str(src),
            ]
        _run(
            args,
            f"building {pin.name} from {pin.repo_path}",
            pin.name,
            None if env is None else _build_env(env),
        )
        done.append(
            {"name": pin.name, "version": pin.version, "kind": pin.kind, "path": pin.repo_path}
        )
    return done


def _build_source(pin: Pin, checkout: Path | None) -> Path:
    """The checkout's directory an install from the repository is built from."""
    if checkout is None:
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            f"{pin.name} was installed from "
            f"the repository ({pin.repo_path}); give the checkout to build "
            "it from",
            package=pin.name,
        )
    src = (checkout / (pin.repo_path or ".")).resolve()
    if not src.is_relative_to(checkout.resolve()) or not src.is_dir():
        raise CatalyticError(
            ErrorCode.ENV_REBUILD_FAILED,
            f"{pin.name}: {pin.repo_path} is not a directory of the checkout",
            package=pin.name,
        )
    return src


def _serve_all(
    plan: Plan, sources: list[Source], facts: dict[str, Any], into: Path
) -> list[Served]:
    tags = supported_tags(facts)
    platform = describe_platform(facts)
    pins = plan.wheels
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(serve, p, sources, tags, platform, into) for p in pins]
        try:
            results: list[Served | BaseException] = []
            for f in futures:
                try:
                    results.append(f.result())
                except CatalyticError as exc:
                    results.append(exc)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    for r in results:  # the first failure in package order: the same error on every rerun
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, Served)]


def _rebuilt_hash(venv: Path) -> tuple[str, list[str]]:
    """The rebuilt environment's pins, read from its site-packages: a venv made here with no
    system site-packages imports distributions from nowhere else (starting its interpreter to
    ask would cost more than the rest of a cached rebuild). A replay asks the interpreter as
    well, when it compares the environment the command runs in."""
    pins: dict[str, str] = {}
    for site in sorted(venv.glob("lib/*/site-packages")):
        for meta in sorted(site.glob("*.dist-info/METADATA")) + sorted(
            site.glob("*.egg-info/PKG-INFO")
        ):
            fields = _header(meta)
            if fields.get("name"):
                pins.setdefault(normalise(fields["name"]), fields.get("version", ""))
    listed = sorted(pins.items())
    return environment_hash(listed), [f"{n}=={v}" for n, v in listed]


def _header(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            if line in ("\n", "\r\n"):
                break
            key, sep, value = line.partition(":")
            key = key.lower()
            if (
                sep
                and line[:1] not in (" ", "\t")
                and key in ("name", "version")
                and key not in fields
            ):
                fields[key] = value.strip()
    return fields


def build(
    plan: Plan,
    recorded_dists: Any,
    venv: Path,
    opts: RebuildOptions,
    interp: tuple[str, dict[str, Any], bool],
) -> dict[str, Any]:
    """Build the environment at `venv` (which must not exist) and return its report."""
    for pin in plan.builds:  # before anything is fetched or created
        _build_source(pin, opts.checkout)
    installer = pick_installer(opts.installer)
    sources = make_sources(
        opts.find_links, opts.index, opts.fallbacks, opts.offline, in_place=installer[1] is not None
    )
    wheels = Path(tempfile.mkdtemp(prefix="catalytic-wheels-"))
    try:
        # The venv is made while the wheels are chosen and hashed (independent work, about a
        # tenth of a rebuild each); a refusal stops it, and the caller removes what it made.
        creating = _create_venv(installer, interp[0], venv)
        try:
            served = _serve_all(plan, sources, interp[1], wheels)
        except BaseException:
            _stop(creating)
            raise
        _finish(creating, CREATING)
        _install_wheels(installer, venv, wheels, served)
        built = _install_builds(installer, venv, wheels, plan.builds, opts.checkout, opts.build_env)
        got, dists = _rebuilt_hash(venv)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    if got != plan.environment_hash:
        diffs = compare_distributions(recorded_dists, dists)
        raise CatalyticError(
            ErrorCode.ENV_MISMATCH,
            f"the rebuilt environment's hash {got} is "
            f"not the recorded {plan.environment_hash}: "
            + "; ".join(
                f"{d['field']}: recorded {d['recorded']}, rebuilt {d['current']}"
                for d in diffs[:10]
            ),
            differences=diffs,
            recorded=plan.environment_hash,
            rebuilt=got,
        )
    return {
        "environment_hash": got,
        "installer": installer[0],
        "python": {
            "implementation": interp[1].get("implementation"),
            "version": interp[1].get("version"),
            "recorded": plan.python_version,
            "exact": interp[2],
            "executable": interp[0],
        },
        "packages": [
            {
                "name": s.name,
                "version": s.version,
                "source": s.source,
                "location": s.location,
                "file": s.filename,
                "sha256": s.sha256,
                "hash_checked": s.hash_checked,
            }
            for s in served
        ],
        "events": [{"package": s.name, **e} for s in served for e in s.events],
        "from_checkout": built,
    }


def rebuild(environment: Any, opts: RebuildOptions) -> Rebuilt:
    """Rebuild a recorded environment (TASK_SPEC `environment`): into `opts.into`, or through
    the cache. The caller calls `release()` when the command using it has ended."""
    plan = plan_of(environment)
    unhashed = [p.name for p in plan.wheels if not p.hashes]
    if unhashed and not opts.allow_unhashed:
        shown = ", ".join(unhashed[:10]) + (
            f" and {len(unhashed) - 10} more" if len(unhashed) > 10 else ""
        )
        raise CatalyticError(
            ErrorCode.ENV_UNHASHED,
            f"the run recorded no hash for {len(unhashed)} pinned package(s) ({shown}), so a "
            "rebuild cannot check their bytes (uv's and pip's --require-hashes refuse such pins "
            "too); declare a lock file with hashes (policy lock_files) for the next runs, or "
            "give --allow-unhashed to take them unchecked from the first source that has them",
            packages=unhashed,
        )
    recorded_dists = environment.get("distributions") if isinstance(environment, dict) else []
    interp = find_python(plan, opts.python)
    if opts.into is not None:
        return _rebuild_into(plan, recorded_dists, opts.into.absolute(), opts, interp, False)
    if plan.builds or not opts.cache:
        # An editable install points into this replay's checkout: not reusable, not cached.
        tmp = Path(tempfile.mkdtemp(prefix="catalytic-env-"))
        try:
            done = _rebuild_into(plan, recorded_dists, tmp / "venv", opts, interp, False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        done._temporary = tmp
        return done
    key = cache_key(
        {
            "environment_hash": plan.environment_hash,
            "pins": [[p.name, p.version, list(p.hashes)] for p in plan.pins],
            "python": [
                interp[1].get(k) for k in ("implementation", "version", "soabi", "platform")
            ],
            "executable": os.path.realpath(interp[0]),
        }
    )
    entry = Entry(cache_root(), key)
    entry.lock(exclusive=True)
    try:
        report = entry.sealed_report()
        if report is not None:
            entry.lock(exclusive=False)  # downgraded: others may use it too
            return Rebuilt(entry.venv, report, True, entry)
        entry.clear()
        entry.dir.mkdir(parents=True)
        try:
            report = build(plan, recorded_dists, entry.venv, opts, interp)
            entry.seal(report)
        except BaseException:
            entry.clear()
            raise
        entry.lock(exclusive=False)
        return Rebuilt(entry.venv, report, False, entry)
    except BaseException:
        entry.unlock()
        raise


def _rebuild_into(
    plan: Plan,
    recorded_dists: Any,
    target: Path,
    opts: RebuildOptions,
    interp: tuple[str, dict[str, Any], bool],
    cached: bool,
) -> Rebuilt:
    if target.exists() or target.is_symlink():
        raise CatalyticError(ErrorCode.USAGE, f"{target} exists; --into needs a new directory")
    try:
        report = build(plan, recorded_dists, target, opts, interp)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return Rebuilt(target, report, cached)
