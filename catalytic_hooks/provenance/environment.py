"""The environment a run records (TASK_SPEC `environment`, docs/FORMATS.md §3) and compares on
replay, and the determinism settings both apply to the command they run.

What is recorded is the environment of the interpreter the *command* runs (provenance.pyquery),
never this tool's own (which, installed with pipx or in a venv of its own, holds none of the
experiment's packages): every distribution as an exact pin with its PEP 503 name and the wheel
hashes known for it, the interpreter's identity, a system manifest (provenance.system), the
declared lock files; and the environment hash, whose canonical form (README "Rebuilding the
environment") a user reproduces with one shell line on any machine:

    sha256 of  "".join(f"{name}=={version}\\n" for each distribution, sorted by name)

where `name` is PEP 503-normalised and `version` is the Version header as installed. Neither
paths, installers nor hashes enter it, so the same pins installed by pip or by uv, anywhere,
hash equal. The seed's `pip freeze | sha256sum` value is recorded beside it for comparison."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from catalytic_hooks.core.canonical import canonical_hash, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import relpath_problem
from catalytic_hooks.fs.untrusted import read_beneath, rel_problem
from catalytic_hooks.provenance.locks import LockPins, lock_kind, normalise, wheel_hashes
from catalytic_hooks.provenance.pyquery import (
    Interpreter,
    find_interpreter,
    finish_query,
    start_query,
    stop,
)
from catalytic_hooks.provenance.system import SystemProbe, compare_system

ENVIRONMENT_FORMAT = 2
MAX_LOCK_BYTES = 16 * 1024 * 1024


def determinism_env(seed: int) -> dict[str, str]:
    return {
        "PYTHONHASHSEED": str(seed),
        "CATALYTIC_SEED": str(seed),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


def distributions() -> list[str]:
    """This tool's own interpreter's distributions as sorted `name==version` (what
    importlib.metadata reports). Not what a run records (that is the command's interpreter);
    kept for callers that describe the tool itself."""
    import importlib.metadata

    seen = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name:
            seen.add(f"{name.lower().replace('_', '-')}=={dist.version}")
    return sorted(seen)


# -- the canonical form -----------------------------------------------------------------------


def canonical_text(pins: list[tuple[str, str]]) -> bytes:
    """`name==version\\n` per distribution, PEP 503 names, sorted by name (code point order,
    which for normalised names is byte order)."""
    return "".join(f"{n}=={v}\n" for n, v in sorted(pins)).encode("utf-8")


def environment_hash(pins: list[tuple[str, str]]) -> str:
    return "sha256:" + hashlib.sha256(canonical_text(pins)).hexdigest()


# The one shell line of README "Rebuilding the environment"; a test runs it against the code.
HASH_ONE_LINER = (
    "python -c \"import importlib.metadata as m,re;d={};[d.setdefault(re.sub(r'[-_.]+','-',"
    "x.metadata['Name']).lower(),x.version) for x in m.distributions() if x.metadata['Name']];"
    "print(''.join(f'{k}=={d[k]}\\n' for k in sorted(d)),end='')\" | sha256sum"
)


# -- one distribution -------------------------------------------------------------------------


def _file_path(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    return unquote(parts.path)


def _direct_url(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, str):
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("url"), str) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _source(du: dict[str, Any], top: Path) -> tuple[dict[str, Any], list[str]]:
    """(source record, wheel hashes) of a PEP 610 direct reference."""
    url: str = du["url"]
    hashes: list[str] = []
    if isinstance(du.get("dir_info"), dict):
        kind = "editable" if du["dir_info"].get("editable") is True else "directory"
    elif isinstance(du.get("vcs_info"), dict):
        vcs = du["vcs_info"]
        return {
            "kind": "vcs",
            "url": url,
            "vcs": vcs.get("vcs"),
            "commit": vcs.get("commit_id"),
        }, hashes
    else:
        kind = "archive"
        info = _obj(du.get("archive_info"))
        algs = _obj(info.get("hashes"))
        legacy = info.get("hash") if isinstance(info.get("hash"), str) else ""
        assert isinstance(legacy, str)
        # uv keeps the hash only as the URL's `#sha256=` fragment
        frag = urlsplit(url).fragment
        for value in (
            algs.get("sha256"),
            legacy.removeprefix("sha256=") if legacy.startswith("sha256=") else None,
            frag.removeprefix("sha256=") if frag.startswith("sha256=") else None,
        ):
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
                hashes.append("sha256:" + value)
    src: dict[str, Any] = {"kind": kind, "url": url}
    local = _file_path(url)
    if local is not None:
        rel = _inside(Path(local), top)
        if rel is not None:
            # Rebuilt from the replay's checkout, not from this machine's path.
            src = {"kind": kind, "repo_path": rel}
    return src, sorted(set(hashes))


def _inside(path: Path, top: Path) -> str | None:
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(top))
    except ValueError:
        return None
    if rel == ".":
        return "."
    rel = rel.replace(os.sep, "/")
    return None if rel.startswith("../") or rel == ".." or relpath_problem(rel) else rel


def _wheel_tags(raw: Any) -> tuple[list[str], str | None]:
    tags: list[str] = []
    build = None
    if isinstance(raw, str):
        for line in raw.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "Tag":
                tags.append(value.strip())
            elif sep and key.strip() == "Build":
                build = value.strip() or None
    return sorted(set(tags)), build


def package_record(raw: dict[str, Any], top: Path, locks: LockPins) -> dict[str, Any]:
    name = normalise(str(raw.get("name", "")))
    version = str(raw.get("version", ""))
    du = _direct_url(raw.get("direct_url"))
    source, hashes = _source(du, top) if du is not None else (None, [])
    if source is None or source["kind"] == "archive":
        hashes = sorted(set(hashes) | locks.get((name, version), set()))
    tags, build = _wheel_tags(raw.get("wheel"))
    rec: dict[str, Any] = {
        "name": name,
        "version": version,
        "hashes": hashes,
        "installer": raw.get("installer"),
        "source": source,
        "wheel_tags": tags,
    }
    if build is not None:
        rec["wheel_build"] = build
    return rec


# -- the seed's value -------------------------------------------------------------------------


def pip_freeze_text(raw_dists: list[dict[str, Any]], version_info: Any) -> bytes:
    """What `python -m pip freeze` (pip ≥ 23) prints for these distributions, without starting
    pip (half a second): pip itself hidden, and setuptools, wheel and distribute below Python
    3.12; a direct reference as `name @ url[#hash]`; an editable install outside version
    control as pip's comment line and `-e path`; sorted by lower-cased name. (For an editable
    install inside a VCS checkout pip asks the VCS for a URL; that line is not reproduced.)"""
    old = isinstance(version_info, list) and version_info[:2] < [3, 12]
    hidden = {"pip", "python", "wsgiref", "argparse"} | (
        {"setuptools", "wheel", "distribute"} if old else set()
    )
    lines: list[tuple[str, str]] = []
    for raw in raw_dists:
        name, version = str(raw.get("name", "")), str(raw.get("version", ""))
        if normalise(name) in hidden:
            continue
        du = _direct_url(raw.get("direct_url"))
        if du is None:
            text = f"{name}=={version}"
        elif isinstance(du.get("dir_info"), dict) and du["dir_info"].get("editable") is True:
            where = _file_path(du["url"]) or du["url"]
            text = f"# Editable install with no version control ({name}=={version})\n-e {where}"
        elif isinstance(du.get("vcs_info"), dict):
            vcs = du["vcs_info"]
            text = f"{name} @ {vcs.get('vcs')}+{du['url']}@{vcs.get('commit_id')}"
        else:
            text = f"{name} @ {du['url']}"
            info = du.get("archive_info")
            frag = (
                [info["hash"]]
                if isinstance(info, dict) and isinstance(info.get("hash"), str)
                else []
            )
            if isinstance(du.get("subdirectory"), str):
                frag.append("subdirectory=" + du["subdirectory"])
            if frag:
                text += "#" + "&".join(frag)
        lines.append((name.lower(), text))
    return "".join(t + "\n" for _, t in sorted(lines, key=lambda x: x[0])).encode("utf-8")


# -- the interpreter --------------------------------------------------------------------------


def abi_tag(facts: dict[str, Any]) -> str | None:
    soabi = facts.get("soabi")
    if not isinstance(soabi, str):
        return None
    if facts.get("implementation") == "cpython":
        m = re.match(r"cpython-(\d+)([a-z]*)", soabi)
        return f"cp{m.group(1)}{m.group(2)}" if m else None
    parts = soabi.split("-")
    return "_".join(parts[:2]).replace(".", "_") if len(parts) >= 2 else None


def platform_tag(facts: dict[str, Any]) -> str | None:
    plat = facts.get("platform")
    return re.sub(r"[-. ]", "_", plat) if isinstance(plat, str) else None


def python_record(interp: Interpreter, facts: dict[str, Any]) -> dict[str, Any]:
    if "error" in facts:
        return {"executable": interp.path, "found_by": interp.found_by, "error": facts["error"]}
    return {
        "executable": interp.path,
        "found_by": interp.found_by,
        "implementation": facts.get("implementation"),
        "version": facts.get("version"),
        "abi": abi_tag(facts),
        "soabi": facts.get("soabi"),
        "platform": platform_tag(facts),
        "libc": facts.get("libc"),
        "mac_ver": facts.get("mac_ver"),
        "bits": facts.get("bits"),
        "venv": facts.get("prefix") != facts.get("base_prefix"),
    }


# -- lock files -------------------------------------------------------------------------------


def read_lock(root: Path, rel: str) -> bytes | None:
    """A declared lock file under `root` (None: absent, or not a regular file: a link, a FIFO or
    a device is not read, like a missing file), through the safe reader, the same way when a run
    records it and when a replay or `env --compare` checks it, so the two stay comparable."""
    try:
        return read_beneath(root, rel, MAX_LOCK_BYTES)
    except OSError:
        return None


def lock_files_of(
    root: Path, lock_files: tuple[str, ...]
) -> tuple[dict[str, str | None], dict[str, bytes], LockPins]:
    """({path: "sha256:<hex>" or None}, {path: bytes}, the wheel hashes they pin)."""
    hashes: dict[str, str | None] = {}
    contents: dict[str, bytes] = {}
    pins: LockPins = {}
    for rel in lock_files:
        data = read_lock(root, rel)
        hashes[rel] = None if data is None else "sha256:" + hashlib.sha256(data).hexdigest()
        if data is None:
            continue
        contents[rel] = data
        for key, hs in wheel_hashes(rel, data).items():
            pins.setdefault(key, set()).update(hs)
    return hashes, contents, pins


# -- the whole record -------------------------------------------------------------------------


class EnvironmentProbe:
    """Started before a run's PRE phase (the interpreter and nvidia-smi answer meanwhile), read
    once it is done: recording then adds only what the PRE phase did not hide."""

    def __init__(
        self,
        top: Path,
        command: list[str],
        env: dict[str, str],
        cwd: Path,
        env_python: str | None = None,
    ):
        self.top = top
        self.interp = find_interpreter(command, env, cwd, top, env_python)
        self.proc = start_query(self.interp, env, cwd) if self.interp else None
        self.system = SystemProbe(env)

    def close(self) -> None:
        """Stop whatever is still running (the run failed before `finish`)."""
        if self.proc is not None and not isinstance(self.proc, str):
            stop(self.proc)
        self.system.close()

    def finish(self, lock_files: tuple[str, ...], seed: int) -> dict[str, Any]:
        facts = finish_query(self.proc) if self.proc is not None else None
        self.proc = None
        system = self.system.finish()
        lock_hashes, self.lock_contents, lock_pins = lock_files_of(self.top, lock_files)
        return assemble(self.top, self.interp, facts, system, lock_hashes, lock_pins, seed)


def assemble(
    top: Path,
    interp: Interpreter | None,
    facts: dict[str, Any] | None,
    system: dict[str, Any],
    lock_hashes: dict[str, str | None],
    lock_pins: LockPins,
    seed: int,
) -> dict[str, Any]:
    raw = facts.get("distributions", []) if facts and "error" not in facts else []
    raw = [d for d in raw if isinstance(d, dict) and d.get("name")]
    packages = sorted((package_record(d, top, lock_pins) for d in raw), key=lambda p: p["name"])
    pins = [(p["name"], p["version"]) for p in packages]
    python = python_record(interp, facts or {}) if interp is not None else None
    dists = [f"{n}=={v}" for n, v in pins]
    freeze = pip_freeze_text(raw, (facts or {}).get("version_info")) if raw else None
    return {
        "environment_format": ENVIRONMENT_FORMAT,
        # The first release's fields, kept (now describing the command's interpreter).
        "python_implementation": (python or {}).get("implementation"),
        "python_version": (python or {}).get("version"),
        "platform": system["os"],
        "platform_release": system["os_release"],
        "machine": system["machine"],
        "distributions": dists,
        "distributions_sha256": canonical_hash(dists),
        "lock_files": lock_hashes,
        "lock_kinds": {p: lock_kind(p) for p in sorted(lock_hashes)},
        "determinism": determinism_env(seed),
        # DESIGN §13
        "python": python,
        "packages": packages,
        "environment_hash": environment_hash(pins) if python and "error" not in python else None,
        "pip_freeze_sha256": None
        if freeze is None
        else "sha256:" + hashlib.sha256(freeze).hexdigest(),
        "system": system,
    }


def fingerprint(
    root: Path,
    lock_files: tuple[str, ...],
    seed: int,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    env_python: str | None = None,
) -> dict[str, Any]:
    """The environment `command` would run in (default: the interpreter first on this
    process's PATH), recorded as a run records it."""
    probe = EnvironmentProbe(
        root, list(command or []), dict(os.environ if env is None else env), cwd or root, env_python
    )
    return probe.finish(lock_files, seed)


# -- a recorded environment, read from an unverified bundle ------------------------------------


def _malformed(message: str, **details: Any) -> CatalyticError:
    return CatalyticError(
        ErrorCode.ARTIFACT_MALFORMED,
        f"TASK_SPEC.json: {message}",
        artifact="TASK_SPEC.json",
        **details,
    )


def recorded_spec(run_dir: Path) -> Any:
    """A run directory's TASK_SPEC.json, read through the safe reader: `env --compare` reads a
    run nobody has verified."""
    try:
        return loads_strict(read_beneath(run_dir, "TASK_SPEC.json"), what="TASK_SPEC.json")
    except FileNotFoundError as exc:
        raise CatalyticError(
            ErrorCode.ARTIFACT_MISSING, f"{run_dir}/{exc}", artifact="TASK_SPEC.json"
        ) from exc
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.ARTIFACT_MALFORMED, f"{run_dir}/{exc}", artifact="TASK_SPEC.json"
        ) from exc
    except CatalyticError as exc:
        raise _malformed(exc.message) from exc


def recorded_lock_files(recorded: dict[str, Any]) -> tuple[str, ...]:
    """The lock files a recorded environment names, to be hashed again below the caller's root.
    A bundle chooses these names, so each must be a safe relative path (core/paths.py: never
    absolute, never `..`, never git's directory): otherwise any file or device on the machine
    would be hashed (a hash oracle) or read without end."""
    locks = recorded.get("lock_files", {})
    if not isinstance(locks, dict):
        raise _malformed("environment.lock_files must be an object (path -> hash)")
    for rel in locks:
        problem = rel_problem(rel)
        if problem is not None:
            raise _malformed(
                f"lock file {rel!r} is not a safe relative path: {problem}",
                path=rel,
                reason=problem,
            )
    return tuple(locks)


# -- comparison -------------------------------------------------------------------------------

PYTHON_FIELDS = ("implementation", "version", "abi", "platform")


def compare(recorded: Any, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Differences between a recorded environment and the current one (empty when equal).
    A first-release record is compared on the fields it has; a recorded environment of the
    wrong shape is ARTIFACT_MALFORMED."""
    if not isinstance(recorded, dict):
        return [{"field": "environment", "recorded": None, "current": "present"}]
    if not isinstance(recorded.get("distributions", []), list):
        raise _malformed("environment.distributions must be a list")
    if not isinstance(recorded.get("distributions", []), list):
        raise _malformed("environment.distributions must be a list")
    diffs: list[dict[str, Any]] = []
    if recorded.get("environment_format") == ENVIRONMENT_FORMAT:
        old_py, new_py = _obj(recorded.get("python")), _obj(current.get("python"))
        for k in PYTHON_FIELDS:
            if old_py.get(k) != new_py.get(k):
                diffs.append(
                    {"field": f"python {k}", "recorded": old_py.get(k), "current": new_py.get(k)}
                )
        for key in ("environment_hash", "lock_files"):
            if recorded.get(key) != current.get(key):
                diffs.append(
                    {"field": key, "recorded": recorded.get(key), "current": current.get(key)}
                )
    else:
        for key in (
            "python_implementation",
            "python_version",
            "platform",
            "machine",
            "lock_files",
            "distributions_sha256",
        ):
            if recorded.get(key) != current.get(key):
                diffs.append(
                    {"field": key, "recorded": recorded.get(key), "current": current.get(key)}
                )
    diffs += compare_distributions(
        recorded.get("distributions", []), current.get("distributions", [])
    )
    diffs += compare_system(recorded.get("system"), current.get("system", {}))
    return diffs


def _by_name(dists: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(dists, list):
        for d in dists:
            if isinstance(d, str) and "==" in d:
                name, _, version = d.partition("==")
                out[normalise(name)] = f"{normalise(name)}=={version}"
    return out


def compare_distributions(recorded: Any, current: Any) -> list[dict[str, Any]]:
    old, new = _by_name(recorded), _by_name(current)
    return [
        {"field": f"distribution {name}", "recorded": old.get(name), "current": new.get(name)}
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
