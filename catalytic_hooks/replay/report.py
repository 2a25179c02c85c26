"""A replay's report: one typed value (`ReplayReport`) and one renderer per format: the JSON
document (`to_dict`: the report file, `replay --json`'s details, what the HTML page and the
chronicle draw from), the Markdown report (`markdown`) and the console lines (`lines`).

The JSON document keeps the keys it has always had: a field that was never reached (a replay
that stopped before its verdict, a report of a run directory rather than an archive) is left
out, not written as null; the seed's restoration fields are always written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from catalytic_hooks.core.markdown import literal
from catalytic_hooks.core.outcomes import PASSING, Verdict
from catalytic_hooks.replay.envstep import markdown_lines

# The restoration record of the seed specification (§VII), in every replay's report and
# chronicle record.
SEED_FIELDS = (
    "source_archive",
    "restoration_id",
    "restored_at",
    "environment_hash",
    "metric_drift",
    "verified",
)
# Fields written only once they hold a value (in this order after the fixed ones).
_WHEN_SET = (
    "verdict",
    "reason",
    "replays",
    "outputs",
    "metrics",
    "worktree",
    "likely_causes",
    "finished_at",
    "report_json",
    "report_md",
    "report_html",
    "replay_dir",
    "kept",
    "pulled",
)


@dataclass
class ReplayReport:
    run_id: str
    bundle_root: str
    commit: str
    command: list[str]
    tolerance: float
    environment: dict[str, Any]  # differences, strict, and what a rebuild did (envstep.report)
    started_at: str
    verdict: Verdict | None = None  # None only in a report written by a replay that stopped
    reason: str | None = None
    replays: int | None = None
    outputs: list[dict[str, Any]] | None = None
    metrics: list[dict[str, Any]] | None = None
    worktree: str | None = None
    likely_causes: dict[str, Any] | None = None
    finished_at: str | None = None
    # The seed's restoration fields (SEED_FIELDS), set when the replay ends.
    source_archive: dict[str, Any] | None = None
    restoration_id: str | None = None
    restored_at: str | None = None
    environment_hash: str | None = None
    metric_drift: float | None = None
    verified: bool = False
    # Where the report files were written.
    report_json: str | None = None
    report_md: str | None = None
    report_html: str | None = None
    # A replay of an archive file (replay/archived.py) and one pulled from a registry.
    replay_dir: str | None = None
    kept: bool | None = None
    pulled: dict[str, Any] | None = field(default=None)

    @property
    def passing(self) -> bool:
        return self.verdict in PASSING

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (its values: Verdict is a StrEnum, written as its spelling)."""
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "bundle_root": self.bundle_root,
            "commit": self.commit,
            "command": self.command,
            "tolerance": self.tolerance,
            "environment": self.environment,
            "started_at": self.started_at,
        }
        if self.restoration_id is not None:  # the seed fields are set together
            doc |= {k: getattr(self, k) for k in SEED_FIELDS}
        doc |= {k: getattr(self, k) for k in _WHEN_SET if getattr(self, k) is not None}
        return doc

    def lines(self) -> list[str]:
        """What `catalytic replay` shows a person, one line each."""
        out = [
            f"environment differs: {d['field']}: recorded {d['recorded']}, now {d['current']}"
            for d in self.environment["differences"]
        ]
        rebuilt = self.environment.get("rebuilt")
        if rebuilt:
            out += [
                f"  env: {p['name']}=={p['version']} from {p['source']} {p['file']}"
                for p in rebuilt["packages"]
            ]
            out += [f"  env: {e['package']}: {e['source']} {e['event']}" for e in rebuilt["events"]]
            out.append(
                f"environment rebuilt{' (cached)' if rebuilt['cached'] else ''}: "
                f"{rebuilt['environment_hash']}"
            )
        out += [f"  {'=' if o['match'] else '≠'} {o['path']}" for o in self.outputs or []]
        out += [
            f"  likely cause: untracked input {p} was not in the recorded commit"
            for p in (self.likely_causes or {}).get("untracked_inputs", [])
        ]
        out.append(
            f"replay {self.run_id}: {self.verdict}" + (f" ({self.reason})" if self.reason else "")
        )
        out.append(f"report: {self.report_md}")
        return out

    def markdown(self) -> str:
        """The Markdown report written beside the JSON one."""
        # Everything a bundle supplies goes in a code span (core.markdown); the verdict, counts
        # and digests are this tool's own.
        lines = [f"# Replay of {literal(self.run_id)}: **{self.verdict or '?'}**", ""]
        if self.reason:
            lines += [f"Reason: {literal(self.reason)}", ""]
        lines += [
            f"- bundle root: {literal(self.bundle_root)}",
            f"- commit: {literal(self.commit)}",
            f"- command: {literal(' '.join(self.command))}",
            f"- replays: {self.replays or 0}; metric tolerance {self.tolerance}",
            f"- started {self.started_at}, finished {self.finished_at or ''}",
        ]
        src = self.source_archive
        if src:
            lines.append(
                f"- source archive: {literal(src['name'])} (SHA-256 {literal(src['sha256'])})"
            )
        lines += [
            f"- restoration id: `{self.restoration_id}`; environment hash "
            f"`{self.environment_hash}`; metric drift {self.metric_drift}; "
            f"verified: {'yes' if self.verified else 'no'}",
            "",
            "## Environment",
            "",
        ]
        diffs = self.environment["differences"]
        if not diffs:
            lines.append("Same as recorded.")
        else:
            lines += ["| field | recorded | now |", "|---|---|---|"]
            lines += [
                f"| {literal(d['field'], in_cell=True)} | {literal(d['recorded'], in_cell=True)} | "
                f"{literal(d['current'], in_cell=True)} |"
                for d in diffs
            ]
        lines += markdown_lines(self.environment, self.likely_causes)
        lines += [
            "",
            "## Outputs",
            "",
            "| path | archived | replay 1 | replay 2 | match |",
            "|---|---|---|---|---|",
        ]
        for o in self.outputs or []:
            lines.append(
                f"| {literal(o['path'], in_cell=True)} | `{o['expected'][7:19]}` | "
                f"`{(o['replay1'] or 'missing')[7:19]}` | "
                f"`{(o.get('replay2') or '-')[7:19]}` | {'yes' if o['match'] else 'no'} |"
            )
        metrics = self.metrics or []
        rows = [m for m in metrics if m["delta"] is not None]
        if metrics:
            lines += [
                "",
                "## Metrics (largest deltas first)",
                "",
                "| file | key | archived | replayed | delta | within tolerance |",
                "|---|---|---|---|---|---|",
            ]
            ordered = sorted(rows, key=lambda m: -m["delta"]) + [
                m for m in metrics if m["delta"] is None
            ]
            for m in ordered:
                lines.append(
                    f"| {literal(m['file'], in_cell=True)} | {literal(m['key'], in_cell=True)} | "
                    f"{literal(m['archived'], in_cell=True)} | "
                    f"{literal(m['replayed'], in_cell=True)} | "
                    f"{m['delta']} | {'yes' if m['within_tolerance'] else 'no'} |"
                )
        return "\n".join(lines) + "\n"
