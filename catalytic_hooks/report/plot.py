"""A metric's drift across replays as an inline SVG: log scale, the tolerance as a line, each
point shaped (not only coloured) by its replay's verdict, the first night a step appeared
marked; with a one-sentence summary and a table carrying the same numbers."""

from __future__ import annotations

import math

from catalytic_hooks.report.model import Point, Series
from catalytic_hooks.report.page import SYMBOL, esc, fmt_num

W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 76, 16, 18, 56
# Colours are a second cue only; the shape and the legend carry the verdict.
STYLE = {
    "exact": ("circle", "#0b7a2a"),
    "within-tolerance": ("square", "#1f4fa8"),
    "drift-verified": ("triangle", "#b3261e"),
    "nondeterministic": ("diamond", "#7a4f00"),
    "failed": ("cross", "#5a1a8a"),
}
OTHER = ("circle", "#444444")


def _f(x: float) -> str:
    return f"{x:.2f}"


def shape_path(shape: str, x: float, y: float) -> str:
    r = 5.5
    if shape == "square":
        return f"M{_f(x - r)} {_f(y - r)}h{_f(2 * r)}v{_f(2 * r)}h{_f(-2 * r)}Z"
    if shape == "triangle":
        return f"M{_f(x)} {_f(y - r - 1)}L{_f(x + r + 1)} {_f(y + r)}L{_f(x - r - 1)} {_f(y + r)}Z"
    if shape == "diamond":
        return (
            f"M{_f(x)} {_f(y - r - 1)}L{_f(x + r + 1)} {_f(y)}L{_f(x)} {_f(y + r + 1)}"
            f"L{_f(x - r - 1)} {_f(y)}Z"
        )
    if shape == "cross":
        return (
            f"M{_f(x - r)} {_f(y - r)}L{_f(x + r)} {_f(y + r)}M{_f(x + r)} {_f(y - r)}"
            f"L{_f(x - r)} {_f(y + r)}"
        )
    return (
        f"M{_f(x - r)} {_f(y)}a{_f(r)} {_f(r)} 0 1 0 {_f(2 * r)} 0a{_f(r)} {_f(r)} 0 1 0 "
        f"{_f(-2 * r)} 0Z"
    )


def marker_id(verdict: str) -> str:
    return f"m-{verdict}" if verdict in STYLE else "m-other"


def defs() -> str:
    """One marker per verdict, once per page: a plot draws its points as the vertices of one
    invisible polyline per verdict, each vertex marked (a few bytes a point, for thousands)."""
    marks = []
    for verdict, (shape, colour) in [*STYLE.items(), ("other", OTHER)]:
        fill = "none" if shape == "cross" else colour
        marks.append(
            f'<marker id="m-{verdict}" viewBox="-8 -8 16 16" markerWidth="16" '
            'markerHeight="16" markerUnits="userSpaceOnUse" refX="0" '
            f'refY="0" overflow="visible"><path d="{shape_path(shape, 0, 0)}" '
            f'fill="{fill}" stroke="{colour}" stroke-width="2"/></marker>'
        )
    return (
        '<svg class="defs" width="0" height="0" aria-hidden="true" '
        'focusable="false"><defs>' + "".join(marks) + "</defs></svg>"
    )


class Scale:
    """log10 on the y axis; a drift of exactly 0 sits on the bottom row, labelled 0.

    Values are taken as recorded: `math.log10` is exact for an integer of any size, and nothing
    here raises 10 to a power, so a drift of 1.7e308 or of a 400-digit integer is drawn where it
    belongs (at the top of a taller scale), never overflowing a float."""

    def __init__(self, values: list[int | float]):
        pos = [v for v in values if v > 0]
        lo = math.floor(math.log10(min(pos))) if pos else -12
        hi = math.ceil(math.log10(max(pos))) if pos else -6
        if hi <= lo:
            hi = lo + 1
        self.zero = lo - 1  # the row for 0
        self.lo, self.hi = self.zero, hi

    def y(self, v: int | float) -> float:
        return self.row(math.log10(v) if v > 0 else self.zero)

    def row(self, exponent: float) -> float:
        """The height of 10**exponent."""
        return TOP + (self.hi - exponent) / (self.hi - self.lo) * (H - TOP - BOTTOM)

    def ticks(self) -> list[int]:
        step = max(1, math.ceil((self.hi - self.lo) / 8))
        decades = [t for t in range(self.hi, self.zero, -step) if t - self.zero >= step]
        return [*decades, self.zero]  # the 0 row is always labelled


def _x(i: int, n: int) -> float:
    return LEFT + (i + 0.5) * (W - LEFT - RIGHT) / max(n, 1)


def svg(s: Series) -> str:
    """The plot; its description is the figure's caption (`figure`), referenced, not repeated."""
    pts = s.points
    tols = [p.tolerance for p in pts if p.tolerance is not None]
    sc = Scale([p.delta for p in pts] + [t for t in tols if t > 0])
    base = H - BOTTOM
    # The scale is in the data attributes, so a reader (the tests) can turn a point's y back
    # into the drift it stands for.
    out = [
        f'<svg class="plot" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="{s.anchor}-t {s.anchor}-cap" xmlns="http://www.w3.org/2000/svg" '
        f'data-run="{esc(s.run_id)}" data-file="{esc(s.file)}" data-key="{esc(s.key)}" '
        f'data-hi="{sc.hi}" data-zero="{sc.zero}" data-top="{TOP}" '
        f'data-bottom="{base}">',
        f'<title id="{s.anchor}-t">Drift of {esc(s.key)} in {esc(s.file)} of run '
        f"{esc(s.run_id)}</title>",
    ]
    ticks = [(_f(sc.row(t)), "0" if t == sc.zero else f"1e{t}") for t in sc.ticks()]
    # Shared attributes on groups: a report draws hundreds of plots.
    out.append(
        f'<path d="{"".join(f"M{LEFT - 4} {y}H{W - RIGHT}" for y, _ in ticks)}" '
        f'stroke="#e2e2e2"/><path d="M{LEFT} {TOP}V{base}H{W - RIGHT}" '
        'fill="none" stroke="#333"/><g font-size="12" fill="#333" '
        'text-anchor="end" dominant-baseline="middle">'
        + "".join(f'<text x="{LEFT - 8}" y="{y}">{label}</text>' for y, label in ticks)
        + "</g>"
    )
    out.append(
        f'<text x="14" y="{_f((TOP + base) / 2)}" font-size="12" fill="#333" '
        f'transform="rotate(-90 14 {_f((TOP + base) / 2)})" text-anchor="middle">'
        "|drift| (log scale)</text>"
    )
    out += _tolerance(pts, sc)
    out += _dates(pts)
    step = s.step()
    if step is not None:
        x = _f(_x(step, len(pts)))
        out.append(
            f'<line class="step" x1="{x}" y1="{TOP}" x2="{x}" y2="{base}" '
            'stroke="#b3261e" stroke-dasharray="2 3"/>'
            f'<text x="{x}" y="{TOP - 4}" font-size="12" text-anchor="middle" '
            f'fill="#8a1010">step {esc(pts[step].time[:10])}</text>'
        )
    # Points grouped by verdict, in replay order: the vertices of one unstroked polyline per
    # verdict, each drawn by the verdict's marker (shape and colour).
    # _x and Scale.y inlined: a report plots tens of thousands of points.
    groups: dict[str, list[str]] = {}
    span, log10 = (W - LEFT - RIGHT) / max(len(pts), 1), math.log10
    hi, zero, rows = sc.hi, sc.zero, (H - TOP - BOTTOM) / (sc.hi - sc.lo)
    for i, p in enumerate(pts):
        lv = log10(p.delta) if p.delta > 0 else zero
        xy = f"{LEFT + (i + 0.5) * span:.2f},{TOP + (hi - lv) * rows:.2f}"
        g = groups.get(p.verdict)
        if g is None:
            groups[p.verdict] = [xy]
        else:
            g.append(xy)
    for verdict in sorted(groups):
        url = f"url(#{marker_id(verdict)})"
        out.append(
            f'<polyline class="pts" data-verdict="{esc(verdict)}" '
            f'points="{" ".join(groups[verdict])}" fill="none" stroke="none" '
            f'marker-start="{url}" marker-mid="{url}" marker-end="{url}"/>'
        )
    out.append("</svg>")
    return "".join(out)


def _tolerance(pts: list[Point], sc: Scale) -> list[str]:
    """The tolerance as a dashed line, stepping where a replay had another one (the policy can
    change it)."""
    xs = [(i, p.tolerance) for i, p in enumerate(pts) if p.tolerance is not None]
    if not xs:
        return []
    half = (W - LEFT - RIGHT) / max(len(pts), 1) / 2
    d: list[str] = []
    for k, (i, t) in enumerate(xs):
        if k == 0 or t != xs[k - 1][1]:
            d.append(f"{'M' if not d else 'L'}{_f(_x(i, len(pts)) - half)} {_f(sc.y(t))}")
        if k == len(xs) - 1 or xs[k + 1][1] != t:
            d.append(f"H{_f(_x(i, len(pts)) + half)}")
    last = xs[-1][1]
    return [
        f'<path class="tol" d="{"".join(d)}" fill="none" stroke="#333" '
        'stroke-width="1.5" stroke-dasharray="6 4"/>',
        f'<text x="{W - RIGHT - 4}" y="{_f(sc.y(last) - 6)}" font-size="12" '
        f'text-anchor="end" fill="#333">tolerance {esc(fmt_num(last))}</text>',
    ]


def _dates(pts: list[Point]) -> list[str]:
    n = len(pts)
    if not n:
        return []
    every = max(1, math.ceil(n / 6))
    regular = list(range(0, n, every))
    if len(regular) > 1 and (n - 1) - regular[-1] < every / 2:
        regular.pop()  # too close to the last label: they would overlap
    idx = sorted(set(regular) | {n - 1})
    # The last label ends at its point (centred, it would run off the right edge).
    return [
        f'<text x="{_f(_x(i, n) + (6 if i == n - 1 and n > 1 else 0))}" '
        f'y="{H - BOTTOM + 18}" font-size="12" '
        f'text-anchor="{"end" if i == n - 1 and n > 1 else "middle"}" fill="#333">'
        f"{esc(pts[i].time[:10])}</text>"
        for i in idx
    ] + [
        f'<text x="{_f((LEFT + W - RIGHT) / 2)}" y="{H - 10}" font-size="12" '
        'text-anchor="middle" fill="#333">replays, oldest first (UTC date)</text>'
    ]


def summary(s: Series) -> str:
    """One sentence a person reads instead of the plot."""
    pts = s.points
    if not pts:
        return f"{s.key} has no replay with a numeric drift."
    worst = max(pts, key=lambda p: p.delta)
    tol = pts[-1].tolerance
    span = (
        f"{len(pts)} replay{'s' if len(pts) != 1 else ''} from {pts[0].time[:10]} to "
        f"{pts[-1].time[:10]}"
    )
    beyond = [p for p in pts if p.beyond]
    step = s.step()
    if not beyond:
        return (
            f"{s.key}: {span}; every drift within the tolerance {fmt_num(tol)} "
            f"(largest {fmt_num(worst.delta)} on {worst.time[:10]})."
        )
    since = f"; a step first appeared on {pts[step].time[:10]}" if step is not None else ""
    now = "still beyond it" if pts[-1].beyond else "back within it"
    return (
        f"{s.key}: {span}; {len(beyond)} beyond the tolerance {fmt_num(tol)}, largest "
        f"{fmt_num(worst.delta)} on {worst.time[:10]}{since}; the latest replay is {now}."
    )


def legend() -> str:
    items = []
    for verdict, (shape, colour) in STYLE.items():
        fill = "none" if shape == "cross" else colour
        items.append(
            f'<li><svg width="16" height="16" viewBox="0 0 16 16" '
            f'aria-hidden="true" focusable="false"><path '
            f'd="{shape_path(shape, 8, 8)}" fill="{fill}" stroke="{colour}" '
            f'stroke-width="2"/></svg> {esc(SYMBOL[verdict])} {esc(verdict)} '
            f"({shape})</li>"
        )
    return (
        '<ul class="legend" aria-label="Point shapes">'
        + "".join(items)
        + "<li>dashed line: the tolerance; dotted red line: the first night a step appeared"
        "</li></ul>"
    )


def figure(s: Series, table_id: str) -> str:
    """The plot and its sentence; its numbers are the drift column of the run's replay table
    (`table_id`), one row per point."""
    sentence = summary(s)
    return (
        f'<figure id="{s.anchor}" aria-labelledby="{s.anchor}-cap">{svg(s)}'
        f'<figcaption id="{s.anchor}-cap">{esc(sentence)} '
        f'<a href="#{table_id}">The numbers: the table of replays above.</a>'
        "</figcaption></figure>\n"
    )
