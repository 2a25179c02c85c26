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
    # the team-level gate: the server refuses a --no-verify push, accepts a signed amendment
    server = {s["step"]: s for s in doc["details"]["steps"]}
    assert server["the server refuses the --no-verify push"]["exit"] == 1
    assert server["the server accepts the signed amendment"]["exit"] == 0
    assert server["the first push of the adopted history is accepted"]["exit"] == 0
    # It ends with the chronicle's report, kept outside the removed repository.
    report = Path(doc["details"]["report"])
    assert titles[-1].startswith("render the chronicle as one HTML page")
    html = report.read_bytes()
    assert b"Chronicle verified" in html and b"demo-001" in html
    import shutil

    shutil.rmtree(report.parent)
