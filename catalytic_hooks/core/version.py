"""The one version source: `VERSION` here, which pyproject.toml reads (setuptools `attr:`,
parsed without importing the package). A constant, because asking importlib.metadata costs
start-up time on every digest and run (docs/decisions/0003)."""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "catalytic-hooks"


VERSION = "0.1.0"


def version() -> str:
    return VERSION


def module_version() -> str:
    """What receipts record as `module_version` (FORMATS §2)."""
    return f"{DISTRIBUTION}/{version()}"


@cache
def module_version_hash() -> str:
    """sha256 hex of `module_version()`, as receipts record it."""
    import hashlib

    return hashlib.sha256(module_version().encode()).hexdigest()


def generator() -> str:
    """What bundles record as their `generator`."""
    return f"{DISTRIBUTION} {version()}"
