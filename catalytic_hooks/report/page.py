"""The page every HTML report shares: one self-contained document, its CSS and script inline and
allowed by hash in a Content Security Policy that forbids everything else.

Why each choice:
- `default-src 'none'` plus the two hashes: nothing is fetched (the page opens from disk and
  makes no request), and no script or style runs but ours; markup injected through a run id or a
  metric name could not execute even if escaping failed.
- No `style=` attributes anywhere (a hashed style-src does not cover them), no inline event
  handlers, no data in the script: the script reads the DOM, so a string can never end it.
- Everything works with JavaScript off; the script only adds sorting and filtering, and its
  controls stay `hidden` until it runs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from decimal import Decimal
from html import escape

from catalytic_hooks.core.version import VERSION

# `content-visibility: auto` on the sections: the browser lays out only what is on screen while it
# parses a long report (10,000 records: from tens of seconds to a few here), and the skipped
# content stays in the accessibility tree and find-in-page.
CSS = """\
:root{--fg:#1a1a1a;--muted:#4a4a4a;--bg:#fff;--line:#c8c8c8;--soft:#f3f4f6;--link:#0645ad;
--ok:#0b5d1e;--okbg:#e3f4e7;--bad:#8a1010;--badbg:#fde8e8;--warn:#6b4b00;--warnbg:#fff4d6}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
a{color:var(--link)}
a:focus,button:focus,input:focus,select:focus,[tabindex]:focus{outline:3px solid #1a56db;
outline-offset:2px}
.skip{position:absolute;left:-9999px;top:0;background:#fff;padding:.5em}
.skip:focus{left:.5em}
header,main,footer{max-width:1200px;margin:0 auto;padding:0 1rem}
header h1{font-size:1.6rem;margin:1rem 0 .5rem}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;padding:0;margin:.5rem 0}
main>section,section.run{content-visibility:auto;contain-intrinsic-size:auto 1200px}
h2{font-size:1.3rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line)}
h3{font-size:1.1rem;margin:1.5rem 0 .25rem}
.banner{border:2px solid;padding:.75rem 1rem;margin:1rem 0;font-weight:600}
.banner.ok{border-color:var(--ok);background:var(--okbg);color:var(--ok)}
.banner.bad{border-color:var(--bad);background:var(--badbg);color:var(--bad)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:var(--soft)}
th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;
color:var(--fg);text-align:inherit}
details.rows{margin:.5rem 0}
details.rows>summary{cursor:pointer;font-weight:600;padding:.25rem 0}
summary:focus{outline:3px solid #1a56db;outline-offset:2px}
td.num,.seqcol td:first-child,.d4 td:nth-child(n+4),.d5 td:nth-child(n+5),
.d6 td:nth-child(n+6){text-align:right;
font-variant-numeric:tabular-nums}
svg.defs{position:absolute;width:0;height:0;overflow:hidden}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;
overflow-wrap:anywhere}
.v{display:inline-block;padding:0 .4em;border:1px solid;border-radius:3px;font-weight:600;
white-space:nowrap}
td.vc{font-weight:600;white-space:nowrap}
.pass{color:var(--ok);background:var(--okbg)}
.fail{color:var(--bad);background:var(--badbg)}
.other{color:var(--warn);background:var(--warnbg)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.5rem 0}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
figure{margin:1rem 0}
figcaption{color:var(--muted)}
svg.plot{width:100%;max-width:720px;height:auto;border:1px solid var(--line);background:#fff}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1rem}
.legend svg{vertical-align:middle}
.controls{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin:.5rem 0}
.controls[hidden]{display:none}
.muted{color:var(--muted)}
footer{margin:2rem auto;color:var(--muted);font-size:.85rem}
@media (max-width:600px){body{font-size:15px}dl.facts{grid-template-columns:1fr}
dl.facts dd{margin-bottom:.4rem}header h1{font-size:1.3rem}}
"""

# Sorting by a column (click or Enter/Space on its header button) and filtering rows by text and
# by kind/verdict. Reads only the DOM: values to sort by are in data-sort attributes. The header
# buttons are made here, since only the script can sort: a long report has a thousand headers, and
# markup nobody without JavaScript could use would only slow its loading.
SCRIPT = """\
(function(){
"use strict";
function key(cell){var s=cell.getAttribute("data-sort");return s===null?cell.textContent:s;}
function num(s){s=s.trim();return s===""?NaN:Number(s);}
function cmp(a,b){var x=num(a),y=num(b);
if(!isNaN(x)&&!isNaN(y)){return x-y;}return a<b?-1:a>b?1:0;}
document.querySelectorAll("table.sortable").forEach(function(table){
var heads=table.querySelectorAll("thead th");
heads.forEach(function(th,i){var b=document.createElement("button");b.type="button";
b.textContent=th.textContent;th.textContent="";th.appendChild(b);
b.addEventListener("click",function(){var body=table.tBodies[0];
var rows=Array.prototype.slice.call(body.rows);
var asc=th.getAttribute("aria-sort")!=="ascending";
heads.forEach(function(h){h.removeAttribute("aria-sort");});
th.setAttribute("aria-sort",asc?"ascending":"descending");
rows.sort(function(r1,r2){var c=cmp(key(r1.cells[i]),key(r2.cells[i]));return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll(".controls[data-for]").forEach(function(box){
var table=document.getElementById(box.getAttribute("data-for"));if(!table){return;}
var col=parseInt(box.getAttribute("data-col"),10)||0;
var text=box.querySelector("input"),pick=box.querySelector("select"),
out=box.querySelector("output"),rows=table.closest("details");box.hidden=false;
function apply(){var q=text.value.toLowerCase(),k=pick?pick.value:"",n=0;
if(rows&&(q||k)){rows.open=true;}
Array.prototype.forEach.call(table.tBodies[0].rows,function(r){
var c=r.cells[col],kind=c?c.textContent.trim().replace(/^[^a-z]+ /,""):"";
var show=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!k||kind===k);
r.hidden=!show;if(show){n++;}});if(out){out.textContent=n+" shown";}}
text.addEventListener("input",apply);if(pick){pick.addEventListener("change",apply);}});
})();
"""


_SPECIAL = re.compile(r"[&<>\"']")


def esc(value: object) -> str:
    """Any value as HTML text or attribute content (quotes escaped too)."""
    s = value if isinstance(value, str) else str(value)
    # Most strings (dates, numbers, ids) need nothing: one C-level search instead of 5 passes.
    return escape(s, quote=True) if _SPECIAL.search(s) else s


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CSP = (
    f"default-src 'none'; style-src '{_hash(CSS)}'; script-src '{_hash(SCRIPT)}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'"
)


def page(title: str, body: str) -> bytes:
    """The whole document. `body` is markup built by this package from escaped strings."""
    doc = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f'<meta name="generator" content="catalytic-hooks {esc(VERSION)}">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        '<a class="skip" href="#main">Skip to the content</a>\n'
        f"{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
    # A lone surrogate in a hostile string cannot be encoded; it becomes `?`, never a crash.
    return doc.encode("utf-8", "replace")


PASSING = ("exact", "within-tolerance")
FAILING = ("drift-verified", "nondeterministic", "failed")
# Verdicts are told apart by their word and by a symbol, never by colour alone.
SYMBOL = {
    "exact": "✓",
    "within-tolerance": "≈",
    "drift-verified": "✗",
    "nondeterministic": "?",
    "failed": "✗",
}


_BADGES: dict[str, str] = {}  # a report shows the same few verdicts thousands of times
_CELLS: dict[str, str] = {}


def verdict_class(v: str) -> str:
    return "pass" if v in PASSING else "fail" if v in FAILING else "other"


def verdict_cell(verdict: object) -> str:
    """A table cell holding a verdict as its badge would (one element, not two: a long report
    has thousands)."""
    v = verdict if isinstance(verdict, str) else str(verdict)
    cell = _CELLS.get(v)
    if cell is None:
        cell = _CELLS[v] = (
            f'<td class="vc {verdict_class(v)}">{esc(SYMBOL.get(v, "•"))} {esc(v)}</td>'
        )
    return cell


def verdict_badge(verdict: object) -> str:
    v = verdict if isinstance(verdict, str) else str(verdict)
    badge = _BADGES.get(v)
    if badge is None:
        badge = _BADGES[v] = (
            f'<span class="v {verdict_class(v)}">{esc(SYMBOL.get(v, "•"))} {esc(v)}</span>'
        )
    return badge


COLLAPSE_OVER = 100
NUM = ' class="num"'


def table(
    table_id: str,
    caption: str,
    heads: list[str],
    rows: list[str],
    *,
    sortable: bool = True,
    numeric: frozenset[int] = frozenset(),
    cls: str = "",
    collapse_over: int | None = COLLAPSE_OVER,
) -> str:
    """A table in a keyboard-scrollable region; `rows` are finished `<tr>` markup.

    A table of more than `collapse_over` rows comes closed in a `<details>` (opened by a click,
    by the keyboard, by a link to it or by find-in-page; no script needed): a browser lays out
    every row of a table on screen, so the timeline of a 10,000-record chronicle, open, took
    seconds before the page could be read at all."""
    classes = " ".join(c for c in ("sortable" if sortable else "", cls) if c)
    # Sortable headers get their buttons from the script (SCRIPT).
    ths = "".join(
        f'<th scope="col"{NUM if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(heads)
    )
    attr = f' class="{classes}"' if classes else ""
    region = (
        f'<div class="scroll" role="region" tabindex="0" '
        f'aria-labelledby="{table_id}-cap">'
        f'<table id="{table_id}"{attr}><caption id="{table_id}-cap">{esc(caption)}'
        f"</caption><thead><tr>{ths}</tr></thead>"
        f"<tbody>\n{''.join(rows)}</tbody></table></div>"
    )
    if collapse_over is not None and len(rows) > collapse_over:
        return (
            f'<details class="rows" id="{table_id}-rows"><summary>{esc(caption)}: '
            f"{len(rows):,} rows (open to show)</summary>{region}</details>\n"
        )
    return region + "\n"


def filter_controls(
    table_id: str,
    label: str,
    kinds: list[str] | None = None,
    kind_label: str = "Kind",
    column: int = 0,
) -> str:
    """Text (and optional kind) filter for a table, hidden until the script shows it; a row's
    kind is the text of its cell `column` (without a leading verdict symbol)."""
    pick = ""
    if kinds:
        opts = "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in kinds)
        pick = (
            f'<label>{esc(kind_label)} <select id="{table_id}-kind">'
            f'<option value="">all</option>{opts}</select></label>'
        )
    return (
        f'<div class="controls" data-for="{table_id}" data-col="{column}" hidden>'
        f'<label>{esc(label)} <input type="search" id="{table_id}-q"></label>{pick}'
        f'<output aria-live="polite" for="{table_id}-q"></output></div>\n'
    )


def fmt_num(x: object) -> str:
    """A number for people: 3 significant digits; anything else as text."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if x == 0:
        return "0"
    try:
        return f"{x:.3g}"
    except OverflowError:
        # A record may hold any JSON integer (hundreds of digits), beyond every float: rounded
        # from its digits instead, spelt as a float would be (`1e+400`, not `1.00e+400`).
        return _TRAILING_ZEROS.sub("e", f"{Decimal(x):.3g}")


_TRAILING_ZEROS = re.compile(r"\.?0+e")
