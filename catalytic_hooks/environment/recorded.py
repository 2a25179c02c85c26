"""A run's recorded environment beside the one here: `compare_with_run` (`catalytic env
--compare`: what a command run here would record, and how it differs from what a run recorded)
and `verified_environment` (the TASK_SPEC environment of a verified bundle, for `env rebuild`
and `env export`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

if TYPE_CHECKING:
    from catalytic_hooks.archive.zipfmt import Limits
    from catalytic_hooks.core.policy import Policy


def current_environment(root: Path, policy: Policy) -> dict[str, Any]:
    """What a command run here would record (`catalytic env`)."""
    from catalytic_hooks.provenance.environment import fingerprint

    return fingerprint(root, policy.lock_files, 0, env_python=policy.env_python)


def compare_with_run(
    root: Path, policy: Policy, run: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the environment here, its differences from the one `run` recorded). The run is not
    verified: its TASK_SPEC is read like any hostile file, lock files only at safe paths, and a
    path it names as its command is never executed to ask it anything."""
    from catalytic_hooks.provenance.environment import (
        compare,
        fingerprint,
        recorded_lock_files,
        recorded_spec,
    )

    spec = recorded_spec(run)
    recorded = spec.get("environment") if isinstance(spec, dict) else None
    command = spec.get("command") if isinstance(spec, dict) else None
    if not (
        isinstance(command, list)
        and command
        and isinstance(command[0], str)
        and "/" not in command[0]
    ):
        command = None
    locks = recorded_lock_files(recorded) if isinstance(recorded, dict) else policy.lock_files
    fp = fingerprint(root, locks, 0, env_python=policy.env_python, command=command)
    return fp, compare(recorded, fp)


def verified_environment(
    run: Path, trust_file: Path | None, allow_untrusted: bool, need_trust: bool, limits: Limits
) -> tuple[Any, str, bool, Any]:
    """(TASK_SPEC environment, run id, trusted, recorded commit) of a verified bundle: a run
    directory, or an archive file (checked within `limits`, extracted aside, its commit
    proven). Rebuilding acts on what the bundle says, so it needs a trusted signer (unless
    `allow_untrusted`), as replay does."""
    from catalytic_hooks.bundle.model import DirSource, project_root_for
    from catalytic_hooks.bundle.trust import caller_anchor, trust_policy
    from catalytic_hooks.bundle.verify import verify_bundle

    if run.is_file():
        from catalytic_hooks.archive.read import opened_archive
        from catalytic_hooks.archive.verify import check_commit

        with opened_archive(run, limits) as (opened, proved):
            check_commit(opened, proved)
            v = verify_bundle(DirSource(opened.run_dir, opened.project_root))
            name = opened.run_id
    else:
        rd = run.resolve()
        if not rd.is_dir():
            raise CatalyticError(
                ErrorCode.USAGE, f"{run} is neither a run directory nor an archive file"
            )
        v = verify_bundle(DirSource(rd, project_root_for(rd, None)))
        name = rd.name
    decision = trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted).decide(
        v.validator_id
    )
    if need_trust and not decision.accepted:
        raise CatalyticError(
            ErrorCode.UNTRUSTED,
            f"{run}: untrusted bundle "
            f"({decision.reason}); give --allow-untrusted to act on it anyway",
        )
    spec = v.task_spec if isinstance(v.task_spec, dict) else {}
    return spec.get("environment"), name, decision.accepted, spec.get("git_commit")
