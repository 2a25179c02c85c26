"""Start-up fast path for `catalytic digest`.

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

from catalytic_hooks.cli.output import CommandExit
from catalytic_hooks.cli.receipts_impl import DigestArgs, run_digest

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


def parse_digest(argv: Sequence[str]) -> DigestArgs | None:
    args = DigestArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        spec = DIGEST_OPTIONS.get(name)
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


def fast_digest(argv: Sequence[str]) -> int | None:
    parsed = parse_digest(argv)
    if parsed is None:
        return None
    try:
        run_digest(parsed)
    except CommandExit as exc:
        return exc.code
    return 0
