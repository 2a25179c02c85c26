"""`catalytic report` without a browser: deterministic bytes, escaping, the CSP's hashes, the
integrity banner, the drift plot's numbers, everything readable without JavaScript. The same
page in headless Chromium is tests/test_report_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from catalytic_hooks.core.canonical import canonical_bytes, canonical_hash, sha256_hex
from catalytic_hooks.provenance.chronicle import append, head_path, read
from catalytic_hooks.report.chronicle_html import render
from catalytic_hooks.report.page import COLLAPSE_OVER, CSS, SCRIPT

from .helpers import catalytic, git

HOSTILE_RUN = "<img src=x onerror=\"document.title='pwned-run'\">"
HOSTILE_KEY = "</script><script>document.title='pwned-key'</script>"
TOL = 1e-8
# A metric that is exact, then noisy within the tolerance, then steps beyond it at replay 4.
DELTAS = [0.0, 1e-12, 3e-12, 2e-6, 3e-6, 2.5e-6]


def _verdict(d: float) -> str:
    return "exact" if d == 0 else "within-tolerance" if d <= TOL else "drift-verified"


def build_chronicle(top: Path) -> Path:
    """A chronicle written by the real appender: runs (one with a hostile id), an attestation,
    replays drifting over time, a quarantine and a validation."""
    path = top / ".catalytic/chronicle.jsonl"
    for rid, cmd in (("train", ["python", "train.py"]), (HOSTILE_RUN, ["sh", "-c", HOSTILE_KEY])):
        append(
            path,
            "run",
            {
                "run_id": rid,
                "status": "success",
                "proof_verdict": "PASS",
                "signed": True,
                "commit": "a" * 40,
                "command": cmd,
                "signer": "b" * 64,
                "metrics": ["outputs/m.json"],
                "outputs": {"outputs/m.json": "sha256:" + "c" * 64},
                "output_count": 1,
            },
        )
    append(
        path,
        "attest",
        {
            "run_ids": ["train"],
            "keyid": "b" * 64,
            "file": "attestation.intoto.json",
            "envelopes": 1,
        },
    )
    for d in DELTAS:
        rows = [
            {
                "file": "outputs/m.json",
                "key": "loss",
                "archived": 0.5,
                "replayed": 0.5 + d,
                "delta": d,
                "within_tolerance": d <= TOL,
            },
            {
                "file": "outputs/m.json",
                "key": HOSTILE_KEY,
                "archived": 1,
                "replayed": 1,
                "delta": d / 2,
                "within_tolerance": d / 2 <= TOL,
            },
        ]
        append(
            path,
            "replay",
            {
                "run_id": "train",
                "verdict": _verdict(d),
                "tolerance": TOL,
                "metrics": rows,
                "environment_differences": [
                    {"field": "python_version", "recorded": "3.11.7", "current": HOSTILE_RUN}
                ]
                if d
                else [],
                "replays": 1 if d <= TOL else 2,
                "validation": None,
            },
        )
    append(
        path,
        "replay",
        {
            "run_id": HOSTILE_RUN,
            "verdict": "failed",
            "reason": "BUNDLE_ROOT_MISMATCH",
            "quarantine": f"/q/{HOSTILE_RUN}-1",
        },
    )
    append(
        path,
        "validate",
        {
            "validation": "validate-1",
            "ok": False,
            "seed": HOSTILE_KEY,
            "mode": "sample",
            "sample": 2,
            "shard": None,
            "candidates": 2,
            "results": [
                {
                    "run_id": HOSTILE_RUN,
                    "verdict": "failed",
                    "largest_drift": None,
                    "environment": "unknown",
                    "seconds": 0.1,
                }
            ],
        },
    )
    return path


class Doc(HTMLParser):
    """The parts of the page the tests read, as a browser without JavaScript would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.raw: dict[str, str] = {"style": "", "script": ""}
        self._in: str | None = None
        self.h3: list[str] = []
        self._h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in self.raw:
            self._in = tag
        if tag == "h3":
            self._h3, self._buf = True, ""

    def handle_endtag(self, tag: str) -> None:
        self._in = None
        if tag == "h3":
            self._h3 = False
            self.h3.append(self._buf)

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in] += data
        self.text.append(data)
        if self._h3:
            self._buf += data


def parse(html: bytes) -> Doc:
    d = Doc()
    d.feed(html.decode())
    return d


def exponent_of(y: float, svg: dict[str, Any]) -> float | None:
    """log10 of the drift a point's height stands for, from the scale the plot declares (log10
    between data-zero, the row of 0, and data-hi); None for the row of 0."""
    hi, zero = int(svg["data-hi"]), int(svg["data-zero"])
    top, bottom = float(svg["data-top"]), float(svg["data-bottom"])
    if abs(y - bottom) < 1e-9:
        return None
    return hi - (y - top) / (bottom - top) * (hi - zero)


def drift_of(y: float, svg: dict[str, Any]) -> float:
    """The drift a point's height stands for."""
    e = exponent_of(y, svg)
    return 0.0 if e is None else float(10**e)


def plotted(doc: Doc) -> dict[tuple[str, str], list[tuple[float, str]]]:
    """Each plot's points, left to right: (drift read back from the height, verdict)."""
    out: dict[tuple[str, str], list[tuple[float, float, str]]] = {}
    svg: dict[str, Any] = {}
    for tag, a in doc.tags:
        if tag == "svg" and a.get("class") == "plot":
            svg = a
            out[(str(a["data-run"]), str(a["data-key"]))] = []
        elif tag == "polyline" and a.get("class") == "pts":
            for xy in str(a["points"]).split():
                x, y = map(float, xy.split(","))
                out[(str(svg["data-run"]), str(svg["data-key"]))].append(
                    (x, drift_of(y, svg), str(a["data-verdict"]))
                )
    return {k: [(d, v) for _, d, v in sorted(pts)] for k, pts in out.items()}


def same_drifts(got: list[tuple[float, str]], want: list[tuple[float, str]]) -> bool:
    """Equal verdicts, zeros exact, other drifts within the 0.01 px rounding of the plot."""
    return len(got) == len(want) and all(
        gv == wv and (gd == wd == 0 or (wd > 0 and abs(gd - wd) <= 1e-3 * wd))
        for (gd, gv), (wd, wv) in zip(got, want, strict=True)
    )


def _sha(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def assert_self_contained(doc: Doc) -> None:
    """Our one style and one script, allowed by their hashes in a CSP that forbids the rest."""
    csp = next(
        a["content"]
        for t, a in doc.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None and csp.startswith("default-src 'none';")
    assert f"style-src '{_sha(doc.raw['style'])}'" in csp and doc.raw["style"] == CSS
    assert f"script-src '{_sha(doc.raw['script'])}'" in csp
    assert sum(t == "script" for t, _ in doc.tags) == 1 and doc.raw["script"] == SCRIPT


def test_report_is_deterministic_escaped_and_self_contained(make_repo) -> None:
    repo = make_repo({"a.txt": "a\n"})
    build_chronicle(repo)
    proc = catalytic("report", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)["details"]
    html = Path(first["path"]).read_bytes()
    assert Path(first["path"]) == repo / ".catalytic/reports/report.html"
    out = repo.parent / "elsewhere"
    again = json.loads(catalytic("report", "--out", str(out), "--json", cwd=repo).stdout)
    # Byte-identical for the same chronicle, wherever it is written.
    assert (out / "report.html").read_bytes() == html
    assert again["details"]["sha256"] == first["sha256"]
    assert hashlib.sha256(html).hexdigest() == first["sha256"]
    doc = parse(html)
    # Escaping: the hostile strings are text, never markup.
    assert not any(t == "img" for t, _ in doc.tags)
    assert sum(t == "script" for t, _ in doc.tags) == 1 and doc.raw["script"] == SCRIPT
    assert HOSTILE_RUN.encode() not in html and HOSTILE_KEY.encode() not in html
    assert HOSTILE_RUN in "".join(doc.text) and HOSTILE_KEY in "".join(doc.text)
    # The CSP forbids everything but our own style and script, by hash.
    assert_self_contained(doc)
    # Nothing is loaded: no src/href pointing anywhere but an anchor of this page.
    for tag, attrs in doc.tags:
        assert "style" not in attrs and not any(k.startswith("on") for k in attrs), tag
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), (tag, href)
    assert not re.search(rb"https?://(?!www\.w3\.org/2000/svg)", html)


def test_every_run_and_point_is_in_the_static_page(tmp_path: Path) -> None:
    path = build_chronicle(tmp_path)
    from catalytic_hooks.provenance.chronicle import inspect

    html = render(inspect(path))
    doc = parse(html)
    records = read(path)
    run_ids = list(dict.fromkeys(r["data"]["run_id"] for r in records if "run_id" in r["data"]))
    assert [h.removeprefix("Run ") for h in doc.h3] == run_ids
    text = "".join(doc.text)
    assert "✓ Chronicle verified: 11 records" in text
    # The plot's points are the replays' recorded drifts, in order, with their verdicts: read
    # back from where they are drawn on the log scale.
    plots = plotted(doc)
    assert set(plots) == {("train", "loss"), ("train", HOSTILE_KEY)}
    for key, pts in plots.items():
        recorded = [
            (m["delta"], r["data"]["verdict"])
            for r in records
            if r["kind"] == "replay"
            for m in r["data"].get("metrics", [])
            if m["key"] == key[1]
        ]
        assert same_drifts(pts, recorded), (key, pts, recorded)
    assert sum(len(p) for p in plots.values()) == 2 * len(DELTAS)
    # The step is marked at the first replay beyond the tolerance, and said in words.
    assert sum(1 for t, a in doc.tags if t == "line" and a.get("class") == "step") == 2
    assert "a step first appeared on" in text and "the latest replay is still beyond it" in text
    assert "tolerance 1e-08" in text
    # A column no replay of the run fills is left out, and said so (train's replays gave no
    # reason; the hostile run's did, and recorded no environment).
    assert text.count("No replay gave a reason.") == 1
    assert "Every replay ran in the recorded environment." not in text
    assert "BUNDLE_ROOT_MISMATCH" in text and "not recorded" in text
    # Quarantine and validations have their sections.
    assert "BUNDLE_ROOT_MISMATCH" in text and "Quarantined bundles" in text
    assert "Validations" in text


def build_long_chronicle(top: Path) -> Path:
    """The test chronicle, then more verifications than a table shows open."""
    path = build_chronicle(top)
    # Written by the appender's rules in one write (an append per record fsyncs each).
    lines = path.read_bytes().split(b"\n")[:-1]
    prev, seq, last = sha256_hex(lines[-1]), len(lines), json.loads(lines[-1])
    with path.open("ab") as fh:
        for i in range(COLLAPSE_OVER):
            seq += 1
            body = {
                "seq": seq,
                "prev": prev,
                "kind": "verify",
                "time": last["time"],
                "data": {"run_id": "train", "ok": True, "code": f"PASS-{i}"},
            }
            line = canonical_bytes({**body, "self": canonical_hash(body)})
            fh.write(line + b"\n")
            prev = sha256_hex(line)
    head_path(path).write_bytes(canonical_bytes({"seq": seq, "line_sha256": prev}))
    return path


def test_a_long_table_comes_closed_with_every_row_in_the_page(tmp_path: Path) -> None:
    """Past COLLAPSE_OVER rows a table is in a closed <details> (a browser lays out every row of
    a table on screen: seconds, for a long chronicle's timeline); every row is still in the
    markup, readable without JavaScript, and short tables stay open."""
    from catalytic_hooks.provenance.chronicle import inspect

    path = build_long_chronicle(tmp_path)
    view = inspect(path)
    assert view.check.ok and view.check.records == 11 + COLLAPSE_OVER
    doc = parse(render(view))
    details = [a for t, a in doc.tags if t == "details"]
    assert details == [{"class": "rows", "id": "timeline-rows"}]
    text = "".join(doc.text)
    n = 11 + COLLAPSE_OVER
    assert f"The chronicle's records: {n} rows (open to show)" in text
    assert all(f"code=PASS-{i}" in text for i in range(COLLAPSE_OVER))
    # Rows: the timeline's (every record but none folded: the one validation made no replay of
    # these), then the run's replays, open.
    tables = [a["id"] for t, a in doc.tags if t == "table"]
    assert tables[0] == "timeline" and "run-1-replays" in tables


def test_a_broken_chronicle_is_named_first_and_only_its_verified_part_shown(make_repo) -> None:
    repo = make_repo({"a.txt": "a\n"})
    path = build_chronicle(repo)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"exact"', b'"EXACT"')  # line 4 edited
    path.write_bytes(b"\n".join(lines))
    proc = catalytic("report", "--json", cwd=repo)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["code"] == "CHRONICLE_INVALID" and doc["details"]["bad_line"] == 4
    html = Path(doc["details"]["path"]).read_bytes()
    page = parse(html)
    text = "".join(page.text)
    banner = text.index("Chronicle INVALID at line 4")
    assert banner < text.index("Timeline")  # first on the page
    assert "Only the 3 records before it are shown; 8 line(s) from there on are not." in text
    assert "EXACT" not in text
    human = catalytic("report", cwd=repo)
    assert human.returncode == 1 and "chronicle INVALID at line 4" in human.stdout


def test_replay_writes_its_report_as_html_too(make_repo, tmp_path: Path) -> None:
    from .helpers import SEED_A, signer
    from .test_validate import POLICY, make_runs  # the same real signed runs

    repo = make_repo({"README": "x\n"}, policy=POLICY)
    assert (
        catalytic("trust", "add", "ci", f"ed25519:{signer(SEED_A).public_hex}", cwd=repo).returncode
        == 0
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trust")
    make_runs(repo, ["solo"])
    proc = catalytic("replay", "_runs/solo", "--json", cwd=repo)
    rep = json.loads(proc.stdout)["details"]
    html = Path(rep["report_html"]).read_bytes()
    assert Path(rep["report_html"]).with_suffix(".md").exists()
    page = parse(html)
    assert "Replay of solo" in "".join(page.text) and "✓ exact" in "".join(page.text)
    rec = read(repo / ".catalytic/chronicle.jsonl")[-1]["data"]
    assert rec["environment_differences"] == [] and rec["commit"] == rep["commit"]
    report = catalytic("report", cwd=repo)
    assert report.returncode == 0 and "report.html" in report.stdout


def test_report_open_hands_the_page_to_the_browser(make_repo, tmp_path: Path) -> None:
    """`--open` goes through Python's webbrowser, which runs $BROWSER with the page's file URL
    (and waits for it): a script that writes down what it was given stands in for a browser."""
    import os

    repo = make_repo({"a.txt": "a\n"})
    build_chronicle(repo)
    seen = tmp_path / "seen.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SEEN"\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(browser), "SEEN": str(seen)}
    proc = catalytic("report", "--out", str(tmp_path / "out"), "--open", cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / "out" / "report.html"
    assert proc.stdout == f"report: {page}\n"
    assert seen.read_text() == page.as_uri() + "\n"
    # Without --open nothing is started.
    seen.unlink()
    assert catalytic("report", cwd=repo, env=env).returncode == 0 and not seen.exists()


# Every kind of number a chronicle record can hold (a line is its record's canonical JSON: any
# finite float, any integer of up to 4,300 digits), with the text the page shows for it.
EXTREMES = [
    (1.7e308, "1.7e+308"),  # what a replay records when a metric goes from 1.7e308 to 0
    (-1.7e308, "-1.7e+308"),
    (10**400, "1e+400"),
    (-(10**400), "-1e+400"),
    (10**4299, "1e+4299"),  # the most digits a record holds
    (5e-324, "4.94e-324"),  # the smallest subnormal
    (-0.0, "0"),
    (0, "0"),
]
EXTREME_TOLERANCES = [1e-8, 10**400, 5e-324, -0.0, 1.7e308, -(10**400), 10**4299, 0.5]


def build_extreme_chronicle(top: Path) -> Path:
    """Replays of one metric whose drifts and tolerances are those numbers, written by the real
    appender."""
    path = top / ".catalytic/chronicle.jsonl"
    append(path, "run", {"run_id": "extreme", "status": "success", "metrics": ["m.json"]})
    for (d, _), tol in zip(EXTREMES, EXTREME_TOLERANCES, strict=True):
        beyond = abs(d) > tol
        append(
            path,
            "replay",
            {
                "run_id": "extreme",
                "verdict": "drift-verified" if beyond else "within-tolerance",
                "tolerance": tol,
                "metrics": [
                    {
                        "file": "m.json",
                        "key": "loss",
                        "archived": d,
                        "replayed": 0,
                        "delta": d,
                        "within_tolerance": not beyond,
                    }
                ],
                "environment_differences": [],
            },
        )
    return path


def _cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each cell of a table's body, row by row."""
    body = html.split(f'<table id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1])
    ]


def test_any_number_a_record_can_hold_is_shown_and_plotted(make_repo) -> None:
    """Huge integers, the largest floats, a subnormal and -0.0 as drifts and tolerances: the
    chronicle stays valid, the report is written (no float overflows), each value is on the
    page as text and each point is drawn inside its plot where its logarithm says."""
    import math

    repo = make_repo({"a.txt": "a\n"})
    build_extreme_chronicle(repo)
    verify = catalytic("chronicle", "verify", cwd=repo)
    assert verify.returncode == 0 and "OK" in verify.stdout, verify.stdout + verify.stderr
    proc = catalytic("report", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = Path(json.loads(proc.stdout)["details"]["path"]).read_bytes()
    doc = parse(html)
    assert_self_contained(doc)
    text = "".join(doc.text)
    # The drift column of the run's replay table: every value, in order, as text.
    rows = _cells(html.decode(), "run-1-replays")
    assert [r[-1] for r in rows] == [shown for _, shown in EXTREMES]
    overview = _cells(html.decode(), "drift")
    assert overview[0][4] == "1e+4299"  # the largest drift
    assert "largest 1e+4299" in text and "beyond the tolerance 0.5" in text
    # Each point at the height of its logarithm (0 and -0.0 on the row of 0), every mark of the
    # plot (points, ticks, the tolerance's steps) inside it.
    svg = next(a for t, a in doc.tags if t == "svg" and a.get("class") == "plot")
    top, bottom = float(str(svg["data-top"])), float(str(svg["data-bottom"]))
    span = (int(str(svg["data-hi"])) - int(str(svg["data-zero"]))) / (bottom - top)
    points = sorted(
        tuple(map(float, xy.split(",")))
        for t, a in doc.tags
        if t == "polyline" and a.get("class") == "pts"
        for xy in str(a["points"]).split()
    )
    assert len(points) == len(EXTREMES)
    for (_, y), (d, _) in zip(points, EXTREMES, strict=True):
        got = exponent_of(y, svg)
        if d == 0:
            assert got is None, (d, y)
        else:
            assert got is not None and abs(got - math.log10(abs(d))) <= 0.006 * span, (d, got)
    tol = next(a for t, a in doc.tags if t == "path" and a.get("class") == "tol")
    marks = [y for _, y in points]
    marks += [float(a["y"] or 0) for t, a in doc.tags if t == "text" and a.get("y")]
    marks += [float(v) for v in re.findall(r"[ML][\d.]+ ([\d.]+)", str(tol["d"]))]
    assert all(0 <= y <= bottom + 60 for y in marks)  # the dates sit below the axis
    assert all(top <= y <= bottom for y in marks[: len(points)])


def test_replay_and_validation_pages_show_any_number() -> None:
    from catalytic_hooks.report.replay_html import render_replay_html, render_validation_html

    metrics = [
        {"file": "m.json", "key": f"k{i}", "archived": d, "replayed": 0, "delta": abs(d)}
        for i, (d, _) in enumerate(EXTREMES)
    ]
    html = render_replay_html(
        {"run_id": "x", "verdict": "drift-verified", "tolerance": 10**400, "metrics": metrics}
    ).decode()
    # Largest deltas first, compared exactly (a 4,300-digit integer above 1.7e308).
    deltas = [r[4] for r in _cells(html, "metrics")]
    assert deltas == ["1e+4299", "1e+400", "1e+400", "1.7e+308", "1.7e+308", "4.94e-324", "0", "0"]
    assert "1e+400" in "".join(parse(html.encode()).text)  # the tolerance
    results = [
        {"run_id": f"r{i}", "verdict": "drift-verified", "largest_drift": d, "seconds": 1}
        for i, (d, _) in enumerate(EXTREMES)
    ]
    html = render_validation_html({"results": results, "ok": False}).decode()
    assert [r[2] for r in _cells(html, "results")] == [shown for _, shown in EXTREMES]
