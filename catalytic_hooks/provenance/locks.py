"""Declared lock files (policy `lock_files`): their hashes, and the wheel hashes they pin.

An installer records the hash of the wheel it installed only for a direct reference (PEP 610
`direct_url.json`); for the usual install from an index the hash is lost. A hash-locked project
keeps it in its lock file, so the pins a run records take their hashes from there:
requirements files with `--hash` options (pip-compile, `uv pip compile --generate-hashes`),
`pylock.toml` (PEP 751) and `uv.lock`. `environment.yml` is hashed and compared only."""

from __future__ import annotations

import re
import tomllib
from typing import Any

SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXACT = re.compile(r"==\s*([A-Za-z0-9][A-Za-z0-9.+!_-]*)")

LockPins = dict[tuple[str, str], set[str]]  # (normalised name, version) -> {"sha256:<hex>"}


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _add(pins: LockPins, name: str, version: str, digest: str) -> None:
    digest = digest.lower().removeprefix("sha256:").removeprefix("sha256=")
    if SHA256.match(digest):
        pins.setdefault((normalise(name), version), set()).add("sha256:" + digest)


def _requirements(text: str) -> LockPins:
    pins: LockPins = {}
    logical = re.sub(r"\\\r?\n", " ", text)
    for line in logical.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line or line.startswith("-"):
            continue
        m, exact = _NAME.match(line), _EXACT.search(line.split(";")[0])
        if m is None or exact is None:
            continue
        for h in re.findall(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})", line):
            _add(pins, m.group(1), exact.group(1), h)
    return pins


def _toml_packages(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = doc.get(key)
    return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []


def _pylock(doc: dict[str, Any]) -> LockPins:
    pins: LockPins = {}
    for pkg in _toml_packages(doc, "packages"):
        name, version = pkg.get("name"), pkg.get("version")
        if not (isinstance(name, str) and isinstance(version, str)):
            continue
        wheels = pkg.get("wheels")
        for w in wheels if isinstance(wheels, list) else []:
            hashes = w.get("hashes") if isinstance(w, dict) else None
            if isinstance(hashes, dict) and isinstance(hashes.get("sha256"), str):
                _add(pins, name, version, hashes["sha256"])
    return pins


def _uv_lock(doc: dict[str, Any]) -> LockPins:
    pins: LockPins = {}
    for pkg in _toml_packages(doc, "package"):
        name, version = pkg.get("name"), pkg.get("version")
        if not (isinstance(name, str) and isinstance(version, str)):
            continue
        wheels = pkg.get("wheels")
        for w in wheels if isinstance(wheels, list) else []:
            if isinstance(w, dict) and isinstance(w.get("hash"), str):
                _add(pins, name, version, w["hash"])
    return pins


def lock_kind(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    if base == "uv.lock":
        return "uv.lock"
    if base == "pylock.toml" or (base.startswith("pylock.") and base.endswith(".toml")):
        return "pylock"
    if base.endswith((".yml", ".yaml")):
        return "conda"
    return "requirements"


def wheel_hashes(path: str, data: bytes) -> LockPins:
    """The wheel hashes a lock file pins, by (normalised name, version); {} for a lock this
    cannot read (it is still hashed and compared)."""
    kind = lock_kind(path)
    try:
        text = data.decode("utf-8")
        if kind == "requirements":
            return _requirements(text)
        if kind in ("pylock", "uv.lock"):
            doc = tomllib.loads(text)
            return _pylock(doc) if kind == "pylock" else _uv_lock(doc)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        # RecursionError: tomllib recurses once per nested array or table, so a committed
        # lock of 100,000 `[` stops it; such a file is still hashed and compared.
        return {}
    return {}
