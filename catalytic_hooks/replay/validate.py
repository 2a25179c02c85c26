"""`catalytic validate`: replay a seeded, stable sample of the archive and say what still
reproduces (DESIGN §14, the seed's §XII nightly task).

The pick (README, "Validating the archive nightly"):
- *rank*: every candidate run gets `HMAC-SHA256(key=seed, msg=run_id)` (UTF-8, hex; a name that is
  not UTF-8, by its own bytes); candidates are ordered by (rank, run id, path).
- *sample* (`--sample N`): the first N of that order. The seed defaults to the UTC date, so a
  nightly job needs no state; the same seed and sources give the same pick on any machine, and a
  run added to the archive changes the pick only if its rank falls among the first N (it then
  displaces one old pick).
- *coverage* (`--coverage --sample N`): the order is cut into P = ceil(runs / N) slices of N;
  night d (days since 1970-01-01 of `--date`, default today in UTC) replays slice d mod P, so P
  consecutive nights replay every run exactly once while the set of runs stays the same. The seed
  must then stay fixed across nights: it defaults to `coverage`.
- *shards* (`--shard I/N`): shard I takes the picks at positions I-1, I-1+N, I-1+2N, ... of the
  pick, so N jobs together replay it exactly once.

Sources resolve to a list of `Candidate`s (run id, path, kind): run directories (`replay()` in
a worktree of this repository) and archive files (`replay_archive()`, unpacked into their own
replay directory), from the paths given or the directories holding them, and registry
references (`oci://`: a tag or digest, or a repository whose tags are its runs), pulled only when
picked; sampling, sharding, the summary and the chronicle are the same for every kind.

A pick that cannot be replayed is that pick's `failed` row, never the end of the night: a refusal
(`REPLAY_FAILED` and its reason), a run or archive whose file name is not UTF-8 (reason
`NAME_NOT_UTF8`, refused before anything is read: no report, record or quarantine path could name
it), or a bug (reason `INTERNAL`; `CATALYTIC_DEBUG=1` prints its traceback). Only an interrupt
stops the others.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from catalytic_hooks.archive.read import inspect_doc, limits_for
from catalytic_hooks.archive.zipfmt import Limits
from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.clock import stamp_compact, stamp_seconds
from catalytic_hooks.core.errors import CatalyticError, ErrorCode, debug_enabled, failure
from catalytic_hooks.core.markdown import cell, literal
from catalytic_hooks.core.outcomes import Verdict
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.environment.build import RebuildOptions
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.provenance.chronicle import record
from catalytic_hooks.registry.client import abort_all
from catalytic_hooks.registry.pull import Options as RegistryOptions
from catalytic_hooks.registry.pull import pulled_archive, repository_tags
from catalytic_hooks.registry.reference import parse as parse_reference
from catalytic_hooks.registry.reference import spelled
from catalytic_hooks.replay.archived import replay_archive
from catalytic_hooks.replay.report import ReplayReport
from catalytic_hooks.replay.runner import ReplayOptions, replay
from catalytic_hooks.report.page import fmt_num
from catalytic_hooks.report.replay_html import render_validation_html

RUN_MARKER = "TASK_SPEC.json"  # what makes a directory a run directory
COVERAGE_SEED = "coverage"


@dataclass(frozen=True)
class Candidate:
    run_id: str
    path: Path
    kind: str = "dir"
    ref: str | None = None  # kind "oci": the registry reference, pulled only when picked


@dataclass
class ValidateOptions:
    sample: int | None = None
    seed: str | None = None
    coverage: bool = False
    date: str | None = None  # coverage: the night (YYYY-MM-DD, UTC); default today
    shard: tuple[int, int] | None = None
    jobs: int = 1
    rebuild_env: bool = False
    replay: ReplayOptions | None = None
    registry: RegistryOptions | None = None  # how oci:// sources are reached


def _is_run(p: Path) -> bool:
    return p.is_dir() and not p.is_symlink() and (p / RUN_MARKER).is_file()


def _is_archive(p: Path) -> bool:
    return p.name.endswith(".zip") and p.is_file() and not p.is_symlink()


def _archive(p: Path, limits: Limits) -> Candidate:
    """An archive ranks by the run id of its ARCHIVE.json (structure checked, nothing
    extracted); one too broken to say is still a candidate, by its file name, so that it is
    picked, fails and is quarantined like any corrupt bundle."""
    try:
        run_id = inspect_doc(p, limits).get("run_id")
    except CatalyticError:
        run_id = None
    name = p.name.removesuffix(".zip").removesuffix(".catalytic")
    return Candidate(run_id if isinstance(run_id, str) and run_id else name, p, "archive")


def _expand(p: Path, limits: Limits) -> list[Candidate]:
    """One source → its runs: a run directory, an archive file, or a directory holding either
    (run roots, an archive store)."""
    if _is_run(p):
        return [Candidate(p.name, p)]
    if _is_archive(p):
        return [_archive(p, limits)]
    if p.is_dir() and not p.is_symlink():
        # Hidden entries are staging directories of runs being written, never runs.
        kids = [c for c in sorted(p.iterdir()) if not c.name.startswith(".")]
        return [
            Candidate(c.name, c) if _is_run(c) else _archive(c, limits)
            for c in kids
            if _is_run(c) or _is_archive(c)
        ]
    raise CatalyticError(
        ErrorCode.PATH_INVALID,
        f"{p} is neither a run directory, an archive nor a directory holding them",
        path=str(p),
    )


@dataclass(frozen=True)
class Sources:
    candidates: list[Candidate]
    tags_ignored: int = 0  # strings registries listed that are not OCI tags: never run ids


def _registry(text: str, registry: RegistryOptions) -> Sources:
    """A registry source: one tag or digest, or a repository (each of its runs' tags, which
    rank as run ids: a push tags with the run id). Nothing is pulled before the pick."""
    ref = parse_reference(text)
    if not ref.is_repository:
        one = Candidate(ref.tag or ref.digest or text, Path(text.replace("://", "/")), "oci", text)
        return Sources([one])
    listed = repository_tags(text, registry)
    return Sources(
        [Candidate(tag, Path(r.replace("://", "/")), "oci", r) for tag, r in listed.runs],
        listed.tags_ignored,
    )


def resolve_sources(
    repo: Repo, policy: Policy, sources: list[Path | str], registry: RegistryOptions | None = None
) -> Sources:
    """Every candidate run of the sources (default: every run under the run roots); a source
    given as `oci://...` (a string, or a Path that folded its `//`) is a registry's."""
    limits = limits_for(policy)
    ignored = 0
    if not sources:
        roots = [repo.top / r for r in policy.run_roots]
        found = [c for r in roots if r.is_dir() for c in _expand(r, limits)]
    else:
        found = []
        for s in sources:
            text = spelled(s)
            if text is not None:
                listed = _registry(text, registry or RegistryOptions())
                found += listed.candidates
                ignored += listed.tags_ignored
            else:
                found += _expand(Path(s).absolute(), limits)
    seen: set[Path | str] = set()
    out = []
    for c in found:
        key: Path | str = c.ref if c.ref is not None else c.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(c)
    return Sources(out, ignored)


def name_bytes(name: str) -> bytes:
    """A name as UTF-8; one read from a file name that is not UTF-8 (Python's surrogate escapes)
    as those bytes, and any other lone surrogate as UTF-8 would spell it: never an error, so
    such a candidate ranks like any other, and is refused only if picked (`_one`)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def shown(name: str) -> str:
    """A name as text every report, record and terminal can hold: bytes that are not UTF-8 as
    `\\xff` escapes (a name that is UTF-8 is itself)."""
    return name_bytes(name).decode("utf-8", "backslashreplace")


def rank(seed: str, run_id: str) -> str:
    return hmac.new(seed.encode(), name_bytes(run_id), hashlib.sha256).hexdigest()


def ordered(cands: list[Candidate], seed: str) -> list[Candidate]:
    return sorted(
        cands, key=lambda c: (rank(seed, c.run_id), c.run_id, c.path.name, c.path.as_posix())
    )


def pick_sample(cands: list[Candidate], n: int | None, seed: str) -> list[Candidate]:
    order = ordered(cands, seed)
    return order if n is None else order[:n]


def night_of(day: str | None) -> int:
    try:
        d = date.fromisoformat(day) if day else datetime.now(UTC).date()
    except ValueError as exc:
        raise CatalyticError(ErrorCode.USAGE, f"--date {day!r} is not YYYY-MM-DD") from exc
    return (d - date(1970, 1, 1)).days


def pick_coverage(cands: list[Candidate], n: int, seed: str, night: int) -> list[Candidate]:
    order = ordered(cands, seed)
    if not order:
        return []
    slices = math.ceil(len(order) / n)
    k = night % slices
    return order[k * n : (k + 1) * n]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise CatalyticError(
            ErrorCode.USAGE, f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 2/4"
        )
    return i, n


def shard(picks: list[Candidate], i: int, n: int) -> list[Candidate]:
    return picks[i - 1 :: n]


def default_seed(coverage: bool) -> str:
    return COVERAGE_SEED if coverage else datetime.now(UTC).date().isoformat()


def plan(cands: list[Candidate], opts: ValidateOptions) -> tuple[str, list[Candidate]]:
    """The seed used and this job's picks."""
    seed = opts.seed if opts.seed is not None else default_seed(opts.coverage)
    if shown(seed) != seed:
        raise CatalyticError(ErrorCode.USAGE, f'--seed "{shown(seed)}" is not UTF-8 text')
    if opts.sample is not None and opts.sample < 1:
        raise CatalyticError(ErrorCode.USAGE, "--sample must be at least 1")
    if opts.coverage:
        if opts.sample is None:
            raise CatalyticError(ErrorCode.USAGE, "--coverage needs --sample N (runs a night)")
        picks = pick_coverage(cands, opts.sample, seed, night_of(opts.date))
    else:
        picks = pick_sample(cands, opts.sample, seed)
    if opts.shard is not None:
        picks = shard(picks, *opts.shard)
    return seed, picks


def _row(
    c: Candidate, rep: ReplayReport | None, exc: CatalyticError | None, seconds: float
) -> dict[str, Any]:
    source = shown(c.ref or str(c.path))
    if rep is None:
        assert exc is not None
        return {
            "run_id": shown(c.run_id),
            "source": source,
            "verdict": Verdict.FAILED,
            "passing": False,
            "largest_drift": None,
            "environment": "unknown",
            "reason": f"{exc.details.get('reason') or exc.code.value}: {exc.message}",
            "quarantine": exc.details.get("quarantine"),
            "seconds": round(seconds, 3),
        }
    # As recorded, never through float(): a delta may be an integer beyond every float.
    deltas = [m["delta"] for m in rep.metrics or [] if isinstance(m.get("delta"), int | float)]
    diffs = rep.environment["differences"]
    return {
        "run_id": rep.run_id,
        "source": source,
        "verdict": rep.verdict,
        "passing": rep.passing,
        "largest_drift": max(deltas) if deltas else None,
        "environment": "match" if not diffs else f"differs ({len(diffs)})",
        "reason": rep.reason,
        "report": rep.report_json,
        "seconds": round(seconds, 3),
    }


def _replay_one(
    repo: Repo,
    policy: Policy,
    c: Candidate,
    ropts: ReplayOptions,
    registry: RegistryOptions | None = None,
) -> ReplayReport:
    registry = registry or RegistryOptions()
    if registry.cancel is not None and registry.cancel.is_set():
        raise KeyboardInterrupt  # the validation was interrupted: no new replay starts
    if c.kind == "oci" and c.ref is not None:
        # Pulled (checked, into the verified cache) only now that it is picked. Never
        # quarantined: the bytes stay in the registry, and a copy of each failing pull in the
        # repository would let a registry fill the disk night after night.
        with pulled_archive(c.ref, registry) as (path, _):
            here = Candidate(c.run_id, path, "archive")
            return _replay_one(repo, policy, here, replace(ropts, quarantine=False), registry)
    if c.kind == "archive":
        # Unpacked into its own replays/<run_id>-<time>/ and replayed there (replay FILE).
        return replay_archive(
            c.path,
            ropts,
            caller=(repo.top, policy),
            replay_dir=None,
            quarantine_dir=repo.top / policy.quarantine_dir,
            limits=limits_for(policy),
            quarantine=ropts.quarantine,
        )
    return replay(repo, policy, c.path, ropts)


def _one(
    repo: Repo,
    policy: Policy,
    c: Candidate,
    ropts: ReplayOptions,
    registry: RegistryOptions | None = None,
) -> dict[str, Any]:
    """One pick's row; whatever goes wrong with it (short of an interrupt) is that row."""
    t0 = time.monotonic()
    if shown(c.run_id) != c.run_id or shown(c.path.name) != c.path.name:
        # Refused before anything is read: the replay would name it in reports, chronicle
        # records and quarantine paths, none of which can hold a name that is not text.
        refusal = CatalyticError(
            ErrorCode.REPLAY_FAILED,
            f'the name "{shown(c.path.name)}" is not UTF-8; no run or archive this tool writes '
            "has one (rename or remove it)",
            reason="NAME_NOT_UTF8",
        )
        return _failed(repo, policy, c, refusal, "NAME_NOT_UTF8", ropts, t0)
    try:
        rep = _replay_one(repo, policy, c, ropts, registry)
    except CatalyticError as exc:
        if registry is not None and registry.cancel is not None and registry.cancel.is_set():
            # What an interrupted pull ends in (its socket shut down under it) is no failure
            # of the run: nothing is recorded for it.
            raise KeyboardInterrupt from exc
        # replay() records what it could start on: a run directory that exists or was
        # quarantined; for an archive, what got as far as the extracted bundle.
        recorded = exc.code is ErrorCode.REPLAY_FAILED and (
            c.kind in ("archive", "oci") or c.path.is_dir() or bool(exc.details.get("quarantine"))
        )
        if recorded:
            return _row(c, None, exc, time.monotonic() - t0)
        return _failed(repo, policy, c, exc, exc.code.value, ropts, t0)
    except Exception as exc:  # a bug met by one pick must not cost the night every other one
        if debug_enabled():
            traceback.print_exc()  # a traceback, never locals
        bug = CatalyticError(ErrorCode.INTERNAL, failure(exc)[1], reason="INTERNAL")
        return _failed(repo, policy, c, bug, "INTERNAL", ropts, t0)
    return _row(c, rep, None, time.monotonic() - t0)


def _failed(
    repo: Repo,
    policy: Policy,
    c: Candidate,
    exc: CatalyticError,
    reason: str,
    ropts: ReplayOptions,
    t0: float,
) -> dict[str, Any]:
    """A failed pick that replay() did not record: every pick counts in the chronicle."""
    record(
        repo.top,
        policy,
        "replay",
        {
            "run_id": shown(c.run_id),
            "verdict": Verdict.FAILED,
            "reason": reason,
            "quarantine": None,
            "validation": ropts.validation,
        },
    )
    return _row(c, None, exc, time.monotonic() - t0)


def validate(
    repo: Repo, policy: Policy, sources: list[Path | str], opts: ValidateOptions
) -> dict[str, Any]:
    if opts.jobs < 1:
        raise CatalyticError(ErrorCode.USAGE, "--jobs must be at least 1")
    found = resolve_sources(repo, policy, sources, opts.registry)
    cands = found.candidates
    seed, picks = plan(cands, opts)
    stamp = stamp_compact()
    vid = f"validate-{stamp}"
    ropts = replace(opts.replay or ReplayOptions(), worktree=None, validation=vid)
    if opts.rebuild_env and ropts.rebuild is None:
        ropts = replace(ropts, rebuild=RebuildOptions())  # the policy's sources: the CLI's
    started = stamp_seconds()
    # Each replay makes its own worktree in its own temporary directory; threads suffice, the
    # work is in the replayed processes. An interrupt reaches the main thread only: `stop`
    # tells the workers, whose pulls end at their next step and who start no new replay,
    # and their cleanup is waited for before the interrupt goes on.
    stop = threading.Event()
    registry = replace(opts.registry or RegistryOptions(), cancel=stop)
    pool = ThreadPoolExecutor(max_workers=opts.jobs)
    try:
        results = list(pool.map(lambda c: _one(repo, policy, c, ropts, registry), picks))
    except BaseException:
        abort_all(stop)  # sets it, and wakes a pull waiting on a registry that says nothing
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    # Sources that hold no run at all (a mistyped path, an emptied registry repository) fail,
    # as pytest fails when it collects nothing: a nightly job that validates nothing must not
    # read as green. An empty shard of a non-empty sample is not this.
    ok = bool(cands) and all(r["passing"] for r in results)
    summary: dict[str, Any] = {
        "validation": vid,
        "ok": ok,
        "seed": seed,
        "mode": "coverage" if opts.coverage else "sample",
        "sample": opts.sample,
        "night": night_of(opts.date) if opts.coverage else None,
        "shard": f"{opts.shard[0]}/{opts.shard[1]}" if opts.shard else None,
        "candidates": len(cands),
        **({"tags_ignored": found.tags_ignored} if found.tags_ignored else {}),
        "jobs": opts.jobs,
        "results": results,
        "started_at": started,
        "finished_at": stamp_seconds(),
    }
    _write(repo, policy, summary, stamp)
    record(
        repo.top,
        policy,
        "validate",
        {
            "validation": vid,
            "ok": ok,
            "seed": seed,
            "mode": summary["mode"],
            "sample": opts.sample,
            "shard": summary["shard"],
            "candidates": len(cands),
            "results": [
                {k: r[k] for k in ("run_id", "verdict", "largest_drift", "environment", "seconds")}
                for r in results
            ],
        },
    )
    return summary


def _write(repo: Repo, policy: Policy, summary: dict[str, Any], stamp: str) -> None:
    rdir = repo.top / policy.reports_dir
    rdir.mkdir(parents=True, exist_ok=True)
    base = rdir / f"validate-{stamp}"
    summary.update(
        report_json=str(base.with_suffix(".json")),
        report_md=str(base.with_suffix(".md")),
        report_html=str(base.with_suffix(".html")),
    )
    atomic_write(base.with_suffix(".json"), canonical_bytes(summary))
    atomic_write(base.with_suffix(".md"), render_markdown(summary).encode())
    atomic_write(base.with_suffix(".html"), render_validation_html(summary))


NO_RUNS = "no run was found in the sources; nothing was validated"


def ignored_note(summary: dict[str, Any]) -> str:
    n = summary.get("tags_ignored")
    return f"; {n} registry tag(s) ignored (not OCI tags)" if n else ""


def render_markdown(summary: dict[str, Any]) -> str:
    res = summary["results"]
    bad = [r["run_id"] for r in res if not r["passing"]]
    head = (
        "**PASS**: every replayed run reproduces"
        if summary["ok"]
        else f"**FAIL**: {len(bad)} run(s) no longer reproduce: {', '.join(map(literal, bad))}"
        if bad
        else f"**FAIL**: {NO_RUNS}"
    )
    lines = [
        f"# Validation {summary['validation']}",
        "",
        head,
        "",
        f"- seed `{cell(summary['seed'])}`, mode {summary['mode']}, shard "
        f"{summary['shard'] or 'all'}; {len(res)} of {summary['candidates']} run(s)"
        + ignored_note(summary),
        "",
        "| run | verdict | largest metric drift | environment | time |",
        "|---|---|---|---|---|",
    ]
    for r in res:
        drift = "-" if r["largest_drift"] is None else fmt_num(r["largest_drift"])
        lines.append(
            f"| {literal(r['run_id'], in_cell=True)} | {r['verdict']} | {drift} | "
            f"{r['environment']} | {r['seconds']:.1f} s |"
        )
    return "\n".join(lines) + "\n"
