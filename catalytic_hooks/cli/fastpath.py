"""Start-up fast path for `catalytic digest` and `catalytic check`.

Typer 0.29 builds a pydantic validator for every option of a command on every call (about
100-150 ms here), which would be most of a warm digest's time. This module reads the same options
from the same table of names as the Typer command (a test checks that they are identical) and calls
the same implementation; anything it does not recognise exactly (`--help`, an unknown or
malformed option, a positional argument) returns None and goes through Typer, which then reports
it as usual. `CATALYTIC_NO_FASTPATH=1` disables it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catalytic_hooks.cli.output import CommandExit

# option spelling → (DigestArgs field, kind): "flag", "str", "path" or "list" (repeatable)
DIGEST_OPTIONS: dict[str, tuple[str, str]] = {
    "--rev": ("rev", "str"),
    "--index": ("index", "flag"),
    "--worktree": ("worktree", "flag"),
    "--dir": ("dir", "path"),
    "--ignored": ("ignored", "flag"),
    "--exclusions": ("exclusions", "list"),
    "--durable-roots": ("durable_roots", "list"),
    "--tmp-roots": ("tmp_roots", "list"),
    "--repo": ("repo", "path"),
    "--repo-root": ("repo", "path"),
    "--output": ("output", "path"),
    "--pre": ("pre", "path"),
    "--pre-digest": ("pre", "path"),
    "--post": ("post", "path"),
    "--post-digest": ("post", "path"),
    "--error-receipt": ("error_receipt_path", "path"),
    "--json": ("json_mode", "flag"),
}


CHECK_OPTIONS: dict[str, tuple[str, str]] = {
    "--staged": ("staged", "flag"),
    "--from-ref": ("from_ref", "str"),
    "--to-ref": ("to_ref", "str"),
    "--ci": ("ci", "flag"),
    "--format": ("fmt", "str"),
    "--repo": ("repo", "path"),
    "--repo-root": ("repo", "path"),
    "--json": ("json_mode", "flag"),
}


def parse_options(argv: Sequence[str], table: dict[str, tuple[str, str]], args: Any
                  ) -> Any | None:
    """Fill `args` from `argv` by `table`; None for anything not recognised exactly."""
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        spec = table.get(name)
        if spec is None:
            return None
        field, kind = spec
        if kind == "flag":
            if eq:
                return None
            setattr(args, field, True)
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
        else:
            return None
        if kind == "list":
            current = getattr(args, field) or []
            setattr(args, field, [*current, value])
        else:
            setattr(args, field, Path(value) if kind == "path" else value)
    return args


def parse_digest(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.receipts_impl import DigestArgs

    return parse_options(argv, DIGEST_OPTIONS, DigestArgs())


def parse_check(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.check_impl import CheckArgs

    return parse_options(argv, CHECK_OPTIONS, CheckArgs())


def fast(command: str, argv: Sequence[str]) -> int | None:
    """Run `digest` or `check` without Typer when every option is plain; None: use Typer."""
    parsed = parse_digest(argv) if command == "digest" else parse_check(argv)
    if parsed is None:
        return None
    try:
        if command == "digest":
            from catalytic_hooks.cli.receipts_impl import run_digest

            run_digest(parsed)
        else:
            from catalytic_hooks.cli.check_impl import run_check

            run_check(parsed)
    except CommandExit as exc:
        return exc.code
    return 0
