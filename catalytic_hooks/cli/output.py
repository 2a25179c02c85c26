"""Rendering in one place: JSON documents on stdout, human text, diagnostics on stderr.

Typer-free on purpose: the start-up fast path (fastpath.py) renders through it too."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from catalytic_hooks.cli.pipes import stdout_gone
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import (
    EXIT_PIPE,
    CatalyticError,
    ErrorCode,
    debug_enabled,
    exit_code_for,
    failure,
)
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode

# Every `code` an envelope can carry (docs/CODES.md): a success, a verdict that is not an error,
# or an error's code.
Code = SuccessCode | VerdictCode | ErrorCode


class CommandExit(Exception):
    """Ends a command with an exit code (turned into the process status by the entry point)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def emit_json(doc: dict[str, Any]) -> None:
    # JSON escapes C0 itself; DEL, C1 and bidi overrides it would write raw (see `inert`)
    sys.stdout.write(canonical_bytes(doc).decode("utf-8").translate(_JSON_INERT) + "\n")
    sys.stdout.flush()


def envelope(ok: bool, code: Code, details: dict[str, Any]) -> dict[str, Any]:
    return {"ok": ok, "code": code, "details": details}


# Human text is made of names the tool did not choose (run directories, archives' run ids,
# paths, a registry's tags): a terminal acts on control characters (ESC starts a sequence that
# can rewrite what was printed, retitle the window, or "print" PASS over a failure) and bidi
# overrides reorder what is shown. They are written as escapes; newlines and tabs are layout.
_INERT = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (
        *range(0x00, 0x09),
        *range(0x0B, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}
_JSON_INERT = {c: f"\\u{c:04x}" for c in _INERT if c >= 0x7F}


def inert(text: str) -> str:
    return text.translate(_INERT)


def say(text: str = "") -> None:
    print(inert(text), flush=True)


def warn(text: str) -> None:
    print(inert(text), file=sys.stderr, flush=True)


def result(
    json_mode: bool,
    ok: bool,
    code: Code,
    details: dict[str, Any],
    human: Callable[[], None],
    exit_code: int | None = None,
) -> None:
    if json_mode:
        emit_json(envelope(ok, code, details))
    else:
        human()
    raise CommandExit(exit_code if exit_code is not None else (0 if ok else 1))


@contextmanager
def handled(
    json_mode: bool, on_error: Callable[[CatalyticError], None] | None = None
) -> Iterator[None]:
    """The one place where exceptions become exit codes and error documents."""
    try:
        yield
    except CommandExit:
        raise
    except CatalyticError as exc:
        if on_error is not None:
            on_error(exc)
        if json_mode:
            emit_json(exc.to_dict())
        else:
            warn(f"error: {exc.code.value}: {exc.message}")
            if exc.details:
                warn("  details: " + json.dumps(exc.details, sort_keys=True, default=str))
        raise CommandExit(exit_code_for(exc.code)) from None
    except BrokenPipeError:
        stdout_gone()
        raise CommandExit(EXIT_PIPE) from None
    except (Exception, KeyboardInterrupt) as exc:  # an unexpected failure is a bug: say so
        code, message, bug = failure(exc)
        if bug and debug_enabled():
            import traceback

            traceback.print_exc()  # a traceback, never locals
        if json_mode and bug:
            emit_json(
                {
                    "ok": False,
                    "code": ErrorCode.INTERNAL,
                    "message": message.split(": ", 1)[1],
                    "details": {},
                }
            )
        else:
            warn(message)
        raise CommandExit(code) from None
