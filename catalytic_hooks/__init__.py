"""catalytic-hooks: make catalytic work in a git repository provable."""

from __future__ import annotations


def __getattr__(name: str) -> object:
    # Lazy, so that importing the package (the hook's start-up) does not load importlib.metadata.
    if name == "__version__":
        from catalytic_hooks.core.version import version

        return version()
    raise AttributeError(name)
