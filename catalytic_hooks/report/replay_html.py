"""One replay's report (and one validation's summary) as HTML, beside the Markdown and JSON.

The input is the report document the replay engine writes as JSON; every string in it came from
a bundle or a command and is escaped."""

from __future__ import annotations

from typing import Any

from catalytic_hooks.report.page import esc, fmt_num, page, table, verdict_badge


def _s(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def _short(h: Any) -> str:
    s = _s(h)
    return s[7:19] if s.startswith("sha256:") else s[:12] or "missing"


def render_replay_html(rep: dict[str, Any]) -> bytes:
    run_id = _s(rep.get("run_id"))
    command = rep.get("command")
    cmd = " ".join(_s(c) for c in command) if isinstance(command, list) else _s(command)
    facts = [
        ("verdict", verdict_badge(rep.get("verdict", "?"))),
        ("reason", esc(_s(rep.get("reason")) or "none")),
        ("bundle root", f"<code>{esc(_s(rep.get('bundle_root')))}</code>"),
        ("commit", f"<code>{esc(_s(rep.get('commit')))}</code>"),
        ("command", f"<code>{esc(cmd)}</code>"),
        ("replays", esc(_s(rep.get("replays", 0)))),
        ("metric tolerance", esc(fmt_num(rep.get("tolerance")))),
        ("started", esc(_s(rep.get("started_at")))),
        ("finished", esc(_s(rep.get("finished_at")))),
    ]
    body = [
        f'<header><h1>Replay of <span class="mono">{esc(run_id)}</span></h1></header>',
        '<main id="main">',
        '<dl class="facts">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl>",
        "<h2>Environment</h2>",
    ]
    env = rep.get("environment")
    diffs = env.get("differences", []) if isinstance(env, dict) else []
    if not diffs:
        body.append("<p>Same as recorded.</p>")
    else:
        rows = [
            f"<tr><td>{esc(_s(d.get('field')))}</td><td>{esc(_s(d.get('recorded')))}</td>"
            f"<td>{esc(_s(d.get('current')))}</td></tr>\n"
            for d in diffs
            if isinstance(d, dict)
        ]
        body.append(table("env", "Environment differences", ["field", "recorded", "now"], rows))
    body.append("<h2>Outputs</h2>")
    rows = []
    for o in rep.get("outputs", []):
        match = "yes" if o.get("match") else "no"
        rows.append(
            f'<tr><td class="mono">{esc(_s(o.get("path")))}</td>'
            f"<td><code>{esc(_short(o.get('expected')))}</code></td>"
            f"<td><code>{esc(_short(o.get('replay1')))}</code></td>"
            f"<td><code>{esc(_short(o.get('replay2')) if o.get('replay2') else '-')}"
            f"</code></td><td>{match}</td></tr>\n"
        )
    body.append(
        table(
            "outputs",
            "Output hashes (first 12 hex digits)",
            ["path", "archived", "replay 1", "replay 2", "match"],
            rows,
        )
        if rows
        else "<p>No outputs were compared.</p>"
    )
    metrics = [m for m in rep.get("metrics", []) if isinstance(m, dict)]
    if metrics:
        ordered = sorted(
            (m for m in metrics if isinstance(m.get("delta"), int | float)),
            key=lambda m: -m["delta"],  # exact: a delta may be an integer beyond any float
        ) + [m for m in metrics if not isinstance(m.get("delta"), int | float)]
        rows = [
            f'<tr><td class="mono">{esc(_s(m.get("file")))}</td>'
            f'<td class="mono">{esc(_s(m.get("key")))}</td>'
            f'<td class="num">{esc(_s(m.get("archived")))}</td>'
            f'<td class="num">{esc(_s(m.get("replayed")))}</td>'
            f'<td class="num" data-sort="{esc(_s(m.get("delta")))}">'
            f"{esc(fmt_num(m.get('delta')))}</td>"
            f"<td>{'yes' if m.get('within_tolerance') else 'no'}</td></tr>\n"
            for m in ordered
        ]
        body += [
            "<h2>Metrics</h2>",
            table(
                "metrics",
                "Metrics, largest deltas first",
                ["file", "key", "archived", "replayed", "delta", "within tolerance"],
                rows,
                numeric=frozenset({2, 3, 4}),
            ),
        ]
    body.append("</main>")
    return page(f"Replay of {run_id}: {_s(rep.get('verdict'))}", "\n".join(body))


def render_validation_html(summary: dict[str, Any]) -> bytes:
    """A validation's summary: one row per replayed run."""
    rows = []
    for r in summary.get("results", []):
        drift = r.get("largest_drift")
        rows.append(
            f'<tr data-kind="{esc(_s(r.get("verdict")))}">'
            f'<td class="mono">{esc(_s(r.get("run_id")))}</td>'
            f'<td data-sort="{esc(_s(r.get("verdict")))}">{verdict_badge(r.get("verdict"))}'
            f'</td><td class="num" data-sort="{esc(_s(drift) if drift is not None else "")}">'
            f"{esc(fmt_num(drift) if drift is not None else '-')}</td>"
            f"<td>{esc(_s(r.get('environment')))}</td>"
            f'<td class="num" data-sort="{esc(_s(r.get("seconds")))}">'
            f"{esc(fmt_num(r.get('seconds')))} s</td>"
            f"<td>{esc(_s(r.get('reason')) or '')}</td></tr>\n"
        )
    ok = bool(summary.get("ok"))
    banner = (
        '<p class="banner ok" role="status">✓ Every replayed run reproduces.</p>'
        if ok
        else '<p class="banner bad" role="status">✗ Some runs no longer reproduce: '
        + esc(
            ", ".join(
                _s(r.get("run_id")) for r in summary.get("results", []) if not r.get("passing")
            )
        )
        + "</p>"
    )
    facts = [
        ("seed", _s(summary.get("seed"))),
        ("mode", _s(summary.get("mode"))),
        ("shard", _s(summary.get("shard") or "all")),
        ("candidates", _s(summary.get("candidates"))),
        ("picked", _s(len(summary.get("results", [])))),
        ("started", _s(summary.get("started_at"))),
        ("finished", _s(summary.get("finished_at"))),
    ]
    body = [
        "<header><h1>Validation</h1></header>",
        '<main id="main">',
        banner,
        '<dl class="facts">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
        + "</dl>",
        table(
            "results",
            "Replayed runs",
            ["run", "verdict", "largest metric drift", "environment", "time", "reason"],
            rows,
            numeric=frozenset({2, 4}),
        ),
        "</main>",
    ]
    return page("Validation: " + ("pass" if ok else "FAIL"), "\n".join(body))
