"""What the report shows, built from the chronicle's records alone.

A chronicle is data from a repository anyone may have committed to, so nothing here trusts a
field's type: every value is checked, and a record of a kind this version does not know still
appears in the timeline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple


def text(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def when(v: Any) -> str:
    """A record's time as people read it: `2026-12-04 20:06:50` (UTC)."""
    return text(v)[:19].replace("T", " ")


def number(v: Any) -> int | float | None:
    """A recorded number as it is, never through float(): a record may hold any JSON integer, up
    to hundreds of digits, and comparisons, `math.log10` and `fmt_num` take it exactly."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v if isinstance(v, int) or math.isfinite(v) else None


def data_of(rec: dict[str, Any]) -> dict[str, Any]:
    d = rec.get("data")
    return d if isinstance(d, dict) else {}


def run_ids_of(rec: dict[str, Any]) -> list[str]:
    d = data_of(rec)
    ids: list[str] = []
    if isinstance(d.get("run_id"), str):
        ids.append(d["run_id"])
    if isinstance(d.get("run_ids"), list):
        ids += [r for r in d["run_ids"] if isinstance(r, str) and r not in ids]
    return ids


@dataclass
class RunView:
    run_id: str
    anchor: str
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return self.records.get(kind, [])


class Point(NamedTuple):
    """A tuple, not a frozen dataclass: a report of 10,000 records makes tens of thousands."""

    seq: int
    time: str
    delta: int | float  # |drift| as recorded (see `number`)
    archived: Any
    replayed: Any
    verdict: str
    tolerance: int | float | None
    beyond: bool  # the drift exceeds the tolerance


@dataclass
class Series:
    """One declared metric of one run across its replays."""

    run_id: str
    file: str
    key: str
    anchor: str
    points: list[Point] = field(default_factory=list)

    def step(self) -> int | None:
        """The first replay whose drift went beyond the tolerance after one within it (or the
        first replay, when it was beyond from the start): the night a step appeared."""
        for i, p in enumerate(self.points):
            if p.beyond and (i == 0 or not self.points[i - 1].beyond):
                return i
        return None


@dataclass
class Model:
    records: list[dict[str, Any]]
    runs: list[RunView]
    series: list[Series]
    quarantined: list[dict[str, Any]]
    validations: list[dict[str, Any]]
    kinds: list[str]

    def run(self, run_id: str) -> RunView | None:
        return self._index.get(run_id)

    def series_of(self, run_id: str) -> list[Series]:
        return self._series.get(run_id, [])

    def __post_init__(self) -> None:
        self._index = {r.run_id: r for r in self.runs}
        self._series: dict[str, list[Series]] = {}
        for s in self.series:
            self._series.setdefault(s.run_id, []).append(s)


def build(records: list[dict[str, Any]]) -> Model:
    runs: dict[str, RunView] = {}
    series: dict[tuple[str, str, str], Series] = {}
    quarantined, validations = [], []
    for rec in records:
        kind = text(rec.get("kind"))
        for rid in run_ids_of(rec):
            view = runs.get(rid)
            if view is None:
                # Anchors are numbered, never made from the (hostile) run id.
                view = runs[rid] = RunView(rid, f"run-{len(runs) + 1}")
            view.records.setdefault(kind, []).append(rec)
        d = data_of(rec)
        if kind == "validate":
            validations.append(rec)
        if kind != "replay":
            continue
        if d.get("quarantine"):
            quarantined.append(rec)
        _add_points(series, rec, d)
    order = {rid: i for i, rid in enumerate(runs)}
    ordered = sorted(series.values(), key=lambda s: (order.get(s.run_id, 0), s.file, s.key))
    for i, s in enumerate(ordered, 1):
        s.anchor = f"drift-{i}"
    kinds = sorted({text(r.get("kind")) for r in records})
    return Model(records, list(runs.values()), ordered, quarantined, validations, kinds)


def _add_points(
    series: dict[tuple[str, str, str], Series], rec: dict[str, Any], d: dict[str, Any]
) -> None:
    rid = text(d.get("run_id"))
    rows = d.get("metrics")
    if not isinstance(rows, list):
        return
    seq = rec.get("seq")
    seq = seq if isinstance(seq, int) else 0
    time, verdict = text(rec.get("time")), text(d.get("verdict"))
    tol = number(d.get("tolerance"))
    for row in rows:
        if not isinstance(row, dict):
            continue
        delta = number(row.get("delta"))
        if delta is None:
            continue
        k = (rid, text(row.get("file")), text(row.get("key")))
        s = series.get(k)
        if s is None:
            s = series[k] = Series(*k, anchor="")
        delta = abs(delta)
        s.points.append(
            Point(
                seq,
                time,
                delta,
                row.get("archived"),
                row.get("replayed"),
                verdict,
                tol,
                tol is not None and delta > tol,
            )
        )
