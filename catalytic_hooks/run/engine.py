"""`catalytic run`: a catalytic operation recorded as a run bundle.

Phases, in order: PRE (digest, durable stat state, snapshot for --restore) → execute → POST
(undo, digest, purity scan, restore proof) → proof → bundle (staged beside its final place, then
renamed) → chronicle.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.keys import Signer
from catalytic_hooks.bundle.model import OUTPUT_HASHES, PROOF, STATUS, TASK_SPEC, store_path
from catalytic_hooks.bundle.sign import sign_run_dir
from catalytic_hooks.core.canonical import canonical_bytes, proof_hash, sha256_hex
from catalytic_hooks.core.clock import stamp_seconds
from catalytic_hooks.core.digest import TreeDigest
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode
from catalytic_hooks.core.paths import name_part, relpath_problem
from catalytic_hooks.core.policy import STATE_DIR, PathClass, Policy
from catalytic_hooks.core.receipts import digest_receipt, purity_scan, restore_proof
from catalytic_hooks.core.roots import under_any
from catalytic_hooks.core.version import generator
from catalytic_hooks.fs.files import atomic_write, fsync_dir, sha256_path
from catalytic_hooks.git.digests import worktree_digest
from catalytic_hooks.git.hashing import HashCache
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.runstate import (
    RULE_FILE,
    IndexFlags,
    Substitutions,
    cache_state,
    drop_caches,
    filtered_paths,
    flagged_entries,
    git_state,
    pinned,
    put_back_substitutions,
    state_changes,
    substitutions,
)
from catalytic_hooks.git.snapshot import Snapshot, current_snapshot, index_snapshot
from catalytic_hooks.git.statefiles import refuse_if_pending
from catalytic_hooks.git.views import (
    ViewEntry,
    start_unrecorded_listings,
    tmp_residue_on_disk,
    worktree_view,
)
from catalytic_hooks.provenance.chronicle import record
from catalytic_hooks.provenance.environment import EnvironmentProbe, determinism_env
from catalytic_hooks.run.guard import GRACE_SECONDS, Guard, Outcome
from catalytic_hooks.run.journal import (
    TOKEN_ENV,
    RunJournal,
    begin,
    finish,
    process_start,
)
from catalytic_hooks.run.undo import Saved, UndoReport, empty_tmp_roots, take, undo


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
    grace: float = GRACE_SECONDS  # what a stopped command, or what it left running, gets


@dataclass
class _Seen:
    """What the command saw besides the commit (DESIGN §13), recorded in TASK_SPEC: its
    environment, the durable and tmp roots that existed as directories, and the untracked
    inputs a replay at the recorded commit will not have."""

    environment: dict[str, Any]
    lock_contents: dict[str, bytes]
    root_dirs: list[str]
    untracked: list[str]

    def workspace(self) -> dict[str, Any]:
        shown = self.untracked[:MAX_UNTRACKED]
        return {
            "root_dirs": self.root_dirs,
            "untracked": shown,
            "untracked_count": len(self.untracked),
        }


MAX_UNTRACKED = 1000


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str
    exit_code: int | None
    proof_verdict: str
    outputs: dict[str, str]
    signed: bool
    undo: dict[str, Any] | None
    git_state_changed: list[str] = field(default_factory=list)
    signal: int | None = None  # the signal that interrupted the run (exit 128 + it)
    survivors: list[dict[str, Any]] = field(default_factory=list)  # killed when the run ended
    untracked: list[str] = field(default_factory=list)  # inputs outside the recorded commit

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class _Pre:
    """What the PRE phase recorded."""

    started: str
    digest: TreeDigest
    receipt: dict[str, Any]
    durable: dict[str, tuple[int, int, int, int]]
    tmp_existed: set[str]
    snapshot: dict[str, Saved] | None
    flagged: IndexFlags  # index entries git status would not look at (git.runstate)
    git_state: dict[str, str]
    index: Snapshot  # the index's digest records, reused by POST while the index is unchanged
    caches: list[str]  # git.runstate.cache_state once PRE wrote its caches
    substitutions: Substitutions | None = None  # replace refs and grafts, for --restore
    # The rule files (git.runstate.rule_files) as they were, for --restore: put back first, so
    # that the undo sees what the command's own ignore rules hid.
    rules: dict[str, Saved] | None = None


@dataclass
class _Post:
    """What the POST phase found."""

    receipt: dict[str, Any]
    scan: dict[str, Any]
    proof_receipt: dict[str, Any]
    verdict: str
    undo: UndoReport | None


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
                st = os.lstat(os.path.join(dirpath, name))
                if (
                    under_any(rel, skip)
                    or not os.path.isfile(os.path.join(dirpath, name))
                    or os.path.islink(os.path.join(dirpath, name))
                ):
                    continue  # outputs are regular files; a link is not an output
                state[rel] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    return state


def _validate(repo: Repo, policy: Policy, opts: RunOptions) -> tuple[Path, Path]:
    """The run directory (must not exist) and the working directory (inside the repository)."""
    if (
        relpath_problem(opts.run_id) is not None
        or "/" in opts.run_id
        or opts.run_id.startswith(".")
    ):
        raise CatalyticError(
            ErrorCode.USAGE, f"run id {opts.run_id!r} must be one safe path component"
        )
    if not opts.command:
        raise CatalyticError(
            ErrorCode.USAGE, "no command given (catalytic run --run-id ID -- COMMAND...)"
        )
    run_dir = repo.top / policy.run_roots[0] / opts.run_id
    if run_dir.exists() or run_dir.is_symlink():
        raise CatalyticError(
            ErrorCode.RUN_EXISTS, f"{run_dir} exists; choose another run id", run_dir=str(run_dir)
        )
    if not 0 <= opts.grace <= 3600:  # NaN fails too
        raise CatalyticError(ErrorCode.USAGE, "--grace must be between 0 and 3600 seconds")
    for m in opts.metrics:
        if relpath_problem(m) is not None:
            raise CatalyticError(ErrorCode.USAGE, f"metrics file {m!r} must be a relative path")
    cwd = (opts.cwd or Path.cwd()).resolve()
    return run_dir, cwd if cwd.is_relative_to(repo.top) else repo.top


def _snapshot(repo: Repo, manifest: dict[str, str], flags: IndexFlags) -> dict[str, Saved]:
    """The PRE state of every protected path, for the undo. The index id stands for the bytes
    only where git vouches for them: flagged entries and filtered paths (LFS, eol, ...) are
    stored from disk, and an entry outside the sparse checkout is recorded as absent."""
    entries = [e for e in worktree_view(repo).entries if e.path in manifest]
    raw = flags.all | filtered_paths(repo, [e.path for e in entries])
    chosen, absent = [], set()
    for e in entries:
        if e.path in flags.sparse and not os.path.lexists(repo.top / e.path):
            absent.add(e.path)
        else:
            chosen.append(e._replace(oid=None) if e.path in raw and e.kind != "gitlink" else e)
    return take(repo, chosen, absent)


def _judges(policy: Policy) -> Callable[[str], bool]:
    """Whether a rule file (`.gitignore`, `.gitattributes`) can change how git sees a path the
    run is judged on: one inside a durable, tmp or excluded root rules only over paths that are
    not (`outputs/.gitignore` ignoring the outputs is common)."""
    classify = policy.classifier()
    free = {PathClass.DURABLE, PathClass.TMP, PathClass.EXCLUDED}
    return lambda path: classify(path) not in free


def _rules(state: dict[str, str]) -> dict[str, str]:
    """Rule file → fingerprint, from a git state."""
    return {k.removeprefix(RULE_FILE): v for k, v in state.items() if k.startswith(RULE_FILE)}


def _rule_snapshot(repo: Repo, state: dict[str, str]) -> dict[str, Saved]:
    paths = sorted(_rules(state))
    there = [p for p in paths if os.path.lexists(repo.top / p)]
    entries = [ViewEntry(p, "file", None, True) for p in there]
    return take(repo, entries, set(paths) - set(there))


def _pre_phase(repo: Repo, policy: Policy, cache: HashCache, opts: RunOptions) -> _Pre:
    started = stamp_seconds()
    status = repo.status_start(ignored=False)  # the slowest part: git runs it meanwhile
    state = git_state(repo, _judges(policy))
    flags = flagged_entries(repo)
    index = index_snapshot(repo, policy)
    pre_td = worktree_digest(repo, policy, cache, rehash=flags, base=index, status=status)
    snap = _snapshot(repo, pre_td.manifest, flags) if opts.restore else None
    return _Pre(
        started,
        pre_td,
        digest_receipt(pre_td, policy),
        _durable_state(repo.top, policy),
        {t for t in policy.tmp_roots if (repo.top / t).is_dir()},
        snap,
        flags,
        state,
        # Last, after this process wrote its caches: only the command changes them now.
        index,
        cache_state(repo),
        substitutions(repo) if opts.restore else None,
        _rule_snapshot(repo, state) if opts.restore else None,
    )


def _post_phase(
    repo: Repo,
    policy: Policy,
    cache: HashCache,
    pre: _Pre,
    state_after: dict[str, str],
    caches_after: list[str],
    survivors: tuple[dict[str, Any], ...] = (),
) -> _Post:
    """`state_after`, `caches_after`: the git state and cache identity right after the command
    (and everything it started) ended, before anything here touched them; `survivors`: what the
    command left running, killed by the guard (run.guard)."""
    status = repo.status_start(ignored=False) if pre.snapshot is None else None
    rehash = pre.flagged.union(flagged_entries(repo))
    if caches_after != pre.caches:
        # Written by the command (say a nested `catalytic digest`, or a forger): never trusted,
        # by this run (an empty cache, the PRE snapshot held in memory) or by a later one.
        drop_caches(repo)
        cache = HashCache(None)
    base = current_snapshot(repo, policy, pre.index)
    if base is not pre.index or state_after != pre.git_state:
        # The command rewrote the index, and with it the stat data `git status` compares a file
        # against to call it unchanged (an entry can keep its blob id and be given a modified
        # file's stat data), or changed the rules git compares a file with (attributes that
        # convert a rewritten file back into its blob, config). The run fails either way; so
        # that the undo sees what those hid, every entry is read from disk, none is taken from
        # git status.
        rehash = rehash.union(IndexFlags(assumed=frozenset(p for p, _ in base.records.items())))
    undo_report: UndoReport | None = None
    if pre.snapshot is not None:
        undo_report = UndoReport()
        if pre.rules is not None:
            # The rules first: with the command's ignore rules in place, what they hide (a
            # file added beside a self-ignoring `.gitignore`) would be left where it is.
            undo(repo, pre.rules, _rules(pre.git_state), _rules(state_after), undo_report)
        mid = worktree_digest(repo, policy, cache, rehash=rehash, base=base)
        undo(repo, pre.snapshot, pre.digest.manifest, mid.manifest, undo_report)
        empty_tmp_roots(repo.top, policy.tmp_roots, pre.tmp_existed, undo_report)
        if pre.substitutions is not None:
            _put_back_substitutions(repo, pre.substitutions, undo_report)
        base = current_snapshot(repo, policy, base)
    post = digest_receipt(
        worktree_digest(repo, policy, cache, rehash=rehash, base=base, status=status), policy
    )
    scan = purity_scan(
        pre.receipt,
        post,
        tmp_residue_on_disk(repo.top, policy.tmp_roots),
        state_changes(pre.git_state, state_after),
        list(survivors),
    )
    proof_receipt = restore_proof(pre.receipt, post, scan, policy)
    verdict = proof_receipt["verdict"]
    if undo_report is not None and undo_report.refused:
        verdict = VerdictCode.FAIL
    return _Post(post, scan, proof_receipt, verdict, undo_report)


def _put_back_substitutions(repo: Repo, before: Substitutions, report: UndoReport) -> None:
    """Replace refs and grafts the command made are undone too: the run already fails (they are
    git state), and left in place they would make the user's own `git show` or `git checkout --
    PATH` hand out bytes of the command's choosing for a protected file."""
    try:
        report.substitutions = put_back_substitutions(repo, before)
    except (OSError, CatalyticError) as exc:
        report.refused.append({"path": "refs/replace/, info/grafts", "reason": str(exc)})


def _proof_doc(pre: _Pre, post: _Post) -> bytes:
    doc: dict[str, Any] = {
        "proof_version": "1.0.0",
        "restoration_result": {
            "verified": post.verdict == SuccessCode.PASS,
            "condition": "RESTORED_IDENTICAL"
            if post.verdict == SuccessCode.PASS
            else "NOT_RESTORED",
        },
        "pre_digest": pre.receipt["digest"],
        "post_digest": post.receipt["digest"],
        "restore_proof_verdict": post.verdict,
    }
    doc["proof_hash"] = proof_hash(doc)
    return canonical_bytes(doc)


def _start_seen(
    repo: Repo, policy: Policy, opts: RunOptions, cwd: Path, env: dict[str, str]
) -> tuple[EnvironmentProbe, list[Any]]:
    """Started before the PRE phase, which hides their cost: the interpreter query, the
    system probe, and git's listings of what the recorded commit will not hold."""
    probe = EnvironmentProbe(repo.top, opts.command, env, cwd, policy.env_python)
    # Empty untracked directories are left out: they hold no input, and the durable and tmp
    # roots among them are recorded as root_dirs.
    return probe, list(start_unrecorded_listings(repo))


def _finish_seen(
    repo: Repo, policy: Policy, opts: RunOptions, probe: EnvironmentProbe, procs: list[Any]
) -> _Seen:
    env = probe.finish(policy.lock_files, opts.seed)
    found: set[str] = set()
    for proc in procs:
        found.update(os.fsdecode(p) for p in repo.finish(proc).split(b"\0") if p)
    own = (*policy.run_roots, STATE_DIR, *policy.exclusions)
    untracked = sorted(p for p in found if not under_any(p.rstrip("/"), own))
    roots = sorted(
        r
        for r in {*policy.durable_roots, *policy.tmp_roots}
        if r != "." and (repo.top / r).is_dir() and not (repo.top / r).is_symlink()
    )
    return _Seen(env, probe.lock_contents, roots, untracked)


def _task_spec(
    repo: Repo, opts: RunOptions, cwd: Path, outputs: dict[str, str], seen: _Seen
) -> dict[str, Any]:
    return {
        "task_id": opts.run_id,
        "command": opts.command,
        "cwd": cwd.relative_to(repo.top).as_posix(),
        "git_commit": repo.head(),
        "seed": opts.seed,
        "environment": seen.environment,
        "workspace": seen.workspace(),
        "outputs": {"durable_paths": sorted(outputs)},
        "metrics": sorted(opts.metrics),
        "restore": opts.restore,
        "timeout_seconds": None if opts.timeout is None else int(-(-opts.timeout // 1)),
        "generator": generator(),
    }


def _receipts(pre: _Pre, post: _Post) -> dict[str, bytes]:
    receipts = {
        "PRE_DIGEST.json": canonical_bytes(pre.receipt),
        "POST_DIGEST.json": canonical_bytes(post.receipt),
        "PURITY_SCAN.json": canonical_bytes(post.scan),
        "RESTORE_PROOF.json": canonical_bytes(post.proof_receipt),
    }
    if post.undo is not None:
        receipts["RESTORE_UNDO.json"] = canonical_bytes(post.undo.to_dict())
    return receipts


def _status_doc(
    opts: RunOptions,
    pre: _Pre,
    post: _Post,
    status: str,
    exit_code: int | None,
    proof_raw: bytes,
    receipts: dict[str, bytes],
) -> dict[str, Any]:
    return {
        "status": status if post.verdict == SuccessCode.PASS or status != "success" else "failure",
        "cmp01": "pass" if post.verdict == SuccessCode.PASS else "fail",
        "run_id": opts.run_id,
        "exit_code": exit_code,
        "proof_verdict": post.verdict,
        "proof_sha256": "sha256:" + sha256_hex(proof_raw),
        "receipts": {n: "sha256:" + sha256_hex(d) for n, d in sorted(receipts.items())},
        "started_at": pre.started,
        "finished_at": stamp_seconds(),
    }


def _pack(top: Path, stage: Path, outputs: dict[str, str]) -> None:
    for key, ref in outputs.items():
        dest = stage / store_path(ref)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(top / key, dest, follow_symlinks=False)
        if "sha256:" + sha256_path(dest) != ref:
            raise CatalyticError(ErrorCode.IO_ERROR, f"{key} changed while packing")


def _write_bundle(stage: Path, files: dict[str, bytes], signer: Signer | None) -> None:
    """The signed artifacts last: STATUS (which covers PROOF and the receipts), then signing."""
    for name, data in files.items():
        atomic_write(stage / name, data)
    if signer is not None:
        sign_run_dir(stage, signer)


def _pack_locks(stage: Path, contents: dict[str, bytes]) -> None:
    """Declared lock files travel in the content store, addressed by the SHA-256 that TASK_SPEC
    records for them: the bundle root covers TASK_SPEC, so the signature covers their bytes,
    and verification of bundles (FORMATS §4) is unchanged."""
    for data in contents.values():
        dest = stage / store_path("sha256:" + sha256_hex(data))
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, data)


def _command_env(opts: RunOptions) -> dict[str, str]:
    return {**os.environ, **determinism_env(opts.seed), "CATALYTIC_RUN_ID": opts.run_id}


def _started(journal: RunJournal | None, pid: int) -> None:
    """Record the command's process group, so that recovery can stop what is left of it."""
    if journal is not None:
        journal.data["command_pgid"] = pid
        journal.data["command_start"] = process_start(pid)
        journal.write()


def run_operation(repo: Repo, policy: Policy, opts: RunOptions) -> RunResult:
    refuse_if_pending(repo.git_dir, "catalytic run")
    run_dir, cwd = _validate(repo, policy, opts)
    repo = pinned(repo)
    cache = HashCache.for_repo(repo)
    command_env = _command_env(opts)
    probe, listings = _start_seen(repo, policy, opts, cwd, command_env)
    try:
        pre = _pre_phase(repo, policy, cache, opts)
        # Read before the command starts: what it installs is not what it ran in.
        seen = _finish_seen(repo, policy, opts, probe, listings)
    finally:
        probe.close()
        for proc in listings:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    with Guard(opts.grace) as guard:
        journal = None
        if pre.snapshot is not None:
            journal = begin(
                repo, policy, opts.run_id, pre.snapshot, pre.digest.manifest, pre.tmp_existed
            )
        env = dict(command_env)
        if journal is not None:
            env[TOKEN_ENV] = journal.token
        outcome = guard.run(
            opts.command, cwd, env, opts.timeout, lambda pid: _started(journal, pid)
        )
        post = _post_phase(
            repo,
            policy,
            cache,
            pre,
            git_state(repo, _judges(policy)),
            cache_state(repo),
            outcome.survivors,
        )
        refused = post.undo is not None and bool(post.undo.refused)
        try:
            res = _bundle(repo, policy, opts, run_dir, cwd, pre, post, outcome, seen)
        except (OSError, CatalyticError) as exc:
            why = exc.message if isinstance(exc, CatalyticError) else str(exc)
            if refused and post.undo is not None:
                raise _incomplete(
                    post.undo, f"; the bundle could not be written either: {why}"
                ) from exc
            raise CatalyticError(
                ErrorCode.IO_ERROR,
                f"the undo is complete, but the bundle "
                f"could not be written: {why}; run `catalytic recover` to clear "
                "the pending run"
                if journal
                else f"cannot write the bundle: {why}",
            ) from exc
        if refused and post.undo is not None:
            raise _incomplete(post.undo)
        if journal is not None:
            finish(repo, journal)
    # What the report shows of a run comes from the chronicle alone (a bundle may since have
    # moved to quarantine or an archive): the commit, command, signer and outputs, capped so a
    # run with 100,000 outputs does not make a megabyte line.
    shown = dict(sorted(res.outputs.items())[:RECORDED_OUTPUTS])
    record(
        repo.top,
        policy,
        "run",
        {
            "run_id": opts.run_id,
            "status": res.status,
            "proof_verdict": res.proof_verdict,
            "signed": res.signed,
            "commit": repo.head(),
            "command": opts.command,
            "signer": opts.signer.validator_id if opts.signer else None,
            "metrics": sorted(opts.metrics),
            "outputs": shown,
            "output_count": len(res.outputs),
        },
    )
    return res


RECORDED_OUTPUTS = 200  # outputs named in the chronicle's run record (all are counted)


def _incomplete(report: UndoReport, more: str = "") -> CatalyticError:
    paths = [r["path"] for r in report.refused]
    why = "; ".join(f"{r['path']}: {r['reason']}" for r in report.refused[:5])
    return CatalyticError(
        ErrorCode.UNDO_INCOMPLETE,
        f"the undo could not restore {len(paths)} path(s), still changed: {', '.join(paths)} "
        f"({why}){more}; fix the cause (for example free disk space) and run "
        "`catalytic recover`",
        paths=paths,
    )


def _bundle(
    repo: Repo,
    policy: Policy,
    opts: RunOptions,
    run_dir: Path,
    cwd: Path,
    pre: _Pre,
    post: _Post,
    outcome: Outcome,
    seen: _Seen,
) -> RunResult:
    after = _durable_state(repo.top, policy)
    outputs = {
        p: "sha256:" + sha256_path(repo.top / p)
        for p, st in sorted(after.items())
        if pre.durable.get(p) != st
    }
    # Built in a staging directory beside its final place, then renamed: a crash never leaves
    # a half-written run directory under the run root.
    stage = run_dir.parent / f".{name_part(opts.run_id)}.staging-{uuid.uuid4().hex}"
    stage.mkdir(parents=True)
    try:
        receipts = _receipts(pre, post)
        if opts.pack:
            _pack(repo.top, stage, outputs)
        _pack_locks(stage, seen.lock_contents)
        proof_raw = _proof_doc(pre, post)
        status_doc = _status_doc(
            opts, pre, post, outcome.status, outcome.exit_code, proof_raw, receipts
        )
        _write_bundle(
            stage,
            {
                **receipts,
                PROOF: proof_raw,
                TASK_SPEC: canonical_bytes(_task_spec(repo, opts, cwd, outputs, seen)),
                OUTPUT_HASHES: canonical_bytes(
                    {"hashes": outputs, "run_id": opts.run_id, "generator": generator()}
                ),
                STATUS: canonical_bytes(status_doc),
            },
            opts.signer,
        )
        os.rename(stage, run_dir)
        fsync_dir(run_dir.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return RunResult(
        run_dir,
        status_doc["status"],
        outcome.exit_code,
        post.verdict,
        outputs,
        opts.signer is not None,
        post.undo.to_dict() if post.undo else None,
        post.scan.get("git_state_changed", []),
        outcome.signal,
        list(outcome.survivors),
        seen.untracked,
    )


__all__ = ["RunOptions", "RunResult", "run_operation"]
