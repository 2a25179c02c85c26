"""One start-up fast path for the hot commands: `digest`, `check`, `run`, `archive create`,
`archive pull`, `archive push` and `report`.

Typer builds a validator for every option of a command on every call, which would be most of
a warm digest's time (docs/decisions/0003). Each hot command's options are declared once
(cli/hot_options.py); this module parses them from the table derived from that declaration, and
the Typer command is built from the same declaration (cli/options.typer_command). Both call the
same implementation; anything the fast path does not recognise exactly (`--help`, an unknown or
malformed option, a positional argument, a number that does not parse) returns None and goes
through Typer, which then reports it as usual. `CATALYTIC_NO_FASTPATH=1` disables it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from catalytic_hooks.cli.hot_options import (
    ARCHIVE_CREATE_ARGS,
    ARCHIVE_CREATE_OPTIONS,
    ARCHIVE_PULL_ARGS,
    ARCHIVE_PULL_OPTIONS,
    ARCHIVE_PUSH,
    ARCHIVE_PUSH_ARGS,
    ARCHIVE_PUSH_OPTIONS,
    CHECK_OPTIONS,
    DIGEST_OPTIONS,
    REPORT_OPTIONS,
    RUN_OPTIONS,
    Opt,
    minimums,
)
from catalytic_hooks.cli.output import CommandExit

_NUMBER = {"int": int, "float": float}


def parse_options(
    argv: Sequence[str],
    table: dict[str, tuple[str, str]],
    args: Any,
    rest: str | None = None,
    positional: Sequence[Opt] = (),
    minimums: dict[str, int] | None = None,
) -> Any | None:
    """Fill `args` from `argv` by `table`; None for anything not recognised exactly. `rest`:
    the field that takes every argument after `--` (the commands with no positional
    arguments have none); `positional`: the required positional arguments, in order (each one
    that does not start with `-`; one more, or fewer, goes to Typer); `minimums`: the least
    value of a number field (a smaller one goes to Typer, which refuses it)."""
    i = 0
    seen = 0
    while i < len(argv):
        token = argv[i]
        if token == "--" and rest is not None:
            setattr(args, rest, list(argv[i + 1 :]))
            return args
        name, eq, inline = token.partition("=")
        spec = table.get(name)
        if spec is None and seen < len(positional) and not token.startswith("-"):
            arg = positional[seen]
            setattr(args, arg.field, Path(token) if arg.kind == "path" else token)
            seen += 1
            i += 1
            continue
        if spec is None:
            return None
        field, kind = spec
        if eq and not name.startswith("--"):
            return None  # Click reads `-o=x` as the value "=x": Typer decides it, not a guess here
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
        elif kind in _NUMBER:
            try:
                number = _NUMBER[kind](value)
            except ValueError:
                return None
            if minimums and field in minimums and number < minimums[field]:
                return None
            setattr(args, field, number)
        else:
            setattr(args, field, Path(value) if kind == "path" else value)
    return args if seen == len(positional) else None


def parse_digest(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.receipts_impl import DigestArgs

    return parse_options(argv, DIGEST_OPTIONS, DigestArgs())


def parse_check(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.check_impl import CheckArgs

    return parse_options(argv, CHECK_OPTIONS, CheckArgs())


def parse_run(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.run_impl import RunArgs

    args = parse_options(argv, RUN_OPTIONS, RunArgs(), rest="command")
    # --run-id is required: without it Typer says so.
    return args if args is not None and args.run_id is not None else None


def parse_archive_create(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.archive_impl import ArchiveCreateArgs

    return parse_options(
        argv, ARCHIVE_CREATE_OPTIONS, ArchiveCreateArgs(), positional=ARCHIVE_CREATE_ARGS
    )


def parse_archive_pull(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.archive_impl import ArchivePullArgs

    return parse_options(
        argv, ARCHIVE_PULL_OPTIONS, ArchivePullArgs(), positional=ARCHIVE_PULL_ARGS
    )


def parse_archive_push(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.archive_impl import ArchivePushArgs

    return parse_options(
        argv,
        ARCHIVE_PUSH_OPTIONS,
        ArchivePushArgs(),
        positional=ARCHIVE_PUSH_ARGS,
        minimums=minimums(ARCHIVE_PUSH),
    )


def _run_digest(args: Any) -> None:
    from catalytic_hooks.cli.receipts_impl import run_digest

    run_digest(args)


def _run_check(args: Any) -> None:
    from catalytic_hooks.cli.check_impl import run_check

    run_check(args)


def _run_run(args: Any) -> None:
    from catalytic_hooks.cli.run_impl import run_run

    run_run(args)


def _run_archive_create(args: Any) -> None:
    from catalytic_hooks.cli.archive_impl import run_archive_create

    run_archive_create(args)


def _run_archive_pull(args: Any) -> None:
    from catalytic_hooks.cli.archive_impl import run_archive_pull

    run_archive_pull(args)


def _run_archive_push(args: Any) -> None:
    from catalytic_hooks.cli.archive_impl import run_archive_push

    run_archive_push(args)


def parse_report(argv: Sequence[str]) -> Any | None:
    from catalytic_hooks.cli.report_impl import ReportArgs

    return parse_options(argv, REPORT_OPTIONS, ReportArgs())


def _run_report(args: Any) -> None:
    from catalytic_hooks.cli.report_impl import run_report

    run_report(args)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], Any | None], Callable[[Any], None]]] = {
    "digest": (parse_digest, _run_digest),
    "check": (parse_check, _run_check),
    "run": (parse_run, _run_run),
    "archive create": (parse_archive_create, _run_archive_create),
    "archive pull": (parse_archive_pull, _run_archive_pull),
    "archive push": (parse_archive_push, _run_archive_push),
    "report": (parse_report, _run_report),
}


def fast(command: str, argv: Sequence[str], status: Any = None) -> int | None:
    """Run a hot command without Typer when every option is plain; None: use Typer.
    `status`: a working-tree digest's `git status`, started by the entry point (git.earlyspawn)."""
    parse, execute = COMMANDS[command]
    try:
        parsed = parse(argv)
        if parsed is None:
            return None
        if status is not None:
            parsed.status, status = status, None
        execute(parsed)
    except CommandExit as exc:
        return exc.code
    finally:
        if status is not None:  # not handed on: nobody reads it
            status.kill()
            status.wait()
    return 0
