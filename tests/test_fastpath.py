"""The digest fast path reads exactly the Typer command's options and behaves identically."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import typer.main

from catalytic_hooks.cli.app import app
from catalytic_hooks.cli.fastpath import DIGEST_OPTIONS, parse_digest

from .helpers import DEFAULT_POLICY, catalytic, imported_by


def test_option_table_is_the_typer_commands() -> None:
    cmd = typer.main.get_command(app).commands["digest"]  # type: ignore[attr-defined]
    typer_table = {}
    for p in cmd.params:
        kind = (
            "flag" if p.is_flag else "list" if p.multiple else "str" if p.name == "rev" else "path"
        )
        for opt in (*p.opts, *p.secondary_opts):
            typer_table[opt] = (p.name, kind)
    assert typer_table == DIGEST_OPTIONS


@pytest.mark.parametrize(
    "argv", [["--help"], ["--bogus"], ["positional"], ["--rev"], ["--json=yes"], ["--", "--index"]]
)
def test_anything_unusual_goes_to_typer(argv: list[str]) -> None:
    assert parse_digest(argv) is None


CASES = [
    [],
    ["--json"],
    ["--index"],
    ["--worktree", "--json"],
    ["--rev", "HEAD", "--json"],
    ["--rev=HEAD"],
    ["--dir", "src", "--json"],
    ["--exclusions", "src", "--exclusions", "a.txt,b", "--json"],
    ["--durable-roots=outputs", "--tmp-roots", "_tmp", "--json"],
    ["--index", "--worktree", "--json"],
    ["--rev", "no-such-rev", "--json"],
    ["--output", "OUT.json"],
    ["--pre-digest", "PRE.json", "--json"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) or "(none)" for c in CASES])
def test_fast_and_typer_paths_agree(make_repo, tmp_path: Path, argv: list[str]) -> None:
    repo = make_repo({"src/a.py": "a", "b.txt": "b", "outputs/o": "o"}, policy=DEFAULT_POLICY)
    (repo / "untracked.txt").write_text("u")
    results = []
    for fast in (True, False):
        env = dict(os.environ)
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        err = tmp_path / f"err-{fast}.json"
        proc = catalytic("digest", *argv, "--error-receipt", str(err), cwd=repo, env=env)
        written = {}
        for name in ("OUT.json", "PRE.json"):
            if (repo / name).exists():
                written[name] = (repo / name).read_bytes()
                (repo / name).unlink()
        receipt = json.loads(err.read_text()) if err.exists() else None
        if receipt:
            receipt["config_snapshot"].pop("error_receipt_path", None)
        results.append((proc.returncode, proc.stdout, written, receipt))
    assert results[0] == results[1]


def test_digest_fast_path_imports_no_cli_framework(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    loaded = imported_by("digest", cwd=repo)
    for heavy in ("typer", "rich", "click", "pydantic"):
        assert heavy not in loaded, heavy


def test_check_option_table_is_the_typer_commands() -> None:
    from catalytic_hooks.cli.fastpath import CHECK_OPTIONS

    cmd = typer.main.get_command(app).commands["check"]  # type: ignore[attr-defined]
    typer_table = {}
    for p in cmd.params:
        kind = "flag" if p.is_flag else "path" if p.name == "repo" else "str"
        for opt in (*p.opts, *p.secondary_opts):
            typer_table[opt] = (p.name, kind)
    assert typer_table == CHECK_OPTIONS


CHECK_CASES = [
    ["--staged", "--json"],
    ["--from-ref", "HEAD~1", "--to-ref", "HEAD", "--json"],
    ["--from-ref=HEAD~1", "--to-ref=HEAD", "--format", "github"],
    ["--ci", "--json"],
    ["--format", "bogus"],
    ["--staged", "--ci", "--json"],
]


@pytest.mark.parametrize("argv", CHECK_CASES, ids=[" ".join(c) for c in CHECK_CASES])
def test_check_fast_and_typer_paths_agree(make_repo, argv: list[str]) -> None:
    repo = make_repo({"src/a.py": "a", "outputs/o": "o"}, policy=DEFAULT_POLICY)
    (repo / "src/a.py").write_text("changed")
    subprocess.run(["git", "commit", "-qam", "mutate", "--no-verify"], cwd=repo, check=True)
    results = []
    for fast in (True, False):
        env = dict(os.environ)
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        proc = catalytic("check", *argv, cwd=repo, env=env)
        results.append((proc.returncode, proc.stdout, proc.stderr))
    assert results[0] == results[1]


def test_report_option_table_is_the_typer_command() -> None:
    from catalytic_hooks.cli.fastpath import REPORT_OPTIONS, parse_report

    cmd = typer.main.get_command(app).commands["report"]  # type: ignore[attr-defined]
    typer_table = {}
    for p in cmd.params:
        kind = "flag" if p.is_flag else "path"
        for opt in (*p.opts, *p.secondary_opts):
            typer_table[opt] = (p.name, kind)
    assert typer_table == REPORT_OPTIONS
    for unusual in (["--help"], ["--out"], ["--open=yes"], ["x"], ["--bogus"]):
        assert parse_report(unusual) is None, unusual


def test_report_fast_and_typer_paths_agree(make_repo, tmp_path: Path) -> None:
    from .test_report import build_chronicle

    repo = make_repo({"a.txt": "a\n"})
    build_chronicle(repo)
    results = []
    for fast in (True, False):
        env = dict(os.environ)
        if not fast:
            env["CATALYTIC_NO_FASTPATH"] = "1"
        proc = catalytic("report", "--out", str(tmp_path / "o"), "--json", cwd=repo, env=env)
        results.append((proc.returncode, proc.stdout, proc.stderr))
    assert results[0] == results[1] and results[0][0] == 0
    assert json.loads(results[0][1])["details"]["path"] == str(tmp_path / "o" / "report.html")
