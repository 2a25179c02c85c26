"""The Typer application: one sub-app per command group."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from catalytic_hooks.cli import (
    archive_cmd,
    bundle_cmd,
    env_cmd,
    hooks_cmd,
    receipts_cmd,
    registry_cmd,
    replay_cmd,
    report_cmd,
    restore_cmd,
)
from catalytic_hooks.cli.output import CommandExit

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
app.command("adopt")(hooks_cmd.adopt_cmd)
app.command("doctor")(hooks_cmd.doctor_cmd)
app.command("run", context_settings={"allow_interspersed_args": False})(bundle_cmd.run)
app.command("keygen")(bundle_cmd.keygen)
app.command("sign")(bundle_cmd.sign)
app.command("verify")(bundle_cmd.verify)
app.command("attest")(bundle_cmd.attest)
app.add_typer(env_cmd.env_app, name="env")
app.add_typer(bundle_cmd.trust_app, name="trust")
app.add_typer(restore_cmd.restore_app, name="restore")
app.command("recover")(restore_cmd.recover_all)
app.command("replay")(replay_cmd.replay)
app.add_typer(replay_cmd.chronicle_app, name="chronicle")
app.command("validate")(report_cmd.validate)
app.command("report")(report_cmd.report)
archive_cmd.archive_app.command("push")(registry_cmd.push_cmd)
archive_cmd.archive_app.command("pull")(registry_cmd.pull_cmd)
app.add_typer(archive_cmd.archive_app, name="archive")


def _register() -> None:
    from catalytic_hooks.cli import demo_cmd

    app.command("demo")(demo_cmd.demo)
    app.command("init")(demo_cmd.init)


_register()


def run_app(args: Sequence[str]) -> int:
    try:
        rv = app(args=list(args), prog_name="catalytic", standalone_mode=False)
    except CommandExit as exc:
        return exc.code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:
        # Typer vendors its own click, so its exceptions are recognised by shape: usage errors
        # can `show()` themselves, `Exit` carries an exit code, `Abort` is an interrupt.
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
            return int(code if code is not None else 2)
        if code is not None:
            return int(code)
        if type(exc).__name__ == "Abort":
            return 130
        raise
    return rv if isinstance(rv, int) else 0
