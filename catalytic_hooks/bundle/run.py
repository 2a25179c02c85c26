"""`catalytic run`: a catalytic operation recorded as a run bundle (DESIGN.md §5)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalytic_hooks import __version__
from catalytic_hooks.bundle.keys import Signer
from catalytic_hooks.bundle.model import OUTPUT_HASHES, PROOF, STATUS, TASK_SPEC, store_path
from catalytic_hooks.bundle.sign import sign_run_dir
from catalytic_hooks.bundle.undo import UndoReport, empty_tmp_roots, take, undo
from catalytic_hooks.core.canonical import canonical_bytes, proof_hash, sha256_hex
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import relpath_problem, under_any
from catalytic_hooks.core.policy import STATE_DIR, Policy
from catalytic_hooks.core.receipts import digest_receipt, purity_scan, restore_proof
from catalytic_hooks.fs.files import atomic_write, fsync_dir
from catalytic_hooks.git.digests import worktree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.views import tmp_residue_on_disk, worktree_view
from catalytic_hooks.provenance.environment import determinism_env, fingerprint


@dataclass
class RunOptions:
    run_id: str
    command: list[str]
    restore: bool = False
    pack: bool = False
    signer: Signer | None = None
    timeout: float | None = None
    seed: int = 0
    metrics: list[str] = field(default_factory=list)
    cwd: Path | None = None


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str
    exit_code: int | None
    proof_verdict: str
    outputs: dict[str, str]
    signed: bool
    undo: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status == "success"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _durable_state(top: Path, policy: Policy) -> dict[str, tuple[int, int, int, int]]:
    """Stat signature of every file under the durable roots (run roots and the tool's own state
    excluded), to find what the command created or changed without hashing everything twice."""
    skip = (*policy.run_roots, STATE_DIR)
    state: dict[str, tuple[int, int, int, int]] = {}
    for root in policy.durable_roots:
        base = top / root
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
            dirnames[:] = [d for d in dirnames if not under_any(f"{rel_dir}/{d}", skip)]
            for name in filenames:
                rel = f"{rel_dir}/{name}"
                if under_any(rel, skip):
                    continue
                st = os.lstat(os.path.join(dirpath, name))
                if os.path.islink(os.path.join(dirpath, name)):
                    continue  # outputs are regular files; a link is not an output
                state[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    return state


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _execute(opts: RunOptions, cwd: Path) -> tuple[str, int | None]:
    env = {**os.environ, **determinism_env(opts.seed), "CATALYTIC_RUN_ID": opts.run_id}
    try:
        proc = subprocess.Popen(opts.command, cwd=cwd, env=env, start_new_session=True)
    except OSError as exc:
        print(f"catalytic: cannot start {opts.command[0]!r}: {exc.strerror}", flush=True)
        return "failure", 127
    try:
        code = proc.wait(timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", None
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    return ("success" if code == 0 else "failure"), code


def run_operation(repo: Repo, policy: Policy, opts: RunOptions) -> RunResult:
    if relpath_problem(opts.run_id) is not None or "/" in opts.run_id \
            or opts.run_id.startswith("."):
        raise CatalyticError(ErrorCode.USAGE, f"run id {opts.run_id!r} must be one safe path "
                             "component")
    if not opts.command:
        raise CatalyticError(ErrorCode.USAGE, "no command given (catalytic run --run-id ID -- "
                             "COMMAND...)")
    top = repo.top
    run_root = policy.run_roots[0]
    run_dir = top / run_root / opts.run_id
    if run_dir.exists() or run_dir.is_symlink():
        raise CatalyticError(ErrorCode.RUN_EXISTS, f"{run_dir} exists; choose another run id",
                             run_dir=str(run_dir))
    cwd = (opts.cwd or Path.cwd()).resolve()
    if not cwd.is_relative_to(top):
        cwd = top
    for m in opts.metrics:
        if relpath_problem(m) is not None:
            raise CatalyticError(ErrorCode.USAGE, f"metrics file {m!r} must be a relative path")

    cache = HashCache.for_repo(repo)
    started = _now()
    pre_td = worktree_digest(repo, policy, cache)
    pre = digest_receipt(pre_td, policy)
    durable_before = _durable_state(top, policy)
    tmp_existed = {t for t in policy.tmp_roots if (top / t).is_dir()}
    snap = None
    if opts.restore:
        chosen = [e for e in worktree_view(repo).entries if e.path in pre_td.manifest]
        snap = take(repo, chosen)

    status, exit_code = _execute(opts, cwd)

    undo_report: UndoReport | None = None
    if snap is not None:
        undo_report = UndoReport()
        mid = worktree_digest(repo, policy, cache)
        undo(repo, snap, pre_td.manifest, mid.manifest, undo_report)
        empty_tmp_roots(top, policy.tmp_roots, tmp_existed, undo_report)
    post_td = worktree_digest(repo, policy, cache)
    post = digest_receipt(post_td, policy)
    scan = purity_scan(pre, post, tmp_residue_on_disk(top, policy.tmp_roots))
    proof_receipt = restore_proof(pre, post, scan, policy)
    verdict = proof_receipt["verdict"]
    if undo_report is not None and undo_report.refused:
        verdict = "FAIL"

    durable_after = _durable_state(top, policy)
    outputs = {p: "sha256:" + _sha256_file(top / p) for p, st in sorted(durable_after.items())
               if durable_before.get(p) != st}

    # Build the bundle in a staging directory beside its final place, then rename: a crash
    # never leaves a half-written run directory under the run root.
    stage = top / run_root / f".{opts.run_id}.staging-{uuid.uuid4().hex}"
    stage.mkdir(parents=True)
    try:
        receipts: dict[str, bytes] = {
            "PRE_DIGEST.json": canonical_bytes(pre),
            "POST_DIGEST.json": canonical_bytes(post),
            "PURITY_SCAN.json": canonical_bytes(scan),
            "RESTORE_PROOF.json": canonical_bytes(proof_receipt),
        }
        if undo_report is not None:
            receipts["RESTORE_UNDO.json"] = canonical_bytes(undo_report.to_dict())
        for name, data in receipts.items():
            atomic_write(stage / name, data)
        if opts.pack:
            for key, ref in outputs.items():
                dest = stage / store_path(ref)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(top / key, dest)
                if "sha256:" + _sha256_file(dest) != ref:
                    raise CatalyticError(ErrorCode.IO_ERROR, f"{key} changed while packing")
        proof_doc: dict[str, Any] = {
            "proof_version": "1.0.0",
            "restoration_result": {
                "verified": verdict == "PASS",
                "condition": "RESTORED_IDENTICAL" if verdict == "PASS" else "NOT_RESTORED",
            },
            "pre_digest": pre["digest"],
            "post_digest": post["digest"],
            "restore_proof_verdict": verdict,
        }
        proof_doc["proof_hash"] = proof_hash(proof_doc)
        proof_raw = canonical_bytes(proof_doc)
        task_spec = {
            "task_id": opts.run_id,
            "command": opts.command,
            "cwd": cwd.relative_to(top).as_posix(),
            "git_commit": repo.head(),
            "seed": opts.seed,
            "environment": fingerprint(top, policy.lock_files, opts.seed),
            "outputs": {"durable_paths": sorted(outputs)},
            "metrics": sorted(opts.metrics),
            "restore": opts.restore,
            "timeout_seconds": None if opts.timeout is None else int(-(-opts.timeout // 1)),
            "generator": f"catalytic-hooks {__version__}",
        }
        final_status = status if verdict == "PASS" or status != "success" else "failure"
        status_doc = {
            "status": final_status,
            "cmp01": "pass" if verdict == "PASS" else "fail",
            "run_id": opts.run_id,
            "exit_code": exit_code,
            "proof_verdict": verdict,
            "proof_sha256": "sha256:" + sha256_hex(proof_raw),
            "receipts": {n: "sha256:" + sha256_hex(d) for n, d in sorted(receipts.items())},
            "started_at": started,
            "finished_at": _now(),
        }
        atomic_write(stage / PROOF, proof_raw)
        atomic_write(stage / TASK_SPEC, canonical_bytes(task_spec))
        atomic_write(stage / OUTPUT_HASHES, canonical_bytes({
            "hashes": outputs, "run_id": opts.run_id,
            "generator": f"catalytic-hooks {__version__}",
        }))
        atomic_write(stage / STATUS, canonical_bytes(status_doc))
        if opts.signer is not None:
            sign_run_dir(stage, opts.signer)
        os.rename(stage, run_dir)
        fsync_dir(run_dir.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return RunResult(run_dir, final_status, exit_code, verdict, outputs,
                     opts.signer is not None,
                     undo_report.to_dict() if undo_report is not None else None)


__all__ = ["RunOptions", "RunResult", "run_operation"]
