"""`catalytic validate`: the seeded pick, shards, parallel replays, the summary, the exit code and
the chronicle. Runs are real signed bundles replayed by the real command in real worktrees."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.provenance.chronicle import read
from catalytic_hooks.provenance.environment import fingerprint
from catalytic_hooks.replay.validate import (
    Candidate,
    ValidateOptions,
    night_of,
    parse_shard,
    pick_coverage,
    pick_sample,
    plan,
    rank,
    shard,
)

from .helpers import SEED_A, catalytic, git, make_bundle, signer

POLICY = """\
durable_roots = ["outputs"]
run_roots = ["_runs"]
trusted_validators = ".catalytic/allowed_validators"
"""

IDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _writer(rid: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import pathlib; p = pathlib.Path('outputs'); "
        f"p.mkdir(exist_ok=True); (p / {rid + '.txt'!r}).write_text('result {rid}')",
    ]


def make_runs(repo: Path, ids: list[str], drifted: frozenset[str] = frozenset()) -> None:
    """Signed runs whose command writes outputs/<id>.txt; a drifted run recorded other bytes
    than its command produces (as if an input changed since)."""
    head = git(repo, "rev-parse", "HEAD").stdout.strip()
    env = fingerprint(repo, (), 7)
    for rid in ids:
        spec = {
            "task_id": rid,
            "command": _writer(rid),
            "cwd": ".",
            "git_commit": head,
            "seed": 7,
            "environment": env,
            "metrics": [],
        }
        data = b"recorded long ago" if rid in drifted else f"result {rid}".encode()
        make_bundle(
            repo / "_runs" / rid,
            repo,
            {f"outputs/{rid}.txt": data},
            task_spec=canonical_bytes(spec),
        )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "runs")


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo({"README": "x\n"}, policy=POLICY)
    a = signer(SEED_A)
    assert catalytic("trust", "add", "ci", f"ed25519:{a.public_hex}", cwd=r).returncode == 0
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "trust")
    return r


def validate(repo: Path, *args: str) -> tuple[int, dict]:
    proc = catalytic("validate", *args, "--json", cwd=repo)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def picked(doc: dict) -> list[str]:
    return [r["run_id"] for r in doc["details"]["results"]]


def test_sample_is_stable_and_shards_replay_it_exactly_once(repo: Path) -> None:
    make_runs(repo, IDS)
    code, first = validate(repo, "--sample", "3", "--seed", "7", "--jobs", "2")
    assert code == 0 and first["code"] == "PASS"
    # The documented rule, computed independently: the 3 lowest HMAC-SHA256(seed, run id).
    import hashlib
    import hmac

    expect = sorted(IDS, key=lambda r: hmac.new(b"7", r.encode(), hashlib.sha256).hexdigest())
    assert picked(first) == expect[:3]
    s1 = validate(repo, "--sample", "3", "--seed", "7", "--shard", "1/2")[1]
    s2 = validate(repo, "--sample", "3", "--seed", "7", "--shard", "2/2")[1]
    # The second and third invocations picked the same 3 runs, and split them between them.
    assert picked(s1) + picked(s2) != [] and sorted(picked(s1) + picked(s2)) == sorted(expect[:3])
    assert not set(picked(s1)) & set(picked(s2))
    for row in first["details"]["results"]:
        assert row["verdict"] == "exact" and row["environment"] == "match"
        assert row["seconds"] > 0
    # One chronicle record per replay plus one per validation, linked by the validation id.
    records = read(repo / ".catalytic/chronicle.jsonl")
    assert [r["kind"] for r in records] == ["replay"] * 3 + ["validate"] + ["replay"] * 2 + [
        "validate"
    ] + ["replay"] + ["validate"]
    vid = first["details"]["validation"]
    assert sorted(
        r["data"]["run_id"]
        for r in records
        if r["data"].get("validation") == vid and r["kind"] == "replay"
    ) == sorted(expect[:3])
    assert records[3]["data"]["results"][0]["run_id"] == expect[0]
    # The summary is written as JSON, Markdown and HTML.
    det = first["details"]
    assert json.loads(Path(det["report_json"]).read_text())["results"] == det["results"]
    md = Path(det["report_md"]).read_text()
    assert "**PASS**" in md and all(f"| `{r}` |" in md for r in expect[:3])
    assert b"Content-Security-Policy" in Path(det["report_html"]).read_bytes()


def test_a_drifted_run_fails_the_validation_and_is_named(repo: Path, tmp_path: Path) -> None:
    make_runs(repo, ["good", "moved"], drifted=frozenset({"moved"}))
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    proc = catalytic("validate", "--summary", str(summary), cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "drift-verified    moved" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-2].endswith("FAIL (moved)")
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as a CI job summary is
    assert "**FAIL**: 1 run(s) no longer reproduce: `moved`" in text
    assert "| `moved` | drift-verified |" in text and "| `good` | exact |" in text
    last = read(repo / ".catalytic/chronicle.jsonl")[-1]
    assert last["kind"] == "validate" and last["data"]["ok"] is False


def test_a_run_name_never_reaches_the_terminal_as_control_characters(
    repo: Path, tmp_path: Path
) -> None:
    """A run directory's name may hold ESC (a terminal sequence that clears the screen or
    prints over a failure) and bidi overrides (which reorder what is shown): the human output
    writes them as escapes."""
    name = "x\x1b[2J\x1b[32mPASS\u202eliaf"
    make_runs(repo, ["good", "moved"], drifted=frozenset({"moved"}))
    (repo / "_runs/moved").rename(repo / "_runs" / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "renamed")
    proc = catalytic("validate", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert "\x1b" not in text and "\u202e" not in text
    assert "x\\x1b[2J\\x1b[32mPASS\\u202eliaf" in proc.stdout


def test_a_run_name_is_never_markup_in_the_summary(repo: Path, tmp_path: Path) -> None:
    """GitHub renders the step summary as Markdown with HTML. A run directory's name is no
    signed fact and may hold anything but `/`: here a link, an image, a bold PASS, a backtick
    and a `<!--` that would hide every line after it. It is written as a code span whose fence
    outruns its backticks, so none of it renders."""
    name = "x <img src=https:e.example> [ok](https:e.example) **PASS** `a` <!--"
    make_runs(repo, ["good", "moved"], drifted=frozenset({"moved"}))
    (repo / "_runs/moved").rename(repo / "_runs" / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "renamed")
    summary = tmp_path / "step-summary.md"
    proc = catalytic("validate", "--summary", str(summary), cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    span = f"``{name}``"
    lines = summary.read_text().splitlines()
    assert f"**FAIL**: 1 run(s) no longer reproduce: {span}" in lines
    row = next(line for line in lines if line.startswith(f"| {span} | "))
    assert row.split(" | ")[1] in ("drift-verified", "failed")
    assert summary.read_text().count(name) == 2  # the FAIL line and the row: nowhere bare


def test_a_corrupt_bundle_is_quarantined_and_counted_as_a_failure(repo: Path) -> None:
    make_runs(repo, ["fine", "broken"])
    status = repo / "_runs/broken/STATUS.json"
    status.write_bytes(status.read_bytes().replace(b"success", b"succe55"))
    code, doc = validate(repo, "_runs")
    assert code == 1 and doc["code"] == "VALIDATION_FAILED"
    rows = {r["run_id"]: r for r in doc["details"]["results"]}
    assert rows["fine"]["verdict"] == "exact"
    assert rows["broken"]["verdict"] == "failed" and rows["broken"]["quarantine"]
    assert not (repo / "_runs/broken").exists()
    assert Path(rows["broken"]["quarantine"]).is_dir()  # moved, never deleted
    kinds = [
        (r["kind"], r["data"].get("verdict")) for r in read(repo / ".catalytic/chronicle.jsonl")
    ]
    assert sorted(kinds[:2]) == [("replay", "exact"), ("replay", "failed")]
    assert kinds[2][0] == "validate"


def test_sources_and_refusals(repo: Path, tmp_path: Path) -> None:
    make_runs(repo, ["one", "two"])
    code, doc = validate(repo, "_runs/two")
    assert code == 0 and picked(doc) == ["two"]
    for args, code_ in (
        (["--shard", "3/2"], "USAGE"),
        ([str(tmp_path / "nowhere")], "PATH_INVALID"),
    ):
        proc = catalytic("validate", *args, "--json", cwd=repo)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["code"] == code_, args
        assert "Traceback" not in proc.stderr
    for bad in ("x", "0/2", "1/0", "1/2/3"):
        with pytest.raises(CatalyticError) as err:
            parse_shard(bad)
        assert err.value.code is ErrorCode.USAGE
    for opts in (
        ValidateOptions(sample=0),
        ValidateOptions(coverage=True),
        ValidateOptions(coverage=True, sample=1, date="yesterday"),
    ):
        with pytest.raises(CatalyticError) as err:
            plan(cands(3), opts)
        assert err.value.code is ErrorCode.USAGE


def test_sources_holding_no_run_fail_and_an_empty_shard_does_not(repo: Path) -> None:
    """A nightly job pointed at a mistyped or emptied source validates nothing; it fails, as
    pytest fails when it collects nothing, where it read as PASS. A shard that the sample
    leaves empty is not that: the sample as a whole had runs."""
    (repo / "_runs").mkdir(exist_ok=True)
    proc = catalytic("validate", "_runs", "--json", cwd=repo)
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["code"]) == (1, "VALIDATION_FAILED"), proc.stdout + proc.stderr
    assert doc["details"]["candidates"] == 0 and doc["details"]["results"] == []
    md = Path(doc["details"]["report_md"]).read_text()
    assert "**FAIL**: no run was found in the sources; nothing was validated" in md
    human = catalytic("validate", "_runs", cwd=repo)
    assert human.returncode == 1 and "FAIL (no run was found in the sources" in human.stdout

    make_runs(repo, ["one"])
    empty_shard = [
        catalytic("validate", "_runs", "--shard", f"{i}/2", "--json", cwd=repo) for i in (1, 2)
    ]
    rows = [json.loads(p.stdout)["details"]["results"] for p in empty_shard]
    assert sorted(len(r) for r in rows) == [0, 1]
    assert [p.returncode for p in empty_shard] == [0, 0]


def cands(n: int) -> list[Candidate]:
    return [Candidate(f"run-{i:04d}", Path(f"/a/run-{i:04d}")) for i in range(n)]


@settings(max_examples=100, deadline=None)
@given(
    n_runs=st.integers(0, 60),
    sample=st.one_of(st.none(), st.integers(1, 70)),
    shards=st.integers(1, 9),
    seed=st.text(max_size=12),
)
def test_shards_partition_every_sample(
    n_runs: int, sample: int | None, shards: int, seed: str
) -> None:
    pick = pick_sample(cands(n_runs), sample, seed)
    parts = [shard(pick, i, shards) for i in range(1, shards + 1)]
    flat = [c for p in parts for c in p]
    assert sorted(flat, key=lambda c: c.run_id) == sorted(pick, key=lambda c: c.run_id)
    assert len(flat) == len(set(flat)) == len(pick)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


@settings(max_examples=50, deadline=None)
@given(n_runs=st.integers(1, 50), per_night=st.integers(1, 12), start=st.integers(0, 40000))
def test_coverage_replays_every_run_within_ceil_runs_over_n_nights(
    n_runs: int, per_night: int, start: int
) -> None:
    import math

    nights = math.ceil(n_runs / per_night)
    seen = [
        c
        for d in range(start, start + nights)
        for c in pick_coverage(cands(n_runs), per_night, "coverage", d)
    ]
    assert sorted(c.run_id for c in seen) == sorted(c.run_id for c in cands(n_runs))


def test_adding_runs_changes_few_old_picks() -> None:
    before = pick_sample(cands(1000), 10, "2026-12-01")
    after = pick_sample(cands(1100), 10, "2026-12-01")
    # A pick changes only where a new run ranks lower; here at most the new runs' share.
    assert len(set(before) - set(after)) <= 3
    assert rank("7", "alpha") == rank("7", "alpha") != rank("8", "alpha")
    assert night_of("1970-01-02") == 1


def test_an_archive_store_is_a_source_and_a_corrupt_archive_is_quarantined(
    repo: Path, tmp_path: Path
) -> None:
    make_runs(repo, ["packed", "spoiled"])
    store = tmp_path / "store"
    for rid in ("packed", "spoiled"):
        proc = catalytic(
            "archive", "create", f"_runs/{rid}", "-o", str(store / f"{rid}.catalytic.zip"), cwd=repo
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = store / "spoiled.catalytic.zip"
    data = bytearray(bad.read_bytes())
    i = data.index(b"result spoiled")
    data[i] ^= 0x20  # one output byte flipped inside the archive
    bad.write_bytes(bytes(data))
    code, doc = validate(repo, str(store))
    assert code == 1 and doc["code"] == "VALIDATION_FAILED"
    rows = {r["run_id"]: r for r in doc["details"]["results"]}
    assert rows["packed"]["verdict"] == "exact"
    assert rows["spoiled"]["verdict"] == "failed" and rows["spoiled"]["quarantine"]
    assert not bad.exists() and Path(rows["spoiled"]["quarantine"]).is_file()  # moved
    replays = [r for r in read(repo / ".catalytic/chronicle.jsonl") if r["kind"] == "replay"]
    assert sorted(r["data"]["run_id"] for r in replays) == ["packed", "spoiled"]


def test_coverage_on_the_command_line_replays_every_run_over_its_nights(repo: Path) -> None:
    """`--coverage --sample 1` over 2 runs: 2 nights, one run each, together both; the
    summary says the mode, the fixed seed and the night."""
    make_runs(repo, ["one", "two"])
    docs = [
        validate(repo, "--coverage", "--sample", "1", "--date", day)
        for day in ("2026-03-01", "2026-03-02")
    ]
    assert [code for code, _ in docs] == [0, 0]
    nights = [doc["details"] for _, doc in docs]
    assert sorted(picked(doc) for _, doc in docs) == [["one"], ["two"]]
    assert [d["mode"] for d in nights] == ["coverage", "coverage"]
    assert [d["seed"] for d in nights] == ["coverage", "coverage"]
    assert [d["night"] for d in nights] == [night_of("2026-03-01"), night_of("2026-03-02")]
    # The pick is the documented slice: night mod ceil(2 / 1) of the ranked runs.
    ranked = sorted(["one", "two"], key=lambda r: rank("coverage", r))
    assert picked(docs[0][1]) == [ranked[night_of("2026-03-01") % 2]]


def test_a_pick_whose_name_is_not_utf8_is_refused_and_the_rest_validate(
    repo: Path, tmp_path: Path
) -> None:
    """A run directory and an archive whose file names are not UTF-8 (anyone who can write under
    the sources can make one; catalytic never does): each is ranked by its bytes and, picked,
    is a failed row with reason NAME_NOT_UTF8, recorded under an escaped name and left where it
    is, while every other pick is replayed."""
    import os
    import shutil

    make_runs(repo, ["alpha", "packed", "spoilt"])
    store = tmp_path / "store"
    for rid, name in (("packed", b"packed.catalytic.zip"), ("spoilt", b"\xff.catalytic.zip")):
        out = store / f"{rid}.catalytic.zip"
        proc = catalytic("archive", "create", f"_runs/{rid}", "-o", str(out), cwd=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        os.rename(out, os.path.join(os.fsencode(store), name))
        shutil.rmtree(repo / "_runs" / rid)  # only the archive is a source of this run now
    bad_dir = os.path.join(os.fsencode(repo / "_runs"), b"\xffalpha")
    shutil.copytree(repo / "_runs/alpha", os.fsdecode(bad_dir))
    code, doc = validate(repo, "_runs", str(store))
    assert code == 1 and doc["code"] == "VALIDATION_FAILED", doc
    rows = {r["run_id"]: r for r in doc["details"]["results"]}
    # The archive's row names the run its ARCHIVE.json records; its source, the file.
    assert set(rows) == {"alpha", "packed", "\\xffalpha", "spoilt"}
    assert rows["alpha"]["verdict"] == rows["packed"]["verdict"] == "exact"
    for name in ("\\xffalpha", "spoilt"):
        assert rows[name]["verdict"] == "failed" and not rows[name]["passing"]
        assert rows[name]["reason"].startswith("NAME_NOT_UTF8: "), rows[name]
        assert rows[name]["quarantine"] is None
    assert rows["spoilt"]["source"].endswith("store/\\xff.catalytic.zip")
    # Refused before anything was read or moved; every pick is in the chronicle.
    assert os.path.isdir(bad_dir)
    assert os.path.isfile(os.path.join(os.fsencode(store), b"\xff.catalytic.zip"))
    assert not (repo / ".catalytic/quarantine").exists()
    records = read(repo / ".catalytic/chronicle.jsonl")
    refused = {
        r["data"]["run_id"]: r["data"]["reason"]
        for r in records
        if r["kind"] == "replay" and r["data"]["verdict"] == "failed"
    }
    assert refused == {"\\xffalpha": "NAME_NOT_UTF8", "spoilt": "NAME_NOT_UTF8"}
    assert len(records[-1]["data"]["results"]) == 4
    assert "| `\\xffalpha` | failed |" in Path(doc["details"]["report_md"]).read_text()
    assert catalytic("chronicle", "verify", cwd=repo).returncode == 0
    report = catalytic("report", cwd=repo)
    assert report.returncode == 0, report.stdout + report.stderr
    # The rank of a name that is not UTF-8 is the HMAC of its bytes; a seed must be text.
    import hashlib
    import hmac

    assert rank("7", os.fsdecode(b"\xff")) == hmac.new(b"7", b"\xff", hashlib.sha256).hexdigest()
    with pytest.raises(CatalyticError) as err:
        plan(cands(3), ValidateOptions(seed=os.fsdecode(b"\xff")))
    assert err.value.code is ErrorCode.USAGE


def test_a_metric_beyond_every_float_is_a_drift_not_the_end_of_the_night(repo: Path) -> None:
    """An archived metric that is a 400-digit integer (valid strict JSON) against the 1 the
    replay writes: that run drifts by exactly that much, the other run still replays, and every
    summary shows the drift."""
    make_runs(repo, ["alpha"])
    spec = {
        "task_id": "bravo",
        "command": [
            sys.executable,
            "-c",
            "import pathlib; p = pathlib.Path('outputs'); p.mkdir(exist_ok=True); "
            "(p / 'm.json').write_text('{\"loss\": 1}')",
        ],
        "cwd": ".",
        "seed": 7,
        "git_commit": git(repo, "rev-parse", "HEAD").stdout.strip(),
        "environment": fingerprint(repo, (), 7),
        "metrics": ["outputs/m.json"],
    }
    make_bundle(
        repo / "_runs/bravo",
        repo,
        {"outputs/m.json": b'{"loss": 1' + b"0" * 400 + b"}"},
        task_spec=canonical_bytes(spec),
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a run with a huge metric")
    code, doc = validate(repo)
    assert code == 1 and doc["code"] == "VALIDATION_FAILED", doc
    rows = {r["run_id"]: r for r in doc["details"]["results"]}
    assert rows["alpha"]["verdict"] == "exact"
    assert rows["bravo"]["verdict"] == "drift-verified"
    assert rows["bravo"]["largest_drift"] == 10**400 - 1  # exact, as JSON carries it
    assert "| `bravo` | drift-verified | 1e+400 |" in Path(doc["details"]["report_md"]).read_text()
    human = catalytic("validate", cwd=repo)
    assert human.returncode == 1 and "bravo  drift 1e+400" in human.stdout, human.stdout
    assert catalytic("report", cwd=repo).returncode == 0


def test_a_bug_met_by_one_pick_is_its_failed_row_and_an_interrupt_stops_the_night(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything one replay raises (a bug) fails that pick alone, with reason INTERNAL, and is
    recorded; a KeyboardInterrupt is not swallowed: the validation stops and records nothing."""
    from catalytic_hooks.core.errors import EXIT_INTERRUPTED
    from catalytic_hooks.replay import validate as validate_mod

    from .helpers import inproc

    make_runs(repo, ["alpha", "bravo"])
    real = validate_mod._replay_one
    raised: list[type[BaseException]] = [RuntimeError]

    def flaky(repo_: Any, policy: Any, c: Candidate, *args: Any) -> Any:
        if c.run_id == "bravo":
            raise raised[0]("boom")
        return real(repo_, policy, c, *args)

    monkeypatch.setattr(validate_mod, "_replay_one", flaky)
    proc = inproc("validate", "--json", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {r["run_id"]: r for r in json.loads(proc.stdout)["details"]["results"]}
    assert rows["alpha"]["verdict"] == "exact"
    assert rows["bravo"]["verdict"] == "failed"
    assert (
        rows["bravo"]["reason"].startswith("INTERNAL: ")
        and "RuntimeError: boom" in (rows["bravo"]["reason"])
    )
    chronicle = repo / ".catalytic/chronicle.jsonl"
    failed = [r["data"] for r in read(chronicle) if r["data"].get("verdict") == "failed"]
    assert [(d["run_id"], d["reason"]) for d in failed] == [("bravo", "INTERNAL")]
    before = len(read(chronicle))
    raised[0] = KeyboardInterrupt
    proc = inproc("validate", "--json", cwd=repo)
    assert proc.returncode == EXIT_INTERRUPTED, proc.stdout + proc.stderr
    assert all(r["kind"] != "validate" for r in read(chronicle)[before:])
