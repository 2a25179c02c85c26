"""`catalytic report`, Typer-free: the CLI command and the start-up fast path (fastpath.py) both
call `run_report`; Typer's start-up was a fifth of a 10,000-record report's time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.errors import ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.policy import load_policy


@dataclass
class ReportArgs:
    out: Path | None = None
    open_it: bool = False
    repo: Path | None = None
    json_mode: bool = False


def run_report(args: ReportArgs) -> None:
    from catalytic_hooks.core.canonical import sha256_hex
    from catalytic_hooks.report.chronicle_html import write_report

    with handled(args.json_mode):
        r = open_repo(args.repo)
        path, view, html = write_report(
            r.top, load_policy(r.top), args.out.absolute() if args.out else None
        )
        if args.open_it:
            import webbrowser

            webbrowser.open(path.as_uri())
        details = {
            "path": str(path),
            "sha256": sha256_hex(html),
            "records": view.check.records,
            "chronicle_ok": view.check.ok,
            "bad_line": view.check.bad_line,
            "reason": view.check.reason,
        }

        def human() -> None:
            if not view.check.ok:
                say(f"chronicle INVALID at line {view.check.bad_line}: {view.check.reason}")
            say(f"report: {path}")

        result(
            args.json_mode,
            view.check.ok,
            SuccessCode.OK if view.check.ok else ErrorCode.CHRONICLE_INVALID,
            details,
            human,
        )
