"""The one version source: the installed distribution's metadata (pyproject.toml's version).

Looked up on first use, not at import: importlib.metadata costs ~25 ms, and the hook path never
needs the version.
"""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "catalytic-hooks"


@cache
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


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
