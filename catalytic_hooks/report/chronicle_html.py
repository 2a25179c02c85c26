"""`catalytic report`: the chronicle as one static HTML page.

Integrity first (the banner says whether the chronicle verifies, or names its first bad line;
only records before that line are shown), then the timeline, a section per run, the drift of
every declared metric, validations and the quarantine. The page is a function of the chronicle's
bytes and this version alone: no generation time, no absolute path, so the same chronicle gives
byte-identical HTML that can be hashed and signed like any output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.provenance.chronicle import ChronicleView, inspect
from catalytic_hooks.report import plot
from catalytic_hooks.report.model import Model, RunView, build, data_of, run_ids_of, text, when
from catalytic_hooks.report.page import (
    PASSING,
    esc,
    filter_controls,
    fmt_num,
    page,
    table,
    verdict_badge,
    verdict_cell,
)

REPORT_NAME = "report.html"


def _banner(view: ChronicleView) -> str:
    c = view.check
    if c.ok:
        return (
            f'<p class="banner ok" id="integrity" role="status">✓ Chronicle verified: '
            f"{c.records} record{'s' if c.records != 1 else ''}, every line chained to the "
            "one before it and to the head.</p>"
        )
    return (
        f'<p class="banner bad" id="integrity" role="alert">✗ Chronicle INVALID at '
        f"line {esc(c.bad_line if c.bad_line is not None else '?')}: {esc(c.reason or '')}. "
        f"Only the {c.records} record{'s' if c.records != 1 else ''} before it "
        f"{'are' if c.records != 1 else 'is'} shown; "
        f"{max(view.lines - c.records, 0)} line(s) from there on are not.</p>"
    )


def _run_link(m: Model, rid: str) -> str:
    v = m.run(rid)
    return f'<a href="#{v.anchor}">{esc(rid)}</a>' if v else esc(rid)


def _scalars(d: dict[str, Any], skip: set[str]) -> str:
    parts = []
    for k in sorted(d):
        v = d[k]
        if k in skip or isinstance(v, dict | list) or v is None:
            continue
        s = text(v)
        parts.append(f"{k}={s[:120] + '…' if len(s) > 120 else s}")
    return ", ".join(parts)


def _validation_summary(m: Model, d: dict[str, Any]) -> str:
    raw = d.get("results")
    res = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
    counts: dict[str, int] = {}
    for r in res:
        counts[text(r.get("verdict"))] = counts.get(text(r.get("verdict")), 0) + 1
    bad = [text(r.get("run_id")) for r in res if r.get("verdict") not in PASSING]
    ok = d.get("ok") is True
    return (
        f"{verdict_badge('exact' if ok else 'failed')} {len(res)} replay"
        f"{'s' if len(res) != 1 else ''} ("
        + esc(", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
        + ")"
        + (", not reproducing: " + ", ".join(_run_link(m, b) for b in bad[:20]) if bad else "")
        + esc(
            f"; seed {text(d.get('seed'))}"
            + (f", shard {text(d.get('shard'))}" if d.get("shard") else "")
        )
    )


def _summary(m: Model, rec: dict[str, Any]) -> str:
    kind, d = text(rec.get("kind")), data_of(rec)
    if kind == "replay":
        extra = "; ".join(
            x for x in (text(d.get("reason")), "quarantined" if d.get("quarantine") else "") if x
        )
        return f"{verdict_badge(d.get('verdict'))} {esc(extra)}".rstrip()
    if kind == "validate":
        return _validation_summary(m, d)
    return esc(_scalars(d, {"run_id"}))


def timeline(m: Model) -> str:
    """Every record, oldest first, except the replays a validation made: the validation's row
    counts them (a nightly job makes thousands) and each is in its run's section."""
    folded = {text(data_of(r).get("validation")) for r in m.validations} - {""}
    rows = []
    for rec in m.records:
        kind = text(rec.get("kind"))
        if kind == "replay" and text(data_of(rec).get("validation")) in folded:
            continue
        ids = run_ids_of(rec) if kind != "validate" else []
        links = ", ".join(_run_link(m, r) for r in ids[:20])
        links += f" and {len(ids) - 20} more" if len(ids) > 20 else ""
        rows.append(
            f"<tr><td>{esc(rec.get('seq'))}</td><td>{esc(when(rec.get('time')))}</td>"
            f"<td>{esc(kind)}</td><td>{links}</td><td>{_summary(m, rec)}</td></tr>\n"
        )
    return (
        '<section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2>'
        "<p>Runs, signings, verifications, attestations, restores, replays and validations, "
        "oldest first. A validation's row counts the replays it made; each of them is listed "
        "in its run's section.</p>"
        + filter_controls("timeline", "Filter records", m.kinds, column=2)
        + table(
            "timeline",
            "The chronicle's records",
            ["seq", "time (UTC)", "kind", "run", "summary"],
            rows,
            numeric=frozenset({0}),
            cls="seqcol",
        )
        + "</section>"
    )


def _facts(pairs: list[tuple[str, str]]) -> str:
    return (
        '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"
    )


def _run_facts(v: RunView) -> str:
    run = v.of("run")[-1] if v.of("run") else None
    d = data_of(run) if run else {}
    none = '<span class="muted">not recorded</span>'
    cmd = d.get("command")
    signers = [text(data_of(r).get("validator_id")) for r in v.of("sign")]
    if isinstance(d.get("signer"), str):
        signers.insert(0, d["signer"])
    attests = [
        f"{esc(text(data_of(r).get('file')))} by <code>"
        f"{esc(text(data_of(r).get('keyid'))[:16])}</code> ({esc(text(r.get('time'))[:10])})"
        for r in v.of("attest")
    ]
    verifies = [
        f"{'passed' if data_of(r).get('ok') is True else 'FAILED'} "
        f"{esc(text(data_of(r).get('code')))} ({esc(text(r.get('time'))[:10])})"
        for r in v.of("verify")
    ]
    restores = [
        f"into <code>{esc(text(data_of(r).get('target')))}</code> ({esc(text(r.get('time'))[:10])})"
        for r in v.of("restore")
    ]
    raw = d.get("outputs")
    outputs: dict[str, Any] = raw if isinstance(raw, dict) else {}
    n = d.get("output_count")
    count = n if isinstance(n, int) else len(outputs)
    out_list = "".join(
        f"<li><code>{esc(k)}</code> <code>{esc(text(h)[7:19])}</code></li>"
        for k, h in sorted(outputs.items())
    )
    more = count - len(outputs)
    out_html = (
        f"{count} file{'s' if count != 1 else ''}"
        + (f"<ul>{out_list}</ul>" if out_list else "")
        + (f" and {more} more (OUTPUT_HASHES.json lists them)" if more > 0 else "")
        if run
        else none
    )
    return _facts(
        [
            (
                "status",
                esc(f"{text(d.get('status'))} (proof {text(d.get('proof_verdict'))})")
                if run
                else none,
            ),
            ("commit", f"<code>{esc(text(d.get('commit')))}</code>" if d.get("commit") else none),
            (
                "command",
                f"<code>{esc(' '.join(text(c) for c in cmd))}</code>"
                if isinstance(cmd, list)
                else none,
            ),
            (
                "signer",
                ", ".join(f"<code>{esc(s_)}</code>" for s_ in dict.fromkeys(signers))
                if signers
                else ("unsigned" if run else none),
            ),
            ("outputs", out_html),
            ("attestations", "; ".join(attests) or "none recorded"),
            ("verifications", "; ".join(verifies) or "none recorded"),
            ("restores", "; ".join(restores) or "none recorded"),
        ]
    )


def _env(d: dict[str, Any]) -> str:
    diffs = d.get("environment_differences")
    if not isinstance(diffs, list):
        return '<span class="muted">not recorded</span>'
    if not diffs:
        return "same"
    return (
        "<ul>"
        + "".join(
            f"<li>{esc(text(x.get('field')))}: recorded <code>{esc(text(x.get('recorded')))}"
            f"</code>, then <code>{esc(text(x.get('current')))}</code></li>"
            for x in diffs[:50]
            if isinstance(x, dict)
        )
        + "</ul>"
    )


def run_section(m: Model, v: RunView) -> str:
    """The run's facts, its replays (one row each, with each declared metric's drift: the
    numbers of the run's plots) and the plots."""
    drift = m.series_of(v.run_id)
    tid = f"{v.anchor}-replays"
    rows = []
    columns = [(s.file, s.key) for s in drift]
    # The reason and environment columns only where a replay has something to put there: a
    # long report has thousands of rows.
    datas = [data_of(rec) for rec in v.of("replay")]
    reasons = any(text(d.get("reason")) for d in datas)
    envs = any(d.get("environment_differences") != [] for d in datas)
    for rec in v.of("replay"):
        d = data_of(rec)
        metrics = d.get("metrics")
        got = (
            {
                (text(r.get("file")), text(r.get("key"))): r.get("delta")
                for r in metrics
                if isinstance(r, dict)
            }
            if isinstance(metrics, list)
            else {}
        )
        cells = "".join(
            f"<td>{esc(fmt_num(x))}</td>" if isinstance(x, int | float) else "<td>-</td>"
            for x in (got.get(c) for c in columns)
        )
        rows.append(
            f"<tr><td>{esc(rec.get('seq'))}</td><td>{esc(when(rec.get('time')))}</td>"
            f"{verdict_cell(d.get('verdict'))}"
            + (f"<td>{esc(text(d.get('reason')))}</td>" if reasons else "")
            + (f"<td>{_env(d)}</td>" if envs else "")
            + f"{cells}</tr>\n"
        )
    heads = [
        "seq",
        "time (UTC)",
        "verdict",
        *(["reason"] if reasons else []),
        *(["environment"] if envs else []),
        *(f"drift of {s.key}" for s in drift),
    ]
    first = 3 + reasons + envs  # the first drift column
    said = " ".join(
        x
        for x in (
            "" if reasons else "No replay gave a reason.",
            "" if envs else "Every replay ran in the recorded environment.",
        )
        if x
    )
    replays = (
        (f"<p>{said}</p>" if said else "")
        + table(
            tid,
            f"Replays of {v.run_id}" + (" and the drift of each metric" if drift else ""),
            heads,
            rows,
            numeric=frozenset({0, *range(first, len(heads))}),
            cls=f"seqcol d{first + 1}",
        )
        if rows
        else "<p>Never replayed.</p>"
    )
    plots = "".join(plot.figure(s, tid) for s in drift)
    return (
        f'<section id="{v.anchor}" class="run" aria-labelledby="{v.anchor}-h">'
        f'<h3 id="{v.anchor}-h">Run <span class="mono">{esc(v.run_id)}</span></h3>'
        f"{_run_facts(v)}{replays}{plots}</section>\n"
    )


def drift_overview(m: Model) -> str:
    """One row per plotted metric: where drift stands at a glance, each linked to its plot."""
    rows = []
    for s in m.series:
        worst = max(p.delta for p in s.points)
        beyond = sum(1 for p in s.points if p.beyond)
        step = s.step()
        last = s.points[-1]
        rows.append(
            f"<tr><td>{_run_link(m, s.run_id)}</td>"
            f'<td><a href="#{s.anchor}">{esc(s.key)}</a></td>'
            f'<td class="mono">{esc(s.file)}</td><td>{len(s.points)}</td>'
            f"<td>{esc(fmt_num(worst))}</td><td>{beyond}</td>"
            f"<td>{esc(s.points[step].time[:10]) if step is not None else '-'}</td>"
            f"<td>{verdict_badge(last.verdict)}</td></tr>\n"
        )
    verdicts = sorted({p.verdict for s in m.series for p in s.points[-1:]})
    return (
        plot.legend()
        + filter_controls("drift", "Filter metrics", verdicts, "Latest verdict", column=7)
        + table(
            "drift",
            "Every declared metric across its replays",
            [
                "run",
                "metric",
                "file",
                "replays",
                "largest drift",
                "beyond tolerance",
                "step first seen",
                "latest",
            ],
            rows,
            numeric=frozenset({3, 4, 5}),
        )
    )


def _validations(m: Model) -> str:
    rows = []
    for rec in m.validations:
        d = data_of(rec)
        raw = d.get("results")
        res: list[Any] = raw if isinstance(raw, list) else []
        bad = [r for r in res if isinstance(r, dict) and r.get("verdict") not in PASSING]
        rows.append(
            f'<tr><td class="num">{esc(rec.get("seq"))}</td>'
            f"<td>{esc(when(rec.get('time')))}</td>"
            f"<td>{verdict_badge('exact' if d.get('ok') is True else 'failed')}</td>"
            f"<td>{esc(text(d.get('seed')))}</td><td>{esc(text(d.get('shard')))}</td>"
            f'<td class="num">{len(res)}</td><td>'
            + ", ".join(_run_link(m, text(r.get("run_id"))) for r in bad[:50])
            + "</td></tr>\n"
        )
    return (
        table(
            "validations",
            "Validations",
            ["seq", "time (UTC)", "result", "seed", "shard", "runs", "not reproducing"],
            rows,
            numeric=frozenset({0, 5}),
        )
        if rows
        else "<p>No validation yet.</p>"
    )


def _quarantine(m: Model) -> str:
    rows = [
        f'<tr><td class="num">{esc(rec.get("seq"))}</td>'
        f"<td>{esc(when(rec.get('time')))}</td>"
        f"<td>{_run_link(m, text(data_of(rec).get('run_id')))}</td>"
        f"<td>{esc(text(data_of(rec).get('reason')))}</td>"
        f"<td><code>{esc(text(data_of(rec).get('quarantine')))}</code></td></tr>\n"
        for rec in m.quarantined
    ]
    return (
        table(
            "quarantine",
            "Quarantined bundles",
            ["seq", "time (UTC)", "run", "reason", "moved to"],
            rows,
            numeric=frozenset({0}),
        )
        if rows
        else "<p>No bundle has been quarantined.</p>"
    )


def render(view: ChronicleView) -> bytes:
    m = build(view.records)
    replays = [r for r in m.records if r.get("kind") == "replay"]
    passing = sum(1 for r in replays if data_of(r).get("verdict") in PASSING)
    nav = [
        ("integrity", "Integrity"),
        ("timeline-h", "Timeline"),
        ("drift-h", "Metric drift"),
        ("runs-h", "Runs"),
        ("validations-h", "Validations"),
        ("quarantine-h", "Quarantine"),
    ]
    body = [
        "<header><h1>Chronicle report</h1>",
        _banner(view),
        f"<p>{len(m.runs)} run{'s' if len(m.runs) != 1 else ''}, {len(replays)} "
        f"replay{'s' if len(replays) != 1 else ''} ({passing} reproduced, "
        f"{len(replays) - passing} did not), {len(m.validations)} "
        f"validation{'s' if len(m.validations) != 1 else ''}, "
        f"{len(m.quarantined)} quarantined.</p>",
        '<nav aria-label="Sections"><ul>'
        + "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in nav)
        + "</ul></nav></header>",
        '<main id="main">',
        plot.defs(),
        timeline(m),
        '<section aria-labelledby="drift-h"><h2 id="drift-h">Metric drift</h2>',
        drift_overview(m) if m.series else "<p>No replay has compared a numeric metric yet.</p>",
        "</section>",
        '<section aria-labelledby="runs-h"><h2 id="runs-h">Runs</h2>',
        "".join(run_section(m, v) for v in m.runs) or "<p>No run recorded.</p>",
        "</section>",
        '<section aria-labelledby="validations-h"><h2 id="validations-h">Validations</h2>',
        _validations(m),
        "</section>",
        '<section aria-labelledby="quarantine-h"><h2 id="quarantine-h">Quarantine</h2>',
        _quarantine(m),
        "</section></main>",
        f"<footer><p>From a chronicle of {view.lines} line{'s' if view.lines != 1 else ''}, "
        f"SHA-256 <code>{esc(view.sha256)}</code>. Numbers are shown to 3 significant digits "
        "(an integer of hundreds of digits too: 1e+400); the chronicle's records hold them in "
        "full.</p></footer>",
    ]
    return page("Chronicle report" + ("" if view.check.ok else " (INVALID)"), "\n".join(body))


def write_report(
    repo_top: Path, policy: Policy, out_dir: Path | None = None
) -> tuple[Path, ChronicleView, bytes]:
    """Render the repository's chronicle into `out_dir` (default: the reports directory)."""
    view = inspect(repo_top / policy.chronicle)
    html = render(view)
    target_dir = out_dir if out_dir is not None else repo_top / policy.reports_dir
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(target_dir / REPORT_NAME, html)
    except OSError as exc:
        raise CatalyticError(
            ErrorCode.IO_ERROR,
            f"cannot write {target_dir / REPORT_NAME}: {exc.strerror}",
            path=str(target_dir),
        ) from exc
    return target_dir / REPORT_NAME, view, html


__all__ = ["REPORT_NAME", "render", "write_report"]
