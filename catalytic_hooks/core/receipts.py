"""Seed-compatible receipts (docs/FORMATS.md §2): PRE/POST digest, purity scan, restore proof,
error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from catalytic_hooks.core.canonical import loads_strict
from catalytic_hooks.core.digest import TreeDigest, exclusions_spec_hash
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.core.records import Overlay
from catalytic_hooks.core.records import diff as overlay_diff
from catalytic_hooks.core.version import module_version, module_version_hash


def digest_receipt(td: TreeDigest, policy: Policy) -> dict[str, Any]:
    return {
        "digest": td.digest,
        "file_count": td.file_count,
        "file_manifest": td.records,
        "exclusions_spec_hash": exclusions_spec_hash(policy),
        "module_version": module_version(),
        "module_version_hash": module_version_hash(),
    }


def diff_manifests(pre: Mapping[str, str], post: Mapping[str, str]) -> dict[str, list[str]]:
    if isinstance(pre, Overlay) and isinstance(post, Overlay):
        return overlay_diff(pre, post)
    return {
        "added": sorted(set(post) - set(pre)),
        "removed": sorted(set(pre) - set(post)),
        "changed": sorted(p for p in set(pre) & set(post) if pre[p] != post[p]),
    }


def purity_scan(
    pre: dict[str, Any],
    post: dict[str, Any],
    tmp_residue: list[str],
    git_state_changed: list[str] | None = None,
    survivors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`git_state_changed`: the git state a run's command changed (git.runstate), which could hide
    mutations from the POST digest; `survivors`: processes the command started that were still
    running when it ended (killed: they could have changed the tree after POST); any of either
    fails the scan."""
    pm, qm = pre["file_manifest"], post["file_manifest"]
    if isinstance(pm, Overlay) and isinstance(qm, Overlay) and pre["digest"] == post["digest"]:
        # Computed here, not read from a file: equal digests are equal records, no diff needed.
        diff: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    else:
        diff = diff_manifests(pm, qm)
    violations = sorted(set(diff["added"]) | set(diff["removed"]) | set(diff["changed"]))
    failed = (
        bool(tmp_residue)
        or pre["digest"] != post["digest"]
        or bool(git_state_changed)
        or bool(survivors)
    )
    scan: dict[str, Any] = {
        "verdict": VerdictCode.FAIL if failed else SuccessCode.PASS,
        "violations": violations,
        "tmp_residue": sorted(tmp_residue),
        "scan_module_version_hash": module_version_hash(),
        "module_version": module_version(),
    }
    if git_state_changed:
        scan["git_state_changed"] = sorted(git_state_changed)
    if survivors:
        scan["survivors"] = sorted(survivors, key=lambda d: d["pid"])
    return scan


def restore_proof(
    pre: dict[str, Any], post: dict[str, Any], purity: dict[str, Any], policy: Policy
) -> dict[str, Any]:
    if pre["exclusions_spec_hash"] != post["exclusions_spec_hash"]:
        raise CatalyticError(
            ErrorCode.RESTORE_PROOF_GENERATION_FAILED,
            "PRE and POST digests were computed under different exclusions "
            "(exclusions_spec_hash differs); they cannot be compared",
            pre=pre["exclusions_spec_hash"],
            post=post["exclusions_spec_hash"],
        )
    passed = pre["digest"] == post["digest"] and purity["verdict"] == SuccessCode.PASS
    proof: dict[str, Any] = {
        "verdict": SuccessCode.PASS if passed else VerdictCode.FAIL,
        "pre_digest": pre["digest"],
        "post_digest": post["digest"],
        "tmp_roots": sorted(policy.tmp_roots),
        "durable_roots": sorted(policy.effective_durable),
        "exclusions": sorted(policy.exclusions),
        "exclusions_spec_hash": pre["exclusions_spec_hash"],
        "proof_module_version_hash": module_version_hash(),
        "module_version": module_version(),
    }
    if not passed:
        proof["diff_summary"] = diff_manifests(pre["file_manifest"], post["file_manifest"])
    return proof


def error_receipt(
    code: ErrorCode, operation: str, exc: BaseException, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "verdict": "ERROR",
        "error_code": code.value,
        "operation": operation,
        "exception_type": type(exc).__name__,
        "exception_message": str(exc),
        "module_version": module_version(),
        "module_version_hash": module_version_hash(),
        "config_snapshot": config,
    }


def _require(doc: Any, fields: dict[str, type], what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: not a JSON object")
    for name, typ in fields.items():
        if (
            name not in doc
            or not isinstance(doc[name], typ)
            or (isinstance(doc[name], bool) and typ is not bool)
        ):
            raise CatalyticError(
                ErrorCode.JSON_INVALID,
                f"{what}: field '{name}' missing or not {typ.__name__}",
                field=name,
            )
    return doc


def load_digest_receipt(data: bytes, what: str) -> dict[str, Any]:
    """A PRE or POST digest receipt from its bytes (the caller reads them: a receipt may come
    from a bundle, so the CLI uses the safe reader, which core cannot import)."""
    doc = _require(
        loads_strict(data, what=what),
        {"digest": str, "file_manifest": dict, "exclusions_spec_hash": str},
        what,
    )
    if not all(isinstance(v, str) for v in doc["file_manifest"].values()):
        raise CatalyticError(
            ErrorCode.JSON_INVALID, f"{what}: file_manifest values must be strings"
        )
    return doc


def load_purity_receipt(data: bytes, what: str) -> dict[str, Any]:
    return _require(loads_strict(data, what=what), {"verdict": str}, what)
