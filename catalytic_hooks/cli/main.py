"""Console entry point. `catalytic hook ...` is dispatched before Typer and rich are imported,
because git runs it on every commit and push and start-up time is the hook's whole cost;
`catalytic digest`, `check`, `run`, `archive create`, `archive pull`, `archive push` and `report`
too when their options are plain (see fastpath.py)."""

from __future__ import annotations

import os
import sys

# os and select only: nothing here may cost the hooks' quick paths their start-up
from catalytic_hooks.cli.pipes import stdout_gone
from catalytic_hooks.git.earlyspawn import Spawned, early_status, early_where


def _quick_hook(args: list[str]) -> bool:
    """The hooks' quick paths (enforce/quickaccept.py), which import almost nothing and only accept.
    A pre-push hook's stdin is read here; the full check then gets the same bytes."""
    if os.environ.get("CATALYTIC_NO_FASTPATH"):
        return False
    if args == ["pre-commit"]:
        from catalytic_hooks.enforce.quickaccept import quick_accept

        return quick_accept()
    if args[:1] == ["pre-push"] and not sys.stdin.isatty():
        from catalytic_hooks.enforce.quickaccept import quick_push

        data = sys.stdin.buffer.read()
        if quick_push(data, args[1] if len(args) > 1 else None):
            return True
        import io

        sys.stdin = io.TextIOWrapper(
            io.BytesIO(data), encoding=sys.stdin.encoding, errors=sys.stdin.errors
        )
    return False


def _quick_digest(
    args: list[str], early: Spawned | None, where: Spawned | None, *, console: bool
) -> int | None:
    """git.quickdigest's answer printed, and the exit code; None: the full path decides.
    Exit codes as core.errors maps them (not imported: enum)."""
    try:
        from catalytic_hooks.git.quickdigest import quick_digest

        line = quick_digest(args, early, where)
    except KeyboardInterrupt:
        if early is not None:
            early.kill()
            early.wait()
        print("interrupted", file=sys.stderr)
        return 130
    if line is None:
        return None
    try:
        print(line, flush=True)
    except BrokenPipeError:
        stdout_gone()
        return 141
    if console:
        # The console command: nothing of the tool's is left to tear down (no file, pool or
        # temporary directory is open), so skip the interpreter's.
        os._exit(0)
    return 0


def _leave(code: int) -> None:
    """The console command's exit without the interpreter's teardown (tens of milliseconds, a
    few percent of a GiB pull): once a pull or a push has returned, its connection, files,
    threads and temporary paths are closed, joined and removed, and only its output is left to
    flush. A stream that was closed before the start (None) or that refuses the flush is left
    as the interpreter's exit would leave it; a reader gone away is 141, as everywhere."""
    if sys.stdout is not None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            stdout_gone()
            code = code or 141
        except (OSError, ValueError):
            pass
    import contextlib  # here: the hooks' quick paths import nothing they need not

    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
    os._exit(code)


def _terminate_as_interrupt() -> None:
    """SIGTERM and SIGHUP raise core.errors.Terminated (a KeyboardInterrupt), so that what a
    pull or a push leaves while it works (a `.part` download, the archive of a run directory
    made to be pushed, a copy across file systems) is removed as after Ctrl-C. Without it these
    signals kill the process where it stands, with every `finally` unrun."""
    import signal

    from catalytic_hooks.core.errors import Terminated

    def stop(signum: int, _frame: object) -> None:
        raise Terminated(signum, signal.Signals(signum).name)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, stop)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["hook"]:
        try:
            return _command(args, argv)
        except KeyboardInterrupt as exc:
            # one arriving before a command's own handling is in place (while it imports)
            from catalytic_hooks.core.errors import failure

            code, message, _ = failure(exc)
            print(message, file=sys.stderr)
            return code
    try:
        if _quick_hook(args[1:]):
            return 0  # provably no finding; anything else: the full check below
    except KeyboardInterrupt as exc:
        from catalytic_hooks.enforce.hookmain import report_failure

        return report_failure(exc)
    from catalytic_hooks.enforce.hookmain import main as hook_main

    return hook_main(args[1:])


def _command(args: list[str], argv: list[str] | None) -> int:
    """Every command but `hook`: the fast paths where their options allow, else Typer."""
    if argv is None and (
        args[:2] in (["archive", "pull"], ["archive", "push"])
        or any(a[:6].lower() == "oci://" for a in args)
    ):
        _terminate_as_interrupt()
    if args[:1] in (["digest"], ["check"], ["run"], ["report"]) and not os.environ.get(
        "CATALYTIC_NO_FASTPATH"
    ):
        early = None
        if args[0] == "digest":
            # before the imports below: git runs meanwhile
            early, where = early_status(args[1:]), early_where(args[1:])
            answered = _quick_digest(args[1:], early, where, console=argv is None)
            if answered is not None:
                return answered
        from catalytic_hooks.cli.fastpath import fast

        code = fast(args[0], args[1:], early)
        if code is not None:
            return code
    if args[:2] in (
        ["archive", "create"],
        ["archive", "pull"],
        ["archive", "push"],
    ) and not os.environ.get("CATALYTIC_NO_FASTPATH"):
        from catalytic_hooks.cli.fastpath import fast

        code = fast(" ".join(args[:2]), args[2:])
        if code is not None:
            if argv is None and args[1] in ("pull", "push"):
                _leave(code)
            return code
    from catalytic_hooks.cli.app import run_app

    return run_app(args)
