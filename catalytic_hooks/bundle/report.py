"""The report behind `catalytic verify`: per-bundle validity and trust, and the chain root.

Validity comes from the verifier, trust from the one trust policy the caller hands in; the
report never decides either itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.model import DirSource, project_root_for
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.bundle.verify import Verified, verify_bundle, verify_chain
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.provenance.chronicle import record_for


def _verify_all(
    sources: list[DirSource], chain: bool, report: dict[str, Any]
) -> tuple[list[DirSource], list[Verified | CatalyticError]]:
    if not chain:
        verified: list[Verified | CatalyticError] = []
        for s in sources:
            try:
                verified.append(verify_bundle(s))
            except CatalyticError as exc:
                verified.append(exc)
        return sources, verified
    try:
        cv = verify_chain(list(sources))
    except CatalyticError as exc:
        report.update(ok=False, code=exc.code.value, message=exc.message, error_details=exc.details)
        failed = [s for s in sources if s.run_id == exc.details.get("run_id")] or sources[:1]
        return failed, [exc]
    report["chain_root"] = cv.chain_root
    return sources, list(cv.bundles)


def _row(s: DirSource, v: Verified | CatalyticError, trust: TrustPolicy) -> dict[str, Any]:
    row: dict[str, Any] = {"run_dir": s.label, "run_id": s.run_id}
    if isinstance(v, CatalyticError):
        row.update(
            valid=False,
            trusted=False,
            accepted=False,
            code=v.code.value,
            message=v.message,
            error_details=v.details,
        )
        return row
    d = trust.decide(v.validator_id)
    row.update(
        valid=True,
        trusted=d.trusted,
        accepted=d.accepted,
        trust=d.reason,
        validator_id=v.validator_id,
        bundle_root=v.bundle_root,
        proof_covered=v.proof_covered,
        code=SuccessCode.PASS if d.trusted else ErrorCode.UNTRUSTED,
    )
    return row


def verify_report(
    run_dirs: list[Path],
    *,
    chain: bool,
    project_root: Path | None,
    trust: TrustPolicy,
    record: bool = True,
    project_roots: list[Path] | None = None,
) -> dict[str, Any]:
    """`record=False`: the caller records the verification itself (an archive's run directory
    is a temporary extraction, recorded with the archive's name and hash, archive/verify.py).
    `project_roots`: one per run directory (archives: each its own), instead of `project_root`."""
    dirs = [d.resolve() for d in run_dirs]
    roots = project_roots or [project_root_for(d, project_root) for d in dirs]
    sources = [DirSource(d, r) for d, r in zip(dirs, roots, strict=True)]
    report: dict[str, Any] = {"results": [], "chain_root": None}
    sources, verified = _verify_all(sources, chain, report)
    report["results"] = [_row(s, v, trust) for s, v in zip(sources, verified, strict=False)]
    if "ok" not in report:
        rows = report["results"]
        invalid = [r for r in rows if not r["valid"]]
        refused = [r for r in rows if r["valid"] and not r["accepted"]]
        if invalid:
            report.update(ok=False, code=invalid[0]["code"])
        elif refused:
            report.update(ok=False, code=ErrorCode.UNTRUSTED)
        else:
            report.update(ok=True, code=SuccessCode.PASS)
    if dirs and record:
        record_for(
            dirs[0].parent,
            "verify",
            {
                "run_ids": [r["run_id"] for r in report["results"]],
                "ok": report["ok"],
                "code": report["code"],
            },
        )
    return report
