"""`verify FILE`: an archive checked (read.py), its commit proven from its own objects, then its
run directory verified exactly like any other (SPECTRUM-05), with the caller's trust."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.read import Opened, file_sha256, opened_archive
from catalytic_hooks.archive.zipfmt import Limits, invalid
from catalytic_hooks.bundle.report import verify_report
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.git.pack import Imported
from catalytic_hooks.provenance.chronicle import record_for


def recorded_commit(opened: Opened) -> str | None:
    """TASK_SPEC's `git_commit`, read from the extracted bundle (the signed source of truth)."""
    try:
        spec = loads_strict((opened.run_dir / "TASK_SPEC.json").read_bytes())
    except (OSError, CatalyticError):
        return None
    commit = spec.get("git_commit") if isinstance(spec, dict) else None
    return commit if isinstance(commit, str) else None


def check_commit(opened: Opened, proved: Imported | None) -> None:
    """The commit git computed from the archive's objects is the one TASK_SPEC records."""
    recorded = recorded_commit(opened)
    got = proved.commit if proved is not None else None
    if recorded != got:
        raise invalid(
            "GIT_OBJECTS", f"the archive's objects give commit {got}, TASK_SPEC records {recorded}"
        )


def _refused(path: Path, exc: CatalyticError) -> dict[str, Any]:
    return {
        "archive": str(path),
        "run_dir": str(path),
        "run_id": None,
        "valid": False,
        "trusted": False,
        "accepted": False,
        "code": exc.code.value,
        "message": exc.message,
        "error_details": exc.details,
    }


Judge = Callable[[dict[str, Any]], None]


def _row_ok(row: dict[str, Any]) -> bool:
    """A row's final verdict: valid, accepted, and (when the caller asked for attestations,
    `verify --attested`) one of them verified."""
    attested = "attestations" not in row or any(a["valid"] for a in row["attestations"])
    return bool(row["valid"] and row["accepted"] and attested)


def _row_code(row: dict[str, Any]) -> Any:
    if row["valid"] and row["accepted"] and not _row_ok(row):
        found = row["attestations"]
        return found[0]["code"] if found else ErrorCode.ATTESTATION_MISSING.value
    return row["code"]


def verify_archives(
    paths: list[Path],
    *,
    trust: TrustPolicy,
    limits: Limits,
    record: bool = True,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """One row per archive, as `verify_report` gives for run directories; an archive refused
    by the reader is a row with ARCHIVE_INVALID. Each archive's verification is recorded in the
    chronicle of the repository the command runs in, if any (a run directory's is recorded in
    its own repository's; an archive comes from elsewhere), with the archive's name and
    SHA-256 as `source_archive`; `record=False` for a listing, which records nothing. `judge`
    completes the verdict before anything is recorded (`verify --attested`: an archive whose
    attestation fails is recorded as failed, never as verified)."""
    rows: list[dict[str, Any]] = []
    sources: list[dict[str, str | None]] = []
    for path in paths:
        try:
            with opened_archive(path, limits) as (opened, proved):
                check_commit(opened, proved)
                rep = verify_report(
                    [opened.run_dir],
                    chain=False,
                    project_root=opened.project_root,
                    trust=trust,
                    record=False,
                )
                for row in rep["results"]:
                    row.update(
                        archive=str(path),
                        run_dir=str(path),
                        source_archive=opened.source_info(),
                        commit=proved.commit if proved else None,
                        tree=proved.tree if proved else None,
                    )
                    rows.append(row)
                source: dict[str, str | None] = {"name": path.name, "sha256": opened.sha256}
        except CatalyticError as exc:
            rows.append(_refused(path, exc))
            source = {"name": path.name, "sha256": file_sha256(path)}
        sources.append(source)
    invalid_rows = [r for r in rows if not r["valid"]]
    refused = [r for r in rows if r["valid"] and not r["accepted"]]
    code = (
        invalid_rows[0]["code"]
        if invalid_rows
        else ErrorCode.UNTRUSTED
        if refused
        else SuccessCode.PASS
    )
    rep = {"results": rows, "chain_root": None, "ok": code == SuccessCode.PASS, "code": code}
    if judge is not None:
        judge(rep)
    if record:
        # One record per archive (a row per archive: a refused one is a row too).
        for row, source in zip(rows, sources, strict=True):
            record_for(
                Path.cwd(),
                "verify",
                {
                    "run_ids": [row["run_id"]] if row["run_id"] is not None else [],
                    "ok": _row_ok(row),
                    "code": _row_code(row),
                    "source_archive": source,
                },
            )
    return rep


def verify_archive_chain(
    paths: list[Path],
    *,
    trust: TrustPolicy,
    limits: Limits,
    record: bool = True,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """`verify --chain` of archives: each checked and extracted (all at once: the chain is
    verified as run directories are, in order), each commit proven from its own objects, then
    the run directories verified as one chain. A refused archive fails the chain with its row.
    Recorded, like `verify_archives`, in the chronicle of the repository the command runs in,
    with every archive's name and SHA-256 (`source_archives`)."""
    sources: list[dict[str, str | None]] = []
    with contextlib.ExitStack() as stack:
        opened_all: list[tuple[Path, Opened, Imported | None]] = []
        refused = None
        for path in paths:
            try:
                opened, proved = stack.enter_context(opened_archive(path, limits))
                check_commit(opened, proved)
            except CatalyticError as exc:
                sources.append({"name": path.name, "sha256": file_sha256(path)})
                refused = _refused(path, exc)
                break
            sources.append({"name": path.name, "sha256": opened.sha256})
            opened_all.append((path, opened, proved))
        if refused is not None:
            rep = {
                "results": [refused],
                "chain_root": None,
                "ok": False,
                "code": refused["code"],
            }
        else:
            rep = verify_report(
                [o.run_dir for _, o, _ in opened_all],
                chain=True,
                project_root=None,
                project_roots=[o.project_root for _, o, _ in opened_all],
                trust=trust,
                record=False,
            )
            by_id = {o.run_id: (p, o, pr) for p, o, pr in opened_all}
            for row in rep["results"]:
                path, opened, proved = by_id[row["run_id"]]
                row.update(
                    archive=str(path),
                    run_dir=str(path),
                    source_archive=opened.source_info(),
                    commit=proved.commit if proved else None,
                    tree=proved.tree if proved else None,
                )
    if judge is not None:
        judge(rep)
    if record:
        record_for(
            Path.cwd(),
            "verify",
            {
                "run_ids": [r["run_id"] for r in rep["results"] if r["run_id"] is not None],
                "ok": rep["ok"],
                "code": rep["code"],
                "chain_root": rep["chain_root"],
                "source_archives": sources,
            },
        )
    return rep
