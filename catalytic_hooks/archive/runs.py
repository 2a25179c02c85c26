"""A run named as its directory or as its archive file, for the commands that take either
(`attest`, `verify --attestation`): the run located (an archive checked, extracted and its commit
proven), then attested, or its attestations paired with the runs and verified."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.layout import attestation_beside
from catalytic_hooks.archive.read import opened_archive
from catalytic_hooks.archive.verify import check_commit
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.bundle.attest import (
    ATTESTATION_FILE,
    envelope,
    load_envelopes,
    statement,
    verify_envelope,
)
from catalytic_hooks.bundle.keys import load_signer
from catalytic_hooks.bundle.model import project_root_for
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.provenance.chronicle import record_for

# The archive reader's limits come from the caller's repository; they are asked for only when an
# archive file is given, so a run directory never depends on that repository's policy.
LimitsOf = Callable[[], Limits]


def archived_run(
    stack: contextlib.ExitStack, path: Path, limits: LimitsOf
) -> tuple[Path, Path] | None:
    """For an archive file: its extracted run directory and (empty) project root, valid until
    `stack` closes; None for a run directory."""
    if not path.is_file():
        return None
    opened, proved = stack.enter_context(opened_archive(path, limits()))
    check_commit(opened, proved)
    return opened.run_dir, opened.project_root


def located_run(
    stack: contextlib.ExitStack, path: Path, project_root: Path | None, limits: LimitsOf
) -> tuple[Path, Path]:
    """The run directory and project root of a run directory or an archive file."""
    return archived_run(stack, path, limits) or (
        path.resolve(),
        project_root_for(path.resolve(), project_root),
    )


def write_attestations(
    run_dirs: list[Path],
    key: Path,
    output: Path | None,
    project_root: Path | None,
    limits: LimitsOf,
) -> tuple[Path, int]:
    """Envelopes of signed runs (several: a chain, one per line of `output`), written beside the
    run (an archive's beside the archive, never inside it) and recorded in the chronicle."""
    if len(run_dirs) > 1 and output is None:
        raise CatalyticError(ErrorCode.USAGE, "give --output FILE.intoto.jsonl for a chain")
    signer = load_signer(key)
    lines = []
    with contextlib.ExitStack() as stack:
        located = [located_run(stack, d, project_root, limits) for d in run_dirs]
        for rd, proot in located:
            stmt = statement(rd, proot)
            if stmt["predicate"]["validator_id"] != signer.validator_id:
                raise CatalyticError(
                    ErrorCode.USAGE,
                    f"{rd}: the attestation must be signed with the key that signed the bundle",
                )
            lines.append(canonical_bytes(envelope(stmt, signer)) + b"\n")
    first = run_dirs[0]
    # An archive is never rewritten: its attestation goes beside it.
    default = (
        first.resolve().parent / attestation_beside(located[0][0].name)
        if first.is_file()
        else first.resolve() / ATTESTATION_FILE
    )
    target = output or default
    atomic_write(target, b"".join(lines))
    record_for(
        run_dirs[0].resolve().parent,
        "attest",
        {
            "run_ids": [rd.resolve().name for rd in run_dirs],
            "keyid": signer.validator_id,
            "file": target.name,
            "envelopes": len(lines),
        },
    )
    return target, len(lines)


def verify_attestations(
    path: Path,
    run_dirs: list[Path],
    project_root: Path | None,
    trust: TrustPolicy,
    limits: LimitsOf,
) -> list[dict[str, Any]]:
    """One envelope for one run directory; a `.intoto.jsonl` file holds one per line, for the
    run directories given, in order (a chain). One row per run, or the first refusal raised."""
    docs = load_envelopes(path)
    if len(docs) != len(run_dirs):
        raise CatalyticError(
            ErrorCode.USAGE,
            f"{path} holds {len(docs)} attestation(s) for "
            f"{len(run_dirs)} run director{'y' if len(run_dirs) == 1 else 'ies'}",
        )
    infos = []
    with contextlib.ExitStack() as stack:
        for doc, run_dir in zip(docs, run_dirs, strict=True):
            rd, proot = located_run(stack, run_dir, project_root, limits)
            infos.append(
                {"run_dir": str(run_dir.resolve()), **verify_envelope(doc, rd, proot, trust)}
            )
    return infos
