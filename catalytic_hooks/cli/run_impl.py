"""The run command's implementation, without Typer: `catalytic run` reaches it both from the
Typer command (bundle_cmd.py) and from the start-up fast path (fastpath.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.output import handled, result, warn
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
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
        res = run_operation(repo, policy, RunOptions(
            run_id=run_id, command=list(args.command), restore=args.restore, pack=args.pack,
            signer=signer, timeout=args.timeout, seed=args.seed, metrics=list(args.metrics),
            grace=args.grace,
        ))
        details = {"run_dir": str(res.run_dir), "status": res.status, "exit_code": res.exit_code,
                   "proof_verdict": res.proof_verdict, "outputs": res.outputs,
                   "signed": res.signed, "undo": res.undo,
                   "git_state_changed": res.git_state_changed, "survivors": res.survivors}
        if attest and sign is not None and res.ok:
            # Only a successful run verifies, and only a verified bundle is attested.
            details["attestation"] = str(write_attestations([res.run_dir], sign, None, None)[0])

        def human() -> None:
            warn(f"catalytic: run {run_id}: status {res.status} (command exit "
                 f"{res.exit_code}), restore proof {res.proof_verdict}, "
                 f"{len(res.outputs)} output(s){', signed' if res.signed else ''}")
            warn(f"catalytic: bundle written to {res.run_dir}")
            if res.git_state_changed:
                warn("catalytic: the command changed git state that can hide changes from the "
                     f"POST digest (FAIL): {', '.join(res.git_state_changed)}")
            if res.survivors:
                warn(f"catalytic: the command left {len(res.survivors)} process(es) running "
                     "after it ended; they were killed and the run does not pass (FAIL): "
                     + ", ".join(f"{s['pid']} {s['command']}" for s in res.survivors))
            if res.undo and res.undo["refused"]:
                for r in res.undo["refused"]:
                    warn(f"  undo refused for {r['path']}: {r['reason']}")

        # Interrupted by a signal: exit as a shell user expects (130 for Ctrl-C, 143 for TERM).
        result(json_mode, res.ok, "PASS" if res.ok else "RUN_FAILED",
               {**details, "signal": res.signal}, human,
               exit_code=128 + res.signal if res.signal else None)


def archived_run(stack: contextlib.ExitStack, path: Path) -> tuple[Path, Path] | None:
    """For an archive file: its extracted run directory and (empty) project root, valid until
    `stack` closes; None for a run directory."""
    if not path.is_file():
        return None
    from catalytic_hooks.archive.read import opened_archive
    from catalytic_hooks.archive.verify import check_commit
    from catalytic_hooks.cli.archive_cmd import caller_limits

    opened, proved = stack.enter_context(opened_archive(path, caller_limits()))
    check_commit(opened, proved)
    return opened.run_dir, opened.project_root


def write_attestations(run_dirs: list[Path], key: Path, output: Path | None,
                       project_root: Path | None) -> tuple[Path, int]:
    from catalytic_hooks.bundle.attest import ATTESTATION_FILE, envelope, statement
    from catalytic_hooks.bundle.keys import load_signer
    from catalytic_hooks.bundle.model import project_root_for
    from catalytic_hooks.core.canonical import canonical_bytes
    from catalytic_hooks.fs.files import atomic_write

    if len(run_dirs) > 1 and output is None:
        raise CatalyticError(ErrorCode.USAGE, "give --output FILE.intoto.jsonl for a chain")
    signer = load_signer(key)
    lines = []
    with contextlib.ExitStack() as stack:
        located = [archived_run(stack, d) or (d.resolve(), project_root_for(d.resolve(),
                                                                            project_root))
                   for d in run_dirs]
        for rd, proot in located:
            stmt = statement(rd, proot)
            if stmt["predicate"]["validator_id"] != signer.validator_id:
                raise CatalyticError(ErrorCode.USAGE, f"{rd}: the attestation must be signed "
                                     "with the key that signed the bundle")
            lines.append(canonical_bytes(envelope(stmt, signer)) + b"\n")
    first = run_dirs[0]
    # An archive is never rewritten: its attestation goes beside it.
    default = first.resolve().parent / f"{located[0][0].name}.intoto.json" if first.is_file() \
        else first.resolve() / ATTESTATION_FILE
    target = output or default
    atomic_write(target, b"".join(lines))
    from catalytic_hooks.provenance.chronicle import record_for

    record_for(run_dirs[0].resolve().parent, "attest", {
        "run_ids": [rd.resolve().name for rd in run_dirs], "keyid": signer.validator_id,
        "file": target.name, "envelopes": len(lines)})
    return target, len(lines)
