"""Replay: re-execute an archived run in a clean worktree and show whether it reproduces:
`exact`, `within-tolerance`, `drift-verified`, `nondeterministic` or `failed`.

Steps: 1 verify (trusted) → 2 clean worktree at the recorded commit → 3 compare the environment →
4 run the recorded command → 5 compare outputs and metrics (replay once more on drift) → 6 write
reports → 7 chronicle."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from catalytic_hooks.bundle.model import DirSource
from catalytic_hooks.bundle.trust import TrustPolicy, load_trust, trust_policy
from catalytic_hooks.bundle.verify import verify_bundle
from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.clock import stamp_compact, stamp_seconds
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import Verdict
from catalytic_hooks.core.paths import has_git_component, name_part, relpath_problem
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.environment.build import RebuildOptions
from catalytic_hooks.fs.dirfd import open_beneath
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.fs.untrusted import read_beneath, read_capped, sha256_beneath
from catalytic_hooks.git.repo import Repo, clean_env
from catalytic_hooks.git.worktree import add_worktree, neutral, remove_worktree
from catalytic_hooks.provenance.chronicle import record
from catalytic_hooks.provenance.environment import determinism_env
from catalytic_hooks.replay.envstep import EnvStep, likely_causes, prepare_worktree
from catalytic_hooks.replay.report import SEED_FIELDS, ReplayReport
from catalytic_hooks.report.replay_html import render_replay_html


def _edited_output(exc: CatalyticError) -> bool:
    """A project output that no longer matches: someone edited it after the run. The bundle's
    own bytes are fine, so this is reported, never quarantined."""
    return exc.code is ErrorCode.HASH_MISMATCH and exc.details.get("source") == "project"


@dataclass
class ReplayOptions:
    worktree: Path | None = None
    strict_env: bool = False
    timeout: float | None = None
    keep: bool = False
    quarantine: bool = True
    allow_untrusted: bool = False
    trust: TrustPolicy | None = None  # default: the replaying repository's trust anchor
    pass_env: list[str] = field(default_factory=list)  # `--env NAME`: more variables to pass
    validation: str | None = None  # the `validate` this replay belongs to (chronicle, reports)
    # A replay of an archive (replay/archived.py): outputs come from the extracted content store
    # (`project_root`), reports and the chronicle belong to the caller (`home`: its top and
    # policy, or None for no chronicle and reports under `reports_root`), and the report names
    # its source archive.
    project_root: Path | None = None
    home: tuple[Path, Policy] | None = None
    reports_root: Path | None = None
    source_archive: dict[str, Any] | None = None
    restoration_id: str | None = None
    rebuild: RebuildOptions | None = None  # `--rebuild-env`: where the environment comes from


# What a replayed command sees of the caller's environment: enough to find programs and run in
# a locale, never the caller's secrets (tokens, keys, cloud credentials). `--env NAME` adds more.
ENV_ALLOW = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR")


def replay_env(extra: list[str]) -> dict[str, str]:
    keep = set(ENV_ALLOW) | set(extra)
    return {k: v for k, v in clean_env().items() if k in keep or k.startswith("LC_")}


def spec_path(value: Any, what: str) -> str:
    """A TASK_SPEC path (cwd, metrics) obeys the path rules: it stays inside the worktree."""
    if value == ".":
        return "."
    if not isinstance(value, str) or relpath_problem(value) is not None or has_git_component(value):
        raise CatalyticError(
            ErrorCode.REPLAY_FAILED,
            f"TASK_SPEC {what} {value!r} is not a safe relative path",
            reason="UNSAFE_PATH",
        )
    return value


@dataclass
class Attempt:
    ok: bool
    reason: str | None
    hashes: dict[str, str | None] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """Nested metrics objects as `a.b.c` → leaf value."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: doc}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def drift(a: int | float, b: int | float, tol: float) -> tuple[int | float | None, bool]:
    """|a - b| as the report records it, and whether it is within `tol`.

    Metrics come from strict JSON (never NaN or an infinity), which holds any finite float and
    any integer of up to 4,300 digits: a metric may be beyond every float (`float(10**400)`
    raises) and two floats may differ by more than any float (1.7e308 and -1.7e308). Such a
    difference is taken and judged exactly, as fractions, and recorded as a float where one
    holds it, else as the integer nearest to it (exact but for a huge integer against a float
    with a fractional part: off by less than 1 in 1e308). One with more digits than Python
    writes as JSON text (two 4,300-digit integers of opposite signs) has no delta and is not
    within the tolerance, as a value that is not a number would be."""
    if isinstance(a, float) and isinstance(b, float):
        d = abs(a - b)
        if math.isfinite(d):
            return d, d <= tol
    # An integer is compared exactly: as floats, 2**53 + 1 and 2**53 (or 10**300 + 1 and
    # 10**300) are equal, and a changed count would read as within tolerance.
    exact = abs(Fraction(a) - Fraction(b))
    ok = exact <= tol
    try:
        return float(exact), ok
    except OverflowError:
        pass
    whole = round(exact)
    try:
        str(whole)  # what canonical JSON does with it; Python caps an int's digits (4,300)
    except ValueError:
        return None, False
    return whole, ok


def compare_metrics(
    archived: dict[str, Any], replayed: dict[str, Any], tol: float
) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(archived) | set(replayed)):
        a, b = archived.get(key), replayed.get(key)
        delta: int | float | None
        if isinstance(a, int | float) and isinstance(b, int | float) and _number(a) and _number(b):
            delta, ok = drift(a, b, tol)
        else:
            delta, ok = None, a == b
        rows.append(
            {"key": key, "archived": a, "replayed": b, "delta": delta, "within_tolerance": ok}
        )
    return rows


# What the replayed command left in its worktree is read like a bundle: never through a link
# (to a secret whose hash the report would show), a FIFO or a device, and metrics size-capped.
def _sha(wt: Path, key: str) -> str | None:
    try:
        return "sha256:" + sha256_beneath(wt, key)
    except OSError:
        return None


def _read(wt: Path, rel: str) -> bytes | None:
    try:
        return read_beneath(wt, rel)
    except OSError:
        return None


def _load_json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return loads_strict(data)
    except CatalyticError:
        return None


class Replayer:
    def __init__(self, repo: Repo, policy: Policy, run_dir: Path, opts: ReplayOptions):
        self.repo = repo
        self.policy = policy
        self.run_dir = run_dir.resolve()
        self.opts = opts
        self.git = neutral(repo)

    # -- 1. verification and quarantine -------------------------------------------------------
    def verify(self) -> Any:
        src = DirSource(self.run_dir, self.opts.project_root or self.repo.top)
        try:
            v = verify_bundle(src)
        except CatalyticError as exc:
            if _edited_output(exc):
                raise CatalyticError(
                    ErrorCode.REPLAY_FAILED,
                    f"output {exc.details['path']} "
                    "was changed after the run (it no longer matches the "
                    "signed hash); the bundle itself is intact and stays "
                    "where it is",
                    reason="OUTPUT_EDITED",
                    verification=exc.to_dict(),
                ) from exc
            if exc.code.corrupts_bundle and self.opts.quarantine:
                try:
                    where = self.quarantine(exc)
                except (OSError, CatalyticError) as err:  # a read-only parent, a full disk
                    why = (
                        err.message if isinstance(err, CatalyticError) else err.strerror or str(err)
                    )
                    raise CatalyticError(
                        ErrorCode.REPLAY_FAILED,
                        f"bundle is corrupt ({exc.code.value}: {exc.message}); quarantining "
                        f"it failed ({why})",
                        reason=exc.code.value,
                        quarantine_error=why,
                        verification=exc.to_dict(),
                    ) from exc
                raise CatalyticError(
                    ErrorCode.REPLAY_FAILED,
                    f"bundle is corrupt ({exc.code.value}: {exc.message}); moved to {where}",
                    reason=exc.code.value,
                    quarantine=str(where),
                    verification=exc.to_dict(),
                ) from exc
            raise CatalyticError(
                ErrorCode.REPLAY_FAILED,
                f"bundle does not verify: {exc.code.value}: {exc.message}",
                reason=exc.code.value,
                verification=exc.to_dict(),
            ) from exc
        trust = self.opts.trust or trust_policy(
            load_trust(self.policy, self.repo.top), allow_untrusted=self.opts.allow_untrusted
        )
        decision = trust.decide(v.validator_id)
        if not decision.accepted:
            raise CatalyticError(
                ErrorCode.REPLAY_FAILED, f"untrusted bundle: {decision.reason}", reason="UNTRUSTED"
            )
        self.source = src
        return v

    def quarantine(self, exc: CatalyticError) -> Path:
        """Move (never delete) the bundle aside, with a report saying why."""
        stamp = stamp_compact()
        qdir = self.repo.top / self.policy.quarantine_dir
        qdir.mkdir(parents=True, exist_ok=True)
        dest = qdir / f"{name_part(self.run_dir.name)}-{stamp}"
        os.rename(self.run_dir, dest)
        report = {
            "run_id": self.run_dir.name,
            "original_path": str(self.run_dir),
            "quarantined_at": stamp,
            "reason": exc.code.value,
            "message": exc.message,
            "details": exc.details,
        }
        atomic_write(qdir / f"{dest.name}.QUARANTINE_REPORT.json", canonical_bytes(report))
        return dest

    # -- 2. + 4. worktree and execution ---------------------------------------------------------
    def worktree(self, commit: str, path: Path | None) -> Path:
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="catalytic-replay-")) / "wt"
        elif path.exists():
            raise CatalyticError(ErrorCode.USAGE, f"{path} exists; --worktree needs a new path")
        return add_worktree(self.repo, path, commit)

    def remove_worktree(self, path: Path) -> None:
        remove_worktree(self.repo, path)
        if path.name == "wt" and path.parent.name.startswith("catalytic-replay-"):
            shutil.rmtree(path.parent, ignore_errors=True)

    def command_env(self, spec: dict[str, Any], envstep: EnvStep) -> dict[str, str]:
        seed = spec.get("seed", 0)
        return envstep.command_env(
            {
                **replay_env(self.opts.pass_env),
                **determinism_env(seed if isinstance(seed, int) else 0),
                "CATALYTIC_RUN_ID": str(spec.get("task_id", self.run_dir.name)),
                "CATALYTIC_REPLAY": "1",
            }
        )

    def attempt(
        self,
        spec: dict[str, Any],
        commit: str,
        path: Path | None,
        hashes: dict[str, str],
        metrics_files: list[str],
        envstep: EnvStep,
        ready: Path | None = None,
    ) -> tuple[Attempt, Path]:
        """One replay in a new worktree (`ready`: one made already, for the rebuild)."""
        wt = ready or self.worktree(commit, path)
        if ready is None:
            prepare_worktree(wt, spec)
        cwd = wt / spec_path(spec.get("cwd", "."), "cwd")
        env = self.command_env(spec, envstep)
        timeout = self.opts.timeout or spec.get("timeout_seconds")
        try:
            proc = subprocess.run(
                spec["command"], cwd=cwd, env=env, timeout=timeout, capture_output=True
            )
        except subprocess.TimeoutExpired:
            return Attempt(False, f"timed out after {timeout} s"), wt
        except OSError as exc:
            return Attempt(False, f"cannot start the command: {exc.strerror}"), wt
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            return Attempt(
                False,
                f"command exited {proc.returncode}: {' | '.join(tail)}",
                exit_code=proc.returncode,
            ), wt
        got = {k: _sha(wt, k) for k in hashes}
        mets = {m: _load_json(_read(wt, m)) for m in metrics_files}
        return Attempt(True, None, got, mets, 0), wt


def archived_bytes(source: Any, key: str) -> bytes | None:
    try:
        where = source.locate(key)
        if where is None:
            return None
        fd = open_beneath(*where)
    except OSError:
        return None
    try:
        return read_capped(fd, key)
    except OSError:
        return None
    finally:
        os.close(fd)


def replay(repo: Repo, policy: Policy, run_dir: Path, opts: ReplayOptions) -> ReplayReport:
    """Replay and record the result in the chronicle (a bundle that exists and failed is part
    of the record too; a mistyped path is not)."""
    home = opts.home if opts.source_archive is not None else (repo.top, policy)
    try:
        rep = _replay(repo, policy, run_dir, opts)
    except CatalyticError as exc:
        if (
            home is not None
            and exc.code is ErrorCode.REPLAY_FAILED
            and (run_dir.is_dir() or exc.details.get("quarantine"))
        ):
            record(
                home[0],
                home[1],
                "replay",
                {
                    "run_id": run_dir.name,
                    "verdict": Verdict.FAILED,
                    "reason": str(exc.details.get("reason")),
                    "quarantine": exc.details.get("quarantine"),
                    "validation": opts.validation,
                    **({"source_archive": opts.source_archive} if opts.source_archive else {}),
                },
            )
        raise
    if home is not None:
        record(
            home[0],
            home[1],
            "replay",
            {
                "run_id": rep.run_id,
                "verdict": rep.verdict,
                "bundle_root": rep.bundle_root,
                "report": rep.report_json,
                **chronicled(rep),
                "validation": opts.validation,
                **{k: getattr(rep, k) for k in SEED_FIELDS},
            },
        )
    return rep


RECORDED_METRICS = 1000  # metric rows a replay's chronicle record carries


def chronicled(rep: ReplayReport) -> dict[str, Any]:
    """What the report draws from a replay, kept in the chronicle itself (a report file beside
    it is not hash-chained): the commit, the tolerance, every numeric metric's drift and the
    environment's differences."""
    rows = [
        {k: m.get(k) for k in ("file", "key", "archived", "replayed", "delta", "within_tolerance")}
        for m in rep.metrics or []
        if m.get("delta") is not None
    ]
    return {
        "commit": rep.commit,
        "tolerance": rep.tolerance,
        "replays": rep.replays or 0,
        "reason": rep.reason,
        "metrics": rows[:RECORDED_METRICS],
        "environment_differences": rep.environment.get("differences", []),
        "started_at": rep.started_at,
        "finished_at": rep.finished_at,
    }


def _seed_fields(report: ReplayReport, opts: ReplayOptions, current_env: dict[str, Any]) -> None:
    deltas = [m["delta"] for m in report.metrics or [] if m.get("delta") is not None]
    report.source_archive = opts.source_archive
    report.restoration_id = opts.restoration_id or f"replay-{report.run_id}-{stamp_compact()}"
    report.restored_at = report.started_at
    report.environment_hash = current_env.get("environment_hash") or current_env.get(
        "distributions_sha256"
    )
    report.metric_drift = max(deltas) if deltas else None
    report.verified = report.passing


def _environment(
    r: Replayer, spec: dict[str, Any], envstep: EnvStep
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Step 3: the environment the command runs in and its differences from the recorded one.
    The lock files a bundle names obey the path rules, like its cwd and metrics."""
    try:
        return envstep.differences(r.command_env(spec, envstep))
    except CatalyticError as exc:
        unsafe = exc.details.get("path") is not None
        raise CatalyticError(
            ErrorCode.REPLAY_FAILED, exc.message, reason="UNSAFE_PATH" if unsafe else exc.code.value
        ) from exc


def _replay(repo: Repo, policy: Policy, run_dir: Path, opts: ReplayOptions) -> ReplayReport:
    r = Replayer(repo, policy, run_dir, opts)
    started = stamp_seconds()
    v = r.verify()
    spec = v.task_spec if isinstance(v.task_spec, dict) else {}
    command = spec.get("command")
    commit = spec.get("git_commit")
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        raise CatalyticError(
            ErrorCode.REPLAY_FAILED, "TASK_SPEC records no command to replay", reason="NO_COMMAND"
        )
    if not isinstance(commit, str) or r.git.rev_parse(commit) is None:
        raise CatalyticError(
            ErrorCode.REPLAY_FAILED,
            f"recorded commit {commit!r} is not in this repository",
            reason="NO_COMMIT",
        )
    metrics_files = [spec_path(m, "metrics") for m in spec.get("metrics", [])]
    spec_path(spec.get("cwd", "."), "cwd")
    envstep = EnvStep(repo, policy, spec, opts.rebuild)
    current_env: dict[str, Any] = {}
    env_diffs: list[dict[str, Any]] = []
    if not envstep.rebuilding:
        current_env, env_diffs = _environment(r, spec, envstep)
    report = ReplayReport(
        run_id=v.run_id,
        bundle_root=v.bundle_root,
        commit=commit,
        command=command,
        tolerance=policy.metrics_tolerance,
        environment={"differences": env_diffs, "strict": opts.strict_env},
        started_at=started,
    )
    worktrees: list[Path] = []
    try:
        ready = None
        if envstep.rebuilding:
            # Rebuilt (editable installs from this worktree) and checked before anything runs;
            # a failure stops the replay with the environment's own code.
            ready = r.worktree(commit, opts.worktree)
            worktrees.append(ready)
            prepare_worktree(ready, spec)
            try:
                envstep.build(ready, replay_env(opts.pass_env))
            except CatalyticError as exc:
                report.environment["rebuild_error"] = exc.to_dict()
                raise
            current_env, env_diffs = _environment(r, spec, envstep)
        report.environment = envstep.report(env_diffs, opts.strict_env)
        if env_diffs and opts.strict_env:
            report.verdict = Verdict.FAILED
            report.reason = "environment differs from the recorded one (--strict-env)"
            report.replays, report.outputs, report.metrics = 0, [], []
            return report
        first, wt = r.attempt(spec, commit, opts.worktree, v.hashes, metrics_files, envstep, ready)
        worktrees.append(wt)
        report.worktree = str(wt)
        if not first.ok:
            report.verdict, report.reason = Verdict.FAILED, first.reason
            report.replays, report.outputs, report.metrics = 1, [], []
        else:
            _judge(report, r, v, spec, commit, first, metrics_files, policy, worktrees, envstep)
        if not report.passing and likely_causes(spec):
            report.likely_causes = likely_causes(spec)
        return report
    finally:
        envstep.release()
        report.finished_at = stamp_seconds()
        _seed_fields(report, opts, current_env)
        if not opts.keep:
            for wt in dict.fromkeys(worktrees):
                r.remove_worktree(wt)
        home = opts.home if opts.source_archive is not None else (repo.top, policy)
        _write_reports(
            home[0] if home else (opts.reports_root or repo.top),
            home[1] if home else policy,
            report,
        )


def _judge(
    report: ReplayReport,
    r: Replayer,
    v: Any,
    spec: dict[str, Any],
    commit: str,
    first: Attempt,
    metrics_files: list[str],
    policy: Policy,
    worktrees: list[Path],
    envstep: EnvStep,
) -> None:
    archived_metrics = {m: _load_json(archived_bytes(r.source, m)) for m in metrics_files}
    outputs = [
        {
            "path": k,
            "expected": v.hashes[k],
            "replay1": first.hashes[k],
            "match": first.hashes[k] == v.hashes[k],
        }
        for k in sorted(v.hashes)
    ]
    metric_rows: list[dict[str, Any]] = []
    for m in metrics_files:
        for row in compare_metrics(
            flatten(archived_metrics[m]), flatten(first.metrics.get(m)), policy.metrics_tolerance
        ):
            metric_rows.append({"file": m, **row})
    report.outputs, report.metrics, report.replays = outputs, metric_rows, 1
    mismatched = [o["path"] for o in outputs if not o["match"]]
    if not mismatched:
        report.verdict = Verdict.EXACT
        return
    metric_ok = {
        m: all(r_["within_tolerance"] for r_ in metric_rows if r_["file"] == m)
        for m in metrics_files
    }
    if all(p in metric_ok and metric_ok[p] and archived_metrics[p] is not None for p in mismatched):
        report.verdict = Verdict.WITHIN
        return
    # A difference: replay once more to tell nondeterminism from a real change.
    second, wt2 = r.attempt(spec, commit, None, v.hashes, metrics_files, envstep)
    worktrees.append(wt2)
    report.replays = 2
    if not second.ok:
        report.verdict, report.reason = Verdict.FAILED, f"second replay: {second.reason}"
        return
    for o in outputs:
        o["replay2"] = second.hashes[o["path"]]
    if all(first.hashes[k] == second.hashes[k] for k in v.hashes):
        report.verdict = Verdict.DRIFT
        report.reason = (
            f"both replays agree with each other but not "
            f"with the archive for {len(mismatched)} output(s)"
        )
    else:
        report.verdict = Verdict.NONDET
        report.reason = "the two replays differ from each other"


def _write_reports(top: Path, policy: Policy, report: ReplayReport) -> None:
    """The report in each format (replay/report.py renders them), under the reports directory."""
    stamp = stamp_compact()
    rdir = top / policy.reports_dir
    rdir.mkdir(parents=True, exist_ok=True)
    base = rdir / f"replay-{name_part(report.run_id)}-{stamp}"
    report.report_json = str(base.with_suffix(".json"))
    report.report_md = str(base.with_suffix(".md"))
    report.report_html = str(base.with_suffix(".html"))
    doc = report.to_dict()
    atomic_write(base.with_suffix(".json"), canonical_bytes(doc))
    atomic_write(base.with_suffix(".md"), report.markdown().encode())
    atomic_write(base.with_suffix(".html"), render_replay_html(doc))
