"""The failure-mode table of the seed specification, row by row, through the real CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import DEFAULT_POLICY, catalytic


def _add(r: Path) -> None:
    (r / "rogue.txt").write_text("rogue")


def _modify(r: Path) -> None:
    (r / "source.py").write_text("changed")


def _remove(r: Path) -> None:
    (r / "deleted.txt").unlink()


def _residue(r: Path) -> None:
    (r / "_tmp/sub").mkdir(parents=True)
    (r / "_tmp/sub/work.txt").write_text("w")
    os.symlink("/etc/passwd", r / "_tmp/link")


def _durable(r: Path) -> None:
    (r / "outputs").mkdir(exist_ok=True)
    (r / "outputs/new.txt").write_text("new")
    (r / "outputs/keep.txt").write_text("rewritten")


def _nothing(r: Path) -> None:
    pass


ROWS: dict[str, tuple[Callable[[Path], None], str, dict[str, list[str]] | None, list[str]]] = {
    "file-added": (_add, "FAIL", {"added": ["rogue.txt"], "removed": [], "changed": []}, []),
    "file-modified": (_modify, "FAIL", {"added": [], "removed": [], "changed": ["source.py"]}, []),
    "file-removed": (_remove, "FAIL", {"added": [], "removed": ["deleted.txt"], "changed": []}, []),
    "tmp-residue": (
        _residue,
        "FAIL",
        {"added": [], "removed": [], "changed": []},
        ["_tmp/link", "_tmp/sub/work.txt"],
    ),
    "durable-only": (_durable, "PASS", None, []),
    "no-changes": (_nothing, "PASS", None, []),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_failure_mode_table(make_repo, tmp_path: Path, row: str) -> None:
    mutate, verdict, diff, residue = ROWS[row]
    repo = make_repo(
        {"source.py": "print()", "deleted.txt": "d", "outputs/keep.txt": "k"}, policy=DEFAULT_POLICY
    )
    pre, post, purity, proof = (tmp_path / n for n in ("pre", "post", "purity", "proof"))
    assert catalytic("digest", "--pre", str(pre), cwd=repo).returncode == 0
    mutate(repo)
    assert catalytic("digest", "--post", str(post), cwd=repo).returncode == 0
    scan = catalytic("purity-scan", str(pre), str(post), "--output", str(purity), cwd=repo)
    assert scan.returncode == (0 if verdict == "PASS" else 1), scan.stdout + scan.stderr
    scan_doc = json.loads(purity.read_text())
    assert scan_doc["verdict"] == verdict
    assert scan_doc["tmp_residue"] == residue
    expected_violations = sorted(p for paths in (diff or {}).values() for p in paths)
    assert scan_doc["violations"] == expected_violations
    res = catalytic(
        "restore-proof", str(pre), str(post), str(purity), "--output", str(proof), cwd=repo
    )
    assert res.returncode == (0 if verdict == "PASS" else 1)
    proof_doc = json.loads(proof.read_text())
    assert proof_doc["verdict"] == verdict
    assert proof_doc.get("diff_summary") == diff
    assert proof_doc["tmp_roots"] == ["_tmp"]
    assert proof_doc["durable_roots"] == sorted(
        [
            "outputs",
            "_runs",
            ".catalytic/chronicle.jsonl",
            ".catalytic/chronicle.jsonl.head",
            ".catalytic/reports",
            ".catalytic/quarantine",
            ".catalytic/archives",
        ]
    )
    # receipts are canonical JSON bytes
    raw = proof.read_bytes()
    assert (
        raw
        == json.dumps(proof_doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_seed_style_flags(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a", "LAW/CONTRACTS/_runs/x": "r", "cache/c": "c"})
    out = tmp_path / "pre.json"
    proc = catalytic(
        "digest",
        "--repo-root",
        str(repo),
        "--pre-digest",
        str(out),
        "--exclusions",
        ".git,cache",
        "--durable-roots",
        "LAW/CONTRACTS/_runs",
        "--tmp-roots",
        "_tmp,_scratch",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert list(doc["file_manifest"]) == ["a.txt"]
    import hashlib

    spec = json.dumps(
        sorted([".git", "cache", "LAW/CONTRACTS/_runs", "_tmp", "_scratch"]), separators=(",", ":")
    ).encode()
    assert doc["exclusions_spec_hash"] == hashlib.sha256(spec).hexdigest()


def test_mismatched_exclusions_fail_closed(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a"})
    pre, post, purity = tmp_path / "pre", tmp_path / "post", tmp_path / "purity"
    catalytic("digest", "--output", str(pre), "--exclusions", "x", cwd=repo)
    catalytic("digest", "--output", str(post), "--exclusions", "y", cwd=repo)
    catalytic("purity-scan", str(pre), str(post), "--output", str(purity), cwd=repo)
    err = tmp_path / "ERR.json"
    proc = catalytic(
        "restore-proof",
        str(pre),
        str(post),
        str(purity),
        "--json",
        "--error-receipt",
        str(err),
        cwd=repo,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["code"] == "RESTORE_PROOF_GENERATION_FAILED"
    assert json.loads(err.read_text())["error_code"] == "RESTORE_PROOF_GENERATION_FAILED"


def test_receipt_inside_durable_root_is_not_residue(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    (repo / "outputs").mkdir()
    assert catalytic("digest", "--output", "outputs/PRE.json", cwd=repo).returncode == 0
    assert catalytic("digest", "--output", "outputs/POST.json", cwd=repo).returncode == 0
    proc = catalytic(
        "purity-scan",
        "outputs/PRE.json",
        "outputs/POST.json",
        "--output",
        "outputs/PURITY.json",
        cwd=repo,
    )
    assert proc.returncode == 0


def test_bad_receipt_input_is_a_clean_error(make_repo, tmp_path: Path) -> None:
    repo = make_repo({"a.txt": "a"})
    bad = tmp_path / "bad.json"
    bad.write_text('{"digest": "x", "digest": "y"}')
    proc = catalytic("purity-scan", str(bad), str(bad), "--json", cwd=repo)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["code"] == "JSON_INVALID"
    assert "Traceback" not in proc.stderr
    missing = catalytic("purity-scan", "nope.json", "nope.json", cwd=repo)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
