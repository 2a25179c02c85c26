"""The Typer application: one sub-app per command group."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from . import hooks_cmd, receipts_cmd

app = typer.Typer(
    name="catalytic",
    help="Make catalytic work in a git repository provable.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a signing tool must never print locals
    add_completion=False,
)

app.command("digest")(receipts_cmd.digest)
app.command("purity-scan")(receipts_cmd.purity_scan_cmd)
app.command("restore-proof")(receipts_cmd.restore_proof_cmd)
app.command("check")(hooks_cmd.check)
app.command("hook")(hooks_cmd.hook)
app.command("install")(hooks_cmd.install_cmd)
app.command("uninstall")(hooks_cmd.uninstall_cmd)


def _register() -> None:
    from . import demo_cmd

    app.command("demo")(demo_cmd.demo)
    app.command("init")(demo_cmd.init)


_register()


def run_app(args: Sequence[str]) -> int:
    try:
        rv = app(args=list(args), prog_name="catalytic", standalone_mode=False)
    except SystemExit as exc:  # typer.Exit surfaces as click's exit in non-standalone mode
        return int(exc.code or 0)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.Exit):
            return int(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return rv if isinstance(rv, int) else 0
