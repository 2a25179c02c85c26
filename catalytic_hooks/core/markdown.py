"""Text from a run inside the Markdown this tool writes (replay and validation reports).

GitHub renders those reports as Markdown with HTML, where a name, command, metric key or value
taken from a bundle could otherwise be a link, an image (a request to a server of the bundle's
choosing), bold "PASS", or a `<!--` that hides what follows. Such text goes in a code span
(`literal`), and in a table cell also without `|` or line breaks (`cell`).
"""

from __future__ import annotations

import re
from typing import Any


def cell(v: Any) -> str:
    """A table cell's text: a `|` or a line break would end the cell or the table."""
    return str(v).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def literal(v: Any, *, in_cell: bool = False) -> str:
    """`v` as a code span, its fence longer than any run of backticks inside it."""
    text = str(v).replace("\n", " ").replace("\r", " ")
    fence = "`" * (max((len(m) for m in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return cell(span) if in_cell else span  # in a table a `|` ends the cell, code span or not
