"""Hostile input to the environment commands: run directory names and recorded paths that would
inject lines into an exported lock, lock files and index pages built to crash a parser, files
planted where a rebuild looks for its interpreter or its wheels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from catalytic_hooks.core.canonical import canonical_bytes

from .helpers import catalytic, make_bundle

POLICY = 'durable_roots = ["outputs"]\nrun_roots = ["_runs"]\n'
TINY_HASH = "sha256:" + "a" * 64


def _environment(**source: str) -> dict[str, object]:
    """tinylib 1.0 (hashed), and with `source` a package built from the repository."""
    packages: list[object] = [{"name": "tinylib", "version": "1.0", "hashes": [TINY_HASH]}]
    if source:
        packages.append({"name": "mypkg", "version": "0.1", "hashes": [], "source": source})
    return {
        "environment_format": 2,
        "python": {"implementation": "cpython", "version": "3.11.7"},
        "packages": packages,
        "environment_hash": "sha256:" + "b" * 64,
    }


def _requirements(lock: Path) -> list[str]:
    """The requirement lines of a requirements file as pip reads it: comments dropped,
    backslash continuations joined."""
    text = lock.read_text().replace("\\\n", " ")
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_a_run_directory_name_cannot_add_a_requirement_to_the_export(
    make_repo, tmp_path: Path
) -> None:
    """A run directory's name is no part of what was signed; it is written into the export's
    header comment. With a newline in it, the line after would be a requirement of the
    attacker's choosing (with its own hash) that pip installs."""
    repo = make_repo({"README": "x\n"}, policy=POLICY)
    spec = {"task_id": "r", "command": ["true"], "cwd": ".", "environment": _environment()}
    name = "r\nevil==6.6.6 --hash=sha256:" + "e" * 64 + " #"
    run = make_bundle(
        repo / "_runs" / name, repo, {"outputs/a.txt": b"a"}, task_spec=canonical_bytes(spec)
    )
    lock = tmp_path / "lock.txt"
    proc = catalytic("env", "export", str(run), "--output", str(lock), cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _requirements(lock) == ["tinylib==1.0"]
    assert "r\\nevil==6.6.6" in lock.read_text().splitlines()[0]  # shown, escaped, inert
    # and pip, reading the file, asks for tinylib alone
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "--require-hashes",
         "-d", str(tmp_path / "d"), "-r", str(lock)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert pip.returncode != 0 and "tinylib" in pip.stderr and "evil" not in pip.stderr


def test_a_recorded_source_path_with_a_newline_is_refused(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"README": "x\n"}, policy=POLICY)
    hostile = _environment(kind="directory", repo_path="pkg\nevil==6.6.6 #")
    spec = {"task_id": "r", "command": ["true"], "cwd": ".", "environment": hostile}
    run = make_bundle(
        repo / "_runs" / "r1", repo, {"outputs/a.txt": b"a"}, task_spec=canonical_bytes(spec)
    )
    lock = tmp_path / "lock.txt"
    proc = catalytic("env", "export", str(run), "--output", str(lock), "--json", cwd=repo)
    assert proc.returncode != 0 and '"ENV_PIN_INVALID"' in proc.stdout, proc.stdout + proc.stderr
    assert not lock.exists()
