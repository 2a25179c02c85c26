"""Imports point downwards only, and the hook entry points stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import DEFAULT_POLICY, ROOT

PACKAGE = ROOT / "catalytic_hooks"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            found.add(("." * node.level) + mod)
    return found


def test_core_never_imports_the_cli_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts or path.name == "__main__.py":
            continue  # the CLI layer itself, and the entry point above it
        for mod in imported_modules(path):
            top = mod.lstrip(".").split(".")[0]
            assert top not in ("typer", "rich", "click"), (path, mod)
            assert not mod.lstrip(".").startswith("cli"), (path, mod)


def test_only_gitrepo_imports_pygit2() -> None:
    users = {p.name for p in PACKAGE.rglob("*.py")
             if any(m.split(".")[0] == "pygit2" for m in imported_modules(p))}
    assert users == {"gitrepo.py"}


def test_hook_entry_point_imports_no_heavy_modules(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "catalytic_hooks", "hook",
                           "pre-commit"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:")}
    for heavy in ("typer", "rich", "pygit2", "click", "pydantic", "cryptography"):
        assert heavy not in loaded, heavy
