"""The recorded environment as a rebuild plan, validated strictly: TASK_SPEC comes from a bundle,
and every name, version, hash and path in it ends up on an installer's command line or in a
requirements file. A value that is not exactly the expected shape refuses the rebuild
(ENV_PIN_INVALID); nothing is escaped or repaired, and nothing starting with '-' (an option)
or holding a space, quote, `;`, `@`, `#`, `/` or newline can pass."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component, relpath_problem

NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,198}[a-z0-9])?\Z")  # PEP 503-normalised
# PEP 440 public and local versions, plus the legacy spellings installers accept (`1.0-1`);
# a digit first (after an optional epoch and `v`), never an option or a URL.
VERSION = re.compile(r"^(?:[0-9]{1,9}!)?[vV]?[0-9][0-9A-Za-z.+_-]{0,120}\Z")
HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # a newline in a path would end a line
PY_VERSION = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?:[a-z]+[0-9]*\+?)?\Z")
IMPLEMENTATIONS = ("cpython", "pypy")
BUILD_KINDS = ("editable", "directory")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]
    # "editable" or "directory": built from the replay's checkout at `repo_path`
    kind: str | None = None
    repo_path: str | None = None

    @property
    def from_checkout(self) -> bool:
        return self.kind in BUILD_KINDS and self.repo_path is not None

    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Plan:
    implementation: str
    python_version: str  # exact, as recorded
    environment_hash: str
    pins: tuple[Pin, ...]

    @property
    def minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    @property
    def wheels(self) -> tuple[Pin, ...]:
        return tuple(p for p in self.pins if not p.from_checkout)

    @property
    def builds(self) -> tuple[Pin, ...]:
        return tuple(p for p in self.pins if p.from_checkout)


def _bad(what: str, value: Any) -> CatalyticError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return CatalyticError(
        ErrorCode.ENV_PIN_INVALID,
        f"the recorded environment holds {what} "
        f"{shown}, which is not a valid value; refusing to hand it to an "
        "installer",
        field=what,
    )


def _pin(doc: Any) -> Pin:
    if not isinstance(doc, dict):
        raise _bad("a package entry", doc)
    name, version, hashes = doc.get("name"), doc.get("version"), doc.get("hashes", [])
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad("package name", name)
    if not isinstance(version, str) or not VERSION.match(version):
        raise _bad(f"version of {name}", version)
    if not isinstance(hashes, list) or not all(
        isinstance(h, str) and HASH.match(h) for h in hashes
    ):
        raise _bad(f"hashes of {name}", hashes)
    src = doc.get("source")
    kind = repo_path = None
    if isinstance(src, dict) and src.get("kind") in BUILD_KINDS and "repo_path" in src:
        kind, repo_path = src["kind"], src["repo_path"]
        if not isinstance(repo_path, str) or (
            repo_path != "."
            and (
                relpath_problem(repo_path) is not None
                or has_git_component(repo_path)
                or _CONTROL.search(repo_path) is not None
            )
        ):
            raise _bad(f"source path of {name}", repo_path)
    elif src is not None and not isinstance(src, dict):
        raise _bad(f"source of {name}", src)
    return Pin(name, version, tuple(sorted(set(hashes))), kind, repo_path)


def plan_of(environment: Any) -> Plan:
    """The plan for a TASK_SPEC `environment`; ENV_PIN_INVALID for anything unusable."""
    if not isinstance(environment, dict) or environment.get("environment_format") != 2:
        raise CatalyticError(
            ErrorCode.ENV_PIN_INVALID,
            "the run records no rebuildable "
            "environment (recorded by a release before environment_format 2); "
            "rebuild it by hand from TASK_SPEC environment.distributions",
        )
    python = environment.get("python")
    if not isinstance(python, dict) or "error" in python:
        why = python.get("error") if isinstance(python, dict) else "no Python interpreter"
        raise CatalyticError(
            ErrorCode.ENV_PIN_INVALID,
            f"the run recorded no Python environment ({why}); there is nothing to rebuild",
        )
    impl, version = python.get("implementation"), python.get("version")
    if impl not in IMPLEMENTATIONS:
        raise _bad("interpreter implementation", impl)
    if not isinstance(version, str) or not PY_VERSION.match(version):
        raise _bad("interpreter version", version)
    packages = environment.get("packages")
    if not isinstance(packages, list):
        raise _bad("package list", packages)
    pins = tuple(_pin(p) for p in packages)
    names = [p.name for p in pins]
    if len(set(names)) != len(names):
        # Counted once (a list.count per name was quadratic: hours for a signed list of a
        # million packages with one name twice).
        twice = sorted(n for n, k in collections.Counter(names).items() if k > 1)
        raise _bad("a package listed twice:", twice[0])
    env_hash = environment.get("environment_hash")
    if not isinstance(env_hash, str) or not HASH.match(env_hash):
        raise _bad("environment hash", env_hash)
    return Plan(str(impl), version, env_hash, tuple(sorted(pins, key=lambda p: p.name)))
