"""Wheel compatibility: the tags an interpreter supports (most specific first, as
`packaging.tags.sys_tags` orders them, for CPython and PyPy on Linux, macOS and Windows) and wheel
file names (PEP 427). Derived from the facts the interpreter reported about itself
(provenance.pyquery), so no third-party package is needed here or there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from catalytic_hooks.provenance.environment import abi_tag, platform_tag
from catalytic_hooks.provenance.locks import normalise

_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl\Z"
)


@dataclass(frozen=True)
class WheelName:
    filename: str
    name: str  # PEP 503-normalised
    version: str
    build: str | None
    tags: frozenset[str]


def parse_wheel_name(filename: str) -> WheelName | None:
    m = _WHEEL.match(filename)
    if m is None:
        return None
    tags = frozenset(
        f"{py}-{abi}-{plat}"
        for py in m["py"].split(".")
        for abi in m["abi"].split(".")
        for plat in m["plat"].split(".")
    )
    return WheelName(filename, normalise(m["name"]), m["version"], m["build"], tags)


def same_version(pin: str, wheel: str) -> bool:
    """A wheel's file name spells the version with `-` escaped as `_` (PEP 427)."""
    return pin.replace("-", "_").lower() == wheel.replace("-", "_").lower()


def _platforms(facts: dict[str, Any]) -> list[str]:
    plat = platform_tag(facts) or "any"
    m = re.match(r"linux_(.+)\Z", plat)
    libc = facts.get("libc") or ""
    g = re.match(r"glibc (\d+)\.(\d+)", libc)
    if m and g:
        arch = m.group(1)
        arch = "i686" if arch == "x86_64" and facts.get("bits") == 32 else arch
        out: list[str] = []
        for minor in range(int(g.group(2)), -1, -1):
            glibc = (int(g.group(1)), minor)
            if glibc < (2, 5) and arch in ("x86_64", "i686"):
                break
            out.append(f"manylinux_{glibc[0]}_{glibc[1]}_{arch}")
            if glibc in _LEGACY_MANYLINUX:
                out.append(f"{_LEGACY_MANYLINUX[glibc]}_{arch}")
        return [f"linux_{arch}", *out]  # packaging ≥ 24 ranks the local tag first
    mac = re.match(r"macosx_(\d+)_(\d+)_(.+)\Z", plat)
    if mac:
        version = facts.get("mac_ver") or f"{mac.group(1)}.{mac.group(2)}"
        major = int(str(version).split(".")[0])
        arch = mac.group(3)
        arches = [arch, "universal2"] if arch in ("arm64", "x86_64") else [arch]
        out = []
        for v in range(major, 10, -1):
            out += [f"macosx_{v}_0_{a}" for a in arches]
        for minor in range(16, -1, -1):
            out += [f"macosx_10_{minor}_{a}" for a in arches]
        return out
    return [plat]


def supported_tags(facts: dict[str, Any]) -> list[str]:
    """Every tag this interpreter accepts, best first."""
    info = facts.get("version_info") or [3, 0, 0]
    major, minor = int(info[0]), int(info[1])
    plats = _platforms(facts)
    impl = facts.get("implementation")
    abi = abi_tag(facts)
    tags: list[str] = []
    interp: str
    if impl == "cpython":
        interp = f"cp{major}{minor}"
        abis = [a for a in (abi, "abi3", "none") if a]
        for a in dict.fromkeys(abis):
            tags += [f"{interp}-{a}-{p}" for p in plats]
        for m in range(minor - 1, 1, -1):
            tags += [f"cp{major}{m}-abi3-{p}" for p in plats]
    else:
        interp = f"pp{major}{minor}" if impl == "pypy" else f"{impl}{major}{minor}"
        for a2 in (abi, "none"):
            if a2:
                tags += [f"{interp}-{a2}-{p}" for p in plats]
    pys = [f"py{major}{minor}", f"py{major}", *(f"py{major}{m}" for m in range(minor - 1, -1, -1))]
    for py in pys:
        tags += [f"{py}-none-{p}" for p in plats]
    tags.append(f"{interp}-none-any")
    tags += [f"{py}-none-any" for py in pys]
    return list(dict.fromkeys(tags))


def describe_platform(facts: dict[str, Any]) -> str:
    plat = _platforms(facts)
    return f"{facts.get('implementation')} {facts.get('version')} ({abi_tag(facts)}, {plat[0]})"
