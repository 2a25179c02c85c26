"""The project uses its own habits: its .pre-commit-config.yaml guards tests/vectors/ with the
real catalytic-purity hook through the real pre-commit framework."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from .helpers import ROOT, git, write_files


def _project_like(tmp_path: Path) -> Path:
    """A repository with this project's hook configuration and policy, and a vector file."""
    repo = tmp_path / "proj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".pre-commit-config.yaml").write_bytes((ROOT / ".pre-commit-config.yaml").read_bytes())
    policy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["catalytic"]
    assert policy == {"protected_roots": ["tests/vectors"]}
    (repo / ".catalytic.toml").write_text('protected_roots = ["tests/vectors"]\n')
    write_files(repo, {"tests/vectors/v.json": "{}\n", "src/a.py": "x = 1\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    return repo


def _purity(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "catalytic-purity"],
        cwd=repo,
        capture_output=True,
        text=True,
    )


def test_a_staged_vector_change_is_refused(tmp_path: Path) -> None:
    repo = _project_like(tmp_path)
    (repo / "tests/vectors/v.json").write_text('{"edited": true}\n')
    git(repo, "add", "tests/vectors/v.json")
    proc = _purity(repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tests/vectors/v.json: protected path changed outside durable roots" in proc.stdout


def test_an_ordinary_change_passes(tmp_path: Path) -> None:
    repo = _project_like(tmp_path)
    (repo / "src/a.py").write_text("x = 2\n")
    git(repo, "add", "src/a.py")
    proc = _purity(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
