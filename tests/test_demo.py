"""The main job: `catalytic demo` end to end, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import catalytic


def test_demo_end_to_end(tmp_path: Path) -> None:
    proc = catalytic("demo", "--json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    failed = [s for s in doc["details"]["steps"] if not s["ok"]]
    assert proc.returncode == 0 and doc["ok"] is True, failed
    titles = [s["step"] for s in doc["details"]["steps"]]
    assert "the pre-commit hook refuses the bad commit" in titles
    assert "the pre-commit hook accepts the clean commit" in titles
