"""The run command's implementation, without Typer: `catalytic run` reaches it both from the
Typer command (bundle_cmd.py) and from the start-up fast path (fastpath.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.output import handled, result, warn
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.core.policy import load_policy


@dataclass
class RunArgs:
    """The options of `catalytic run`, whichever parser read them."""

    run_id: str | None = None
    command: list[str] = field(default_factory=list)
    restore: bool = False
    pack: bool = False
    sign: Path | None = None
    timeout: float | None = None
    grace: float = 5.0
    seed: int = 0
    metrics: list[str] = field(default_factory=list)
    attest: bool = False
    json_mode: bool = False


def run_run(args: RunArgs) -> None:
    """Run the command as a catalytic operation; ends with CommandExit."""
    from catalytic_hooks.bundle.keys import load_signer
    from catalytic_hooks.run.engine import RunOptions, run_operation

    run_id, sign, attest, json_mode = args.run_id or "", args.sign, args.attest, args.json_mode
    with handled(json_mode):
        repo = open_repo(None)
        policy = load_policy(repo.top)
        if attest and sign is None:
            raise CatalyticError(ErrorCode.USAGE, "--attest needs --sign KEY")
        signer = load_signer(sign) if sign is not None else None
        res = run_operation(
            repo,
            policy,
            RunOptions(
                run_id=run_id,
                command=list(args.command),
                restore=args.restore,
                pack=args.pack,
                signer=signer,
                timeout=args.timeout,
                seed=args.seed,
                metrics=list(args.metrics),
                grace=args.grace,
            ),
        )
        details = {
            "run_dir": str(res.run_dir),
            "status": res.status,
            "exit_code": res.exit_code,
            "proof_verdict": res.proof_verdict,
            "outputs": res.outputs,
            "signed": res.signed,
            "undo": res.undo,
            "git_state_changed": res.git_state_changed,
            "survivors": res.survivors,
            "untracked": res.untracked,
        }
        if attest and sign is not None and res.ok:
            # Only a successful run verifies, and only a verified bundle is attested.
            details["attestation"] = str(write_attestations([res.run_dir], sign, None, None)[0])

        if res.untracked:
            # On stderr in --json mode too: it is a warning about the record, not output.
            shown = ", ".join(res.untracked[:10])
            more = f" and {len(res.untracked) - 10} more" if len(res.untracked) > 10 else ""
            warn(
                f"catalytic: warning: {len(res.untracked)} untracked path(s) that the recorded "
                f"commit does not hold (a replay will not see them): {shown}{more}; recorded "
                "in TASK_SPEC workspace.untracked (commit or ignore them)"
            )

        def human() -> None:
            warn(
                f"catalytic: run {run_id}: status {res.status} (command exit "
                f"{res.exit_code}), restore proof {res.proof_verdict}, "
                f"{len(res.outputs)} output(s){', signed' if res.signed else ''}"
            )
            warn(f"catalytic: bundle written to {res.run_dir}")
            if res.git_state_changed:
                warn(
                    "catalytic: the command changed git state that can hide changes from the "
                    f"POST digest (FAIL): {', '.join(res.git_state_changed)}"
                )
            if res.survivors:
                warn(
                    f"catalytic: the command left {len(res.survivors)} process(es) running "
                    "after it ended; they were killed and the run does not pass (FAIL): "
                    + ", ".join(f"{s['pid']} {s['command']}" for s in res.survivors)
                )
            if res.undo and res.undo["refused"]:
                for r in res.undo["refused"]:
                    warn(f"  undo refused for {r['path']}: {r['reason']}")

        # Interrupted by a signal: exit as a shell user expects (130 for Ctrl-C, 143 for TERM).
        result(
            json_mode,
            res.ok,
            SuccessCode.PASS if res.ok else ErrorCode.RUN_FAILED,
            {**details, "signal": res.signal},
            human,
            exit_code=128 + res.signal if res.signal else None,
        )


def write_attestations(
    run_dirs: list[Path], key: Path, output: Path | None, project_root: Path | None
) -> tuple[Path, int]:
    """`attest` and `run --attest`: archive files read with the caller's limits."""
    from catalytic_hooks.archive.runs import write_attestations as write
    from catalytic_hooks.cli.context import caller_limits

    return write(run_dirs, key, output, project_root, caller_limits)
