"""Environment fingerprint (recorded by `catalytic run`, compared by replay) and the determinism
settings both apply to the command they run."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_hash, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.untrusted import read_beneath, rel_problem, sha256_beneath

DETERMINISM_VARS = ("PYTHONHASHSEED", "CATALYTIC_SEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")


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
    """Installed distributions as sorted `name==version`: what importlib.metadata reports, read
    from the metadata files' headers directly (parsing 250 METADATA files as e-mail messages
    cost 0.3 s of every run). Anything unusual on sys.path takes importlib.metadata's path."""
    seen = _from_headers()
    if seen is None:
        import importlib.metadata

        seen = set()
        for dist in importlib.metadata.distributions():
            name = (dist.metadata["Name"] or "").strip()
            if name:
                seen.add(f"{name.lower().replace('_', '-')}=={dist.version}")
    return sorted(seen)


def _from_headers() -> set[str] | None:
    seen: set[str] = set()
    for entry in sys.path:
        base = entry or "."
        if os.path.isfile(base):
            return None  # a zip archive: importlib.metadata knows how to read those
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                meta = os.path.join(base, n, "METADATA")
            elif n.endswith(".egg-info"):
                meta = os.path.join(base, n)
                meta = os.path.join(meta, "PKG-INFO") if os.path.isdir(meta) else meta
            else:
                continue
            fields = _header(meta)
            if fields is None:
                return None
            if fields.get("name"):
                seen.add(f"{fields['name'].lower().replace('_', '-')}=={fields.get('version')}")
    return seen


def _header(path: str) -> dict[str, str] | None:
    """Name and Version from an RFC 822 header block (None: not the plain form expected)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                if line in ("\n", "\r\n"):
                    break
                if line[:1] in (" ", "\t"):
                    continue  # a folded continuation line (Name and Version are never folded)
                key, sep, value = line.partition(":")
                key = key.lower()
                if sep and key in ("name", "version") and key not in fields:
                    fields[key] = value.strip()
                if len(fields) == 2:
                    break
    except FileNotFoundError:
        return {}  # importlib.metadata would skip it as well, with no Name
    except OSError:
        return None
    return fields


def fingerprint(root: Path, lock_files: tuple[str, ...], seed: int) -> dict[str, Any]:
    """The environment now. A lock file is hashed through the safe reader (a link, a FIFO or a
    device is not read: null, like a missing file), the same way when a run records it and when a
    replay or `env --compare` checks it, so the two stay comparable."""
    dists = distributions()
    locks: dict[str, str | None] = {}
    for rel in lock_files:
        try:
            locks[rel] = "sha256:" + sha256_beneath(root, rel)
        except OSError:
            locks[rel] = None
    return {
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "platform": platform.system(),
        "platform_release": platform.release(),
        "machine": platform.machine(),
        "distributions": dists,
        "distributions_sha256": canonical_hash(dists),
        "lock_files": locks,
        "determinism": determinism_env(seed),
    }


def _malformed(message: str, **details: Any) -> CatalyticError:
    return CatalyticError(ErrorCode.ARTIFACT_MALFORMED, f"TASK_SPEC.json: {message}",
                          artifact="TASK_SPEC.json", **details)


def recorded_environment(run_dir: Path) -> Any:
    """The fingerprint a run directory's TASK_SPEC.json recorded (None: none), read through the
    safe reader: `env --compare` reads a run nobody has verified."""
    try:
        spec = loads_strict(read_beneath(run_dir, "TASK_SPEC.json"), what="TASK_SPEC.json")
    except FileNotFoundError as exc:
        raise CatalyticError(ErrorCode.ARTIFACT_MISSING, f"{run_dir}/{exc}",
                             artifact="TASK_SPEC.json") from exc
    except OSError as exc:
        raise CatalyticError(ErrorCode.ARTIFACT_MALFORMED, f"{run_dir}/{exc}",
                             artifact="TASK_SPEC.json") from exc
    except CatalyticError as exc:
        raise _malformed(exc.message) from exc
    return spec.get("environment") if isinstance(spec, dict) else None


def recorded_lock_files(recorded: dict[str, Any]) -> tuple[str, ...]:
    """The lock files a recorded fingerprint names, to be hashed again below the caller's root.
    A bundle chooses these names, so each must be a safe relative path (core/paths.py: never
    absolute, never `..`, never git's directory): otherwise any file or device on the machine
    would be hashed (a hash oracle) or read without end."""
    locks = recorded.get("lock_files", {})
    if not isinstance(locks, dict):
        raise _malformed("environment.lock_files must be an object (path -> hash)")
    for rel in locks:
        problem = rel_problem(rel)
        if problem is not None:
            raise _malformed(f"lock file {rel!r} is not a safe relative path: {problem}",
                             path=rel, reason=problem)
    return tuple(locks)


def compare(recorded: Any, current: dict[str, Any]) -> list[dict[str, Any]]:
    """Differences between a recorded fingerprint and the current one (empty when equal); a
    recorded fingerprint of the wrong shape is ARTIFACT_MALFORMED."""
    if not isinstance(recorded, dict):
        return [{"field": "environment", "recorded": None, "current": "present"}]
    if not isinstance(recorded.get("distributions", []), list):
        raise _malformed("environment.distributions must be a list")
    diffs: list[dict[str, Any]] = []
    for key in ("python_implementation", "python_version", "platform", "machine",
                "lock_files", "distributions_sha256"):
        if recorded.get(key) != current.get(key):
            diffs.append({"field": key, "recorded": recorded.get(key),
                          "current": current.get(key)})
    old = {d.split("==")[0]: d for d in recorded.get("distributions", []) if isinstance(d, str)}
    new = {d.split("==")[0]: d for d in current["distributions"]}
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            diffs.append({"field": f"distribution {name}", "recorded": old.get(name),
                          "current": new.get(name)})
    return diffs
