"""The archive store (seed step 1): `archive list` of a directory of archives, `archive show` of
one manifest without unpacking, and `archive import` of an archive into a repository, after which
it is a native run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.read import inspect, inspect_doc, opened_archive
from catalytic_hooks.archive.verify import check_commit, verify_archives
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.bundle.model import DirSource
from catalytic_hooks.bundle.trust import TrustPolicy
from catalytic_hooks.bundle.verify import verify_bundle
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import name_part
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.git.pack import add_objects
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.provenance.chronicle import record


def show(path: Path, limits: Limits) -> dict[str, Any]:
    """One archive's manifest, every check that needs no extraction passed."""
    doc, digest, size = inspect(path, limits)
    return {"archive": str(path), "sha256": digest, "size": size, "manifest": doc}


def list_store(
    directory: Path, *, trust: TrustPolicy | None, limits: Limits, verify: bool = False
) -> dict[str, Any]:
    """Every `*.zip` directly in `directory`: run id, commit, signer and size.

    By default each archive's structure and ARCHIVE.json pass the strict reader (a refused
    archive is a row with ARCHIVE_INVALID) but no entry is hashed and nothing is verified: the
    run id, commit and signer are what ARCHIVE.json claims, `sha256` and `verified` are None, so
    a store of many large archives lists in the time of their central directories. With
    `verify` (which needs `trust`) each archive is verified in full, every byte hashed, and the
    row says whether it verifies (checked, valid and trusted). No verification is cached: a
    cache keyed by size, mtime and inode is forged by whoever can write the store (an in-place
    rewrite keeps the inode and size, `utime` puts the mtime back), so a stale "verified" could
    describe other bytes."""
    if not directory.is_dir():
        raise CatalyticError(ErrorCode.USAGE, f"{directory} is not a directory")
    if verify and trust is None:
        raise CatalyticError(ErrorCode.USAGE, "verifying a store needs a trust policy")
    rows = []
    for path in sorted(
        p
        for p in directory.iterdir()
        if p.name.endswith(".zip") and p.is_file() and not p.is_symlink()
    ):
        if verify:
            assert trust is not None
            rows.append(_verified_row(path, trust, limits))
        else:
            rows.append(_listed_row(path, limits))
    return {"store": str(directory), "verified": verify, "archives": rows}


def _listed_row(path: Path, limits: Limits) -> dict[str, Any]:
    row: dict[str, Any] = {"archive": path.name, "size": path.stat().st_size}
    try:
        doc = inspect_doc(path, limits)
    except CatalyticError as exc:
        row.update(
            verified=False,
            valid=False,
            trusted=False,
            code=exc.code.value,
            run_id=None,
            commit=None,
            signer=None,
            sha256=None,
            message=exc.message,
        )
        return row
    row.update(
        verified=None,
        valid=None,
        trusted=None,
        code=None,  # nothing was judged: no code
        run_id=doc["run_id"],
        commit=doc["commit"],
        signer=doc["validator_id"],
        sha256=None,
    )
    return row


def _verified_row(path: Path, trust: TrustPolicy, limits: Limits) -> dict[str, Any]:
    rep = verify_archives([path], trust=trust, limits=limits, record=False)["results"][0]
    row: dict[str, Any] = {
        "archive": path.name,
        "size": path.stat().st_size,
        "verified": bool(rep["valid"] and rep["trusted"]),
        "valid": rep["valid"],
        "trusted": rep["trusted"],
        "code": rep["code"],
    }
    if rep["valid"]:
        row.update(
            run_id=rep["run_id"],
            commit=rep.get("commit"),
            signer=rep.get("validator_id"),
            sha256=rep["source_archive"]["sha256"],
            trust=rep.get("trust"),
        )
    else:
        row.update(run_id=None, commit=None, signer=None, sha256=None, message=rep.get("message"))
    return row


def import_archive(
    path: Path, repo: Repo, policy: Policy, *, trust: TrustPolicy, limits: Limits
) -> dict[str, Any]:
    """Verify the archive (valid and trusted), add the commit's objects to the repository and
    place the run directory under the first run root, where it is a native run."""
    root = repo.top / policy.run_roots[0]
    with opened_archive(path, limits) as (opened, proved):
        check_commit(opened, proved)
        v = verify_bundle(DirSource(opened.run_dir, opened.project_root))
        decision = trust.decide(v.validator_id)
        if not decision.accepted:
            raise CatalyticError(
                ErrorCode.UNTRUSTED,
                f"untrusted archive: {decision.reason} (use --allow-untrusted to import it anyway)",
                validator_id=v.validator_id,
            )
        dest = root / opened.run_id
        if dest.exists() or dest.is_symlink():
            raise CatalyticError(
                ErrorCode.RUN_EXISTS,
                f"{dest} exists; a run is never overwritten",
                run_id=opened.run_id,
            )
        if opened.pack is not None:
            add_objects(repo, opened.pack)
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".{name_part(opened.run_id)}.import-{os.urandom(8).hex()}"
        try:
            shutil.copytree(opened.run_dir, staging, symlinks=True)
            os.rename(staging, dest)  # fails rather than merge into a run that appeared
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        info = {
            "run_id": opened.run_id,
            "run_dir": str(dest),
            "bundle_root": v.bundle_root,
            "commit": proved.commit if proved else None,
            "source_archive": opened.source_info(),
            "trusted": decision.trusted,
        }
    record(repo.top, policy, "import", info)
    return info
