"""The whole-component root rule and the policy's precedence, importing nothing: core.paths and
core.policy use it, and so do the quick paths (enforce.quickaccept, git.quickdigest), which cannot
afford core.paths' imports (re, the error machinery)."""

from __future__ import annotations

# Lists (the quick paths' records) or tuples (Policy); not collections.abc.Sequence, whose
# import is 2 ms of every hook.
Roots = list[str] | tuple[str, ...]


def under(path: str, root: str) -> bool:
    """Whole-component prefix match: `out` covers `out` and `out/a`, never `outputs/a`."""
    if root == ".":
        return True
    return path == root or path.startswith(root + "/")


def under_any(path: str, roots: Roots) -> bool:
    return any(under(path, r) for r in roots)


def class_of(path: str, exclusions: Roots, tmp: Roots, durable: Roots, protected: Roots) -> str:
    """core.policy.PathClass's value for `path`. Precedence: exclusions (and `.git`), then tmp,
    then durable, then protected (README: "Configuration")."""
    if path == ".git" or path.startswith(".git/") or under_any(path, exclusions):
        return "excluded"
    if under_any(path, tmp):
        return "tmp"
    if under_any(path, durable):
        return "durable"
    if under_any(path, protected):
        return "protected"
    return "unprotected"
