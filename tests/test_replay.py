"""Replay verdicts, reports, quarantine, environment comparison; the chronicle."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalytic_hooks.bundle.keys import signer_from_seed
from catalytic_hooks.bundle.sign import sign_run_dir
from catalytic_hooks.core.errors import BUNDLE_CORRUPT
from catalytic_hooks.provenance.chronicle import (
    _load_all,
    append,
    head_path,
    inspect,
    read,
    verify,
)
from catalytic_hooks.replay.runner import compare_metrics, flatten

from .helpers import SEED_A, catalytic, git, key_file, signer

POLICY = """\
durable_roots = ["outputs"]
tmp_roots = ["_tmp"]
run_roots = ["_runs"]
trusted_validators = ".catalytic/allowed_validators"
"""

DETERMINISTIC = """\
import json, os, random, pathlib
random.seed(int(os.environ["CATALYTIC_SEED"]))
xs = [random.random() for _ in range(1000)]
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "sample.txt").write_text("\\n".join(f"{x:.17g}" for x in xs[:10]))
(out / "metrics.json").write_text(json.dumps({"mean": sum(xs) / len(xs),
                                              "nested": {"max": max(xs), "n": len(xs)}}))
"""

NOISY_METRIC = """\
import json, pathlib, random
noise = random.SystemRandom().random() * 1e-12  # differs at the 12th significant digit
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "model.txt").write_text("weights 1 2 3\\n")
(out / "metrics.json").write_text(json.dumps({"loss": 0.123456789012 + noise}))
"""

WALL_CLOCK = """\
import pathlib, time
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "stamp.txt").write_text(str(time.time_ns()))
"""

UNTRACKED_INPUT = """\
import pathlib
src = pathlib.Path("local-input.txt")
text = src.read_text() if src.exists() else "no input"
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "derived.txt").write_text(text.upper())
"""


@pytest.fixture
def repo(make_repo) -> Path:
    r = make_repo(
        {"job.py": DETERMINISTIC, ".gitignore": "_tmp/\nlocal-input.txt\n"}, policy=POLICY
    )
    a = signer(SEED_A)
    assert catalytic("trust", "add", "ci", f"ed25519:{a.public_hex}", cwd=r).returncode == 0
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "trust")
    return r


def run_and_commit(
    repo: Path, tmp_path: Path, run_id: str, script: str | None = None, metrics: bool = True
) -> Path:
    import sys

    if script is not None:
        (repo / "job.py").write_text(script)
        git(repo, "add", "job.py")
        git(repo, "commit", "-q", "-m", f"script for {run_id}")
    args = ["run", "--run-id", run_id, "--sign", str(key_file(tmp_path)), "--seed", "7"]
    if metrics:
        args += ["--metrics", "outputs/metrics.json"]
    proc = catalytic(*args, "--", sys.executable, "job.py", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"run {run_id}")
    return repo / "_runs" / run_id


def replay(repo: Path, run_id: str, *extra: str) -> tuple[int, dict]:
    proc = catalytic("replay", f"_runs/{run_id}", "--json", *extra, cwd=repo)
    doc = json.loads(proc.stdout)
    return proc.returncode, doc


def test_deterministic_run_replays_exact(repo: Path, tmp_path: Path) -> None:
    run_and_commit(repo, tmp_path, "det")
    code, doc = replay(repo, "det")
    assert code == 0 and doc["code"] == "EXACT", doc
    rep = doc["details"]
    assert rep["verdict"] == "exact" and rep["replays"] == 1
    assert {o["path"] for o in rep["outputs"]} == {"outputs/metrics.json", "outputs/sample.txt"}
    assert all(m["within_tolerance"] and m["delta"] == 0 for m in rep["metrics"])
    assert json.loads(Path(rep["report_json"]).read_text())["verdict"] == "exact"
    md = Path(rep["report_md"]).read_text()
    assert "**exact**" in md and "## Environment" in md and "## Metrics" in md
    assert not Path(rep["worktree"]).exists()  # removed without --keep
    assert str(Path(rep["worktree"])) not in git(repo, "worktree", "list").stdout
    kinds = [r["kind"] for r in read(repo / ".catalytic/chronicle.jsonl")]
    assert kinds == ["run", "replay"]
    assert catalytic("chronicle", "verify", cwd=repo).returncode == 0


def test_metric_noise_in_12th_digit_is_within_tolerance(repo: Path, tmp_path: Path) -> None:
    run_and_commit(repo, tmp_path, "noisy", NOISY_METRIC)
    code, doc = replay(repo, "noisy")
    rep = doc["details"]
    assert code == 0 and rep["verdict"] == "within-tolerance", rep
    row = rep["metrics"][0]
    assert row["key"] == "loss" and 0 < row["delta"] < 1e-8


def test_wall_clock_output_is_nondeterministic(repo: Path, tmp_path: Path) -> None:
    run_and_commit(repo, tmp_path, "clock", WALL_CLOCK, metrics=False)
    code, doc = replay(repo, "clock")
    assert code == 1 and doc["details"]["verdict"] == "nondeterministic"
    assert doc["details"]["replays"] == 2


def test_real_difference_is_drift_verified(repo: Path, tmp_path: Path) -> None:
    (repo / "local-input.txt").write_text("present only on the original machine")
    run_and_commit(repo, tmp_path, "drift", UNTRACKED_INPUT, metrics=False)
    code, doc = replay(repo, "drift")
    rep = doc["details"]
    assert code == 1 and rep["verdict"] == "drift-verified"
    out = rep["outputs"][0]
    assert out["replay1"] == out["replay2"] != out["expected"]


def test_code_changed_after_the_run_still_reproduces(repo: Path, tmp_path: Path) -> None:
    run_and_commit(repo, tmp_path, "v1")
    (repo / "job.py").write_text(DETERMINISTIC.replace("range(1000)", "range(5)"))
    git(repo, "commit", "-q", "-am", "change the job after the run")
    code, doc = replay(repo, "v1", "--keep")
    assert code == 0 and doc["details"]["verdict"] == "exact"
    wt = Path(doc["details"]["worktree"])
    assert "range(1000)" in (wt / "job.py").read_text()  # the recorded commit, not HEAD


def test_an_output_edited_after_the_run_is_reported_not_quarantined(
    repo: Path, tmp_path: Path
) -> None:
    run = run_and_commit(repo, tmp_path, "edited")
    (repo / "outputs/sample.txt").write_text("edited later")
    code, doc = replay(repo, "edited")
    assert code == 1 and doc["code"] == "REPLAY_FAILED"
    assert doc["details"]["reason"] == "OUTPUT_EDITED"
    assert "outputs/sample.txt was changed after the run" in doc["message"]
    assert doc["details"]["verification"]["code"] == "HASH_MISMATCH"
    assert run.is_dir() and not (repo / ".catalytic/quarantine").exists()


def test_a_corrupt_bundle_is_quarantined(repo: Path, tmp_path: Path) -> None:
    run = run_and_commit(repo, tmp_path, "bad")
    status = run / "STATUS.json"
    status.write_bytes(status.read_bytes().replace(b'"success"', b'"succes5"'))
    nq = catalytic("replay", "_runs/bad", "--no-quarantine", "--json", cwd=repo)
    assert nq.returncode == 1 and run.is_dir()
    code, doc = replay(repo, "bad")
    assert code == 1 and doc["code"] == "REPLAY_FAILED"
    reason = doc["details"]["reason"]
    assert reason in BUNDLE_CORRUPT
    assert not run.exists()
    moved = Path(doc["details"]["quarantine"])
    assert moved.is_dir() and (moved / "SIGNATURE.json").exists()  # moved, never deleted
    reports = list((repo / ".catalytic/quarantine").glob("*.QUARANTINE_REPORT.json"))
    assert json.loads(reports[0].read_text())["reason"] == reason
    last = read(repo / ".catalytic/chronicle.jsonl")[-1]
    assert last["kind"] == "replay" and last["data"]["verdict"] == "failed"


def test_environment_mismatch_reported_and_strict_fails(repo: Path, tmp_path: Path) -> None:
    run = run_and_commit(repo, tmp_path, "env")
    spec = json.loads((run / "TASK_SPEC.json").read_text())
    dists = spec["environment"]["distributions"]
    i = next(i for i, d in enumerate(dists) if d.startswith("cryptography=="))
    dists[i] = "cryptography==0.0.1"
    (run / "TASK_SPEC.json").write_text(json.dumps(spec, sort_keys=True, separators=(",", ":")))
    sign_run_dir(run, signer_from_seed(SEED_A), force=True)
    code, doc = replay(repo, "env")
    fields = [d["field"] for d in doc["details"]["environment"]["differences"]]
    assert code == 0 and "distribution cryptography" in fields
    assert doc["details"]["verdict"] == "exact"
    code, doc = replay(repo, "env", "--strict-env")
    assert code == 1 and doc["details"]["verdict"] == "failed"
    assert "strict-env" in doc["details"]["reason"]
    cmp = catalytic("env", "--compare", str(run), "--json", cwd=repo)
    assert cmp.returncode == 1 and json.loads(cmp.stdout)["code"] == "ENV_MISMATCH"


def test_untrusted_bundle_is_refused_not_quarantined(repo: Path, tmp_path: Path) -> None:
    run = run_and_commit(repo, tmp_path, "trusted")
    catalytic("trust", "remove", "ci", cwd=repo)
    code, doc = replay(repo, "trusted")
    assert code == 1 and doc["details"]["reason"] == "UNTRUSTED" and run.is_dir()


def test_metric_comparison_helpers() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": 3}) == {"a.b": 1, "a.c.d": 2.5, "e": 3}
    rows = compare_metrics({"x": 1.0, "y": 2, "s": "a"}, {"x": 1.0 + 5e-9, "y": 2.1, "z": 1}, 1e-8)
    by = {r["key"]: r["within_tolerance"] for r in rows}
    assert by == {"x": True, "y": False, "s": False, "z": False}


# A metric whose recorded value came from an input the replay does not have: the replay's
# value is 0 where the run's was VALUE.
EXTREME_METRIC = """\
import json, pathlib
src = pathlib.Path("local-input.txt")
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
value = json.loads(src.read_text()) if src.exists() else 0
(out / "metrics.json").write_text(json.dumps({"loss": value}))
"""


@pytest.mark.parametrize(
    ("a", "b", "delta", "within"),
    [
        pytest.param(1.0, 1.0 + 5e-9, abs(1.0 - (1.0 + 5e-9)), True, id="ordinary-floats"),
        pytest.param(1.7e308, 0, 1.7e308, False, id="float-max-to-zero"),
        pytest.param(1.7e308, -1.7e308, 2 * int(1.7e308), False, id="beyond-float-between-floats"),
        pytest.param(10**400, 1, 10**400 - 1, False, id="integer-beyond-float"),
        pytest.param(10**400, 10**400, 0.0, True, id="equal-integers-beyond-float"),
        pytest.param(10**400 + 1, 10**400, 1.0, False, id="integers-beyond-float-one-apart"),
        pytest.param(10**400, 0.5, 10**400, False, id="integer-beyond-float-and-a-fraction"),
        pytest.param(5e-324, -0.0, 5e-324, True, id="subnormal-and-negative-zero"),
        # equal as floats, one apart as the integers they are: a changed count is a drift
        pytest.param(2**53 + 1, 2**53, 1.0, False, id="integers-equal-as-floats"),
        pytest.param(10**300 + 1, 10**300, 1.0, False, id="large-integers-equal-as-floats"),
        pytest.param(3, 3.0, 0.0, True, id="an-integer-and-its-float"),
        pytest.param(9 * 10**4299, -9 * 10**4299, None, False, id="more-digits-than-json-text"),
    ],
)
def test_a_metric_drift_is_exact_for_any_json_number(
    a: int | float, b: int | float, delta: int | float | None, within: bool
) -> None:
    """Strict JSON holds any finite float and integers of up to 4,300 digits: the drift between
    two of them is judged exactly and recorded as a JSON number canonical JSON can write (a
    float where one holds it), never raising."""
    from catalytic_hooks.core.canonical import canonical_bytes

    [row] = compare_metrics({"m": a}, {"m": b}, 1e-8)
    assert (row["delta"], row["within_tolerance"]) == (delta, within)
    assert type(row["delta"]) is type(delta)
    canonical_bytes(row)  # what the report and the chronicle record do with it


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("1.7e308", "1.7e+308", id="float-max"),
        pytest.param("1" + "0" * 400, "1e+400", id="400-digits"),
    ],
)
def test_a_metric_beyond_every_float_drifts_and_the_report_shows_it(
    repo: Path, tmp_path: Path, value: str, shown: str
) -> None:
    """A real run recorded the metric VALUE from an input the replay lacks, so the replay gets
    0: a drift as large as VALUE, recorded in the chronicle, which still verifies and reports."""
    (repo / "local-input.txt").write_text(value)
    run_and_commit(repo, tmp_path, "huge", EXTREME_METRIC)
    (repo / "local-input.txt").unlink()
    code, doc = replay(repo, "huge")
    assert code == 1 and doc["code"] == "DRIFT_VERIFIED", doc
    rep = doc["details"]
    recorded = json.loads(value)
    [row] = rep["metrics"]
    assert (row["archived"], row["replayed"], row["delta"]) == (recorded, 0, recorded)
    assert rep["verdict"] == "drift-verified" and not row["within_tolerance"]
    assert shown in Path(rep["report_html"]).read_text()
    last = read(repo / ".catalytic/chronicle.jsonl")[-1]["data"]
    assert last["metrics"][0]["delta"] == recorded
    assert catalytic("chronicle", "verify", cwd=repo).returncode == 0
    report = catalytic("report", "--json", cwd=repo)
    assert report.returncode == 0, report.stdout + report.stderr
    assert f"<td>{shown}</td>" in Path(json.loads(report.stdout)["details"]["path"]).read_text()


# -- chronicle --------------------------------------------------------------------------------


def _make_chronicle(path: Path, n: int) -> None:
    for i in range(n):
        append(path, "run", {"i": i, "name": f"run-{i}"})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(2, 8),
    op=st.sampled_from(["edit", "delete", "swap", "truncate", "insert", "drop-newline"]),
    pick=st.floats(0, 1, exclude_max=True),
    pick2=st.floats(0, 1, exclude_max=True),
    mask=st.integers(1, 255),
)
def test_any_single_line_change_is_detected(
    tmp_path: Path, n: int, op: str, pick: float, pick2: float, mask: int
) -> None:
    path = tmp_path / f"c-{n}-{op}-{pick}-{pick2}-{mask}.jsonl"
    _make_chronicle(path, n)
    assert verify(path).ok
    lines = path.read_bytes().split(b"\n")[:-1]
    i = int(pick * n)
    if op == "edit":
        line = bytearray(lines[i])
        line[int(pick2 * len(line))] ^= mask
        if bytes(line) == lines[i]:
            return
        lines[i] = bytes(line)
        data = b"\n".join(lines) + b"\n"
    elif op == "delete":
        del lines[i]
        data = b"\n".join(lines) + (b"\n" if lines else b"")
    elif op == "swap":
        j = (i + 1 + int(pick2 * (n - 1))) % n
        lines[i], lines[j] = lines[j], lines[i]
        data = b"\n".join(lines) + b"\n"
    elif op == "insert":
        lines.insert(i, lines[int(pick2 * n)])
        data = b"\n".join(lines) + b"\n"
    elif op == "truncate":
        full = b"\n".join(lines) + b"\n"
        data = full[: int(pick2 * (len(full) - 1))]
    else:
        data = b"\n".join(lines)
    path.write_bytes(data)
    check = verify(path)
    assert not check.ok, (op, i)
    assert check.bad_line is not None and 1 <= check.bad_line <= n + 1


# A record whose data holds the separator the whole-file reading puts between lines, inside an
# array (so its canonical form contains `,"\u0000 line",`).
SEP_IN_DATA = {"x": [1, "\u0000 line", 2]}


@pytest.mark.parametrize(
    ("lines", "bad", "reason"),
    [
        # two records on line 2 and one record split over lines 3 and 4: as many array items
        # as lines when read as one document, but not line for line
        (
            [b'{"a":1},"\\u0000 line",{"b":2}', b'{"c":[1', b"2]}"],
            2,
            "not a JSON record (JSONDecodeError)",
        ),
        ([b'{"data":{},"data":{"run_id":"x"},"kind":"run"}'], 2, "not a canonical record (edited)"),
        ([b'{"data":NaN}'], 2, "not a JSON record (value cannot be canonicalised: "),
        ([b'{"a":"\\ud800"}'], 2, "not a JSON record (value cannot be canonicalised: "),
        ([b"\xef\xbb\xbf{}"], 2, "not a canonical record (edited)"),
        ([b'{"a": 1}'], 2, "not a canonical record (edited)"),
    ],
    ids=["split-and-joined", "duplicate-key", "nan", "lone-surrogate", "bom", "whitespace"],
)
def test_the_whole_file_reading_defers_every_odd_line_to_the_line_by_line_check(
    tmp_path: Path, lines: list[bytes], bad: int, reason: str
) -> None:
    """Reports read a chronicle as one document (chronicle._load_all) and fall back to line by
    line reading, which names the first bad line, on anything that is not canonical line for
    line; a clean chronicle gives the same records both ways, the separator in its data too."""
    path = tmp_path / "c.jsonl"
    append(path, "run", {"i": 0})
    append(path, "run", {"name": "</script>\u2028é"})
    clean = path.read_bytes()
    assert _load_all(clean, 2) == read(path)
    append(path, "run", SEP_IN_DATA)
    assert _load_all(path.read_bytes(), 3) is None and read(path)[2]["data"] == SEP_IN_DATA
    first = clean.split(b"\n")[0]
    data = first + b"\n" + b"\n".join(lines) + b"\n"
    assert _load_all(data, 1 + len(lines)) is None
    path.write_bytes(data)
    view = inspect(path)
    check = view.check
    assert not check.ok and check.bad_line == bad and check.records == 1
    assert view.records == [json.loads(first)]
    assert check.reason is not None and check.reason.startswith(f"line {bad}: {reason}")


def test_append_refuses_a_damaged_chronicle(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    _make_chronicle(path, 3)
    path.write_bytes(path.read_bytes()[:-10])  # torn
    with pytest.raises(Exception) as err:
        append(path, "run", {})
    assert "does not match its head" in str(err.value)
    head_path(path).unlink()
    assert not verify(path).ok


def _appender(path: str, who: str, count: int) -> None:
    for i in range(count):
        append(Path(path), "run", {"who": who, "i": i})


def test_concurrent_appenders_keep_a_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_appender, args=(str(path), who, 300)) for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    check = verify(path)
    assert check.ok and check.records == 600
    seen = {(r["data"]["who"], r["data"]["i"]) for r in read(path)}
    assert seen == {(w, i) for w in ("a", "b") for i in range(300)}


def test_chronicle_cli(repo: Path) -> None:
    path = repo / ".catalytic/chronicle.jsonl"
    _make_chronicle(path, 2)
    show = json.loads(catalytic("chronicle", "show", "--json", cwd=repo).stdout)
    assert [r["seq"] for r in show["details"]["records"]] == [1, 2]
    path.write_text(path.read_text().replace("run-1", "run-9"))
    proc = catalytic("chronicle", "verify", "--json", cwd=repo)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["details"]["bad_line"] == 2
    assert os.path.exists(head_path(path))


READS_SECRET = """\
import os, pathlib
out = pathlib.Path("outputs"); out.mkdir(exist_ok=True)
(out / "env.txt").write_text(os.environ.get("SECRET_TOKEN", "absent"))
"""


def test_replay_does_not_hand_the_callers_secrets_to_the_command(
    repo: Path, tmp_path: Path
) -> None:
    run_and_commit(repo, tmp_path, "sec", READS_SECRET, metrics=False)
    env = {**os.environ, "SECRET_TOKEN": "hunter2"}
    proc = catalytic("replay", "_runs/sec", "--json", "--keep", cwd=repo, env=env)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["code"] == "EXACT", doc
    assert (Path(doc["details"]["worktree"]) / "outputs/env.txt").read_text() == "absent"
    passed = catalytic("replay", "_runs/sec", "--json", "--env", "SECRET_TOKEN", cwd=repo, env=env)
    assert json.loads(passed.stdout)["code"] == "DRIFT_VERIFIED"  # only when asked for


def test_replay_refuses_a_cwd_outside_its_worktree(repo: Path, tmp_path: Path) -> None:
    from .helpers import resign

    run = run_and_commit(repo, tmp_path, "cwd", metrics=False)
    spec = json.loads((run / "TASK_SPEC.json").read_text())
    spec["cwd"] = "../.."
    spec["command"] = ["sh", "-c", "touch escaped-marker"]
    (run / "TASK_SPEC.json").write_text(json.dumps(spec))
    resign(run)
    code, doc = replay(repo, "cwd")
    assert code == 1 and doc["code"] == "REPLAY_FAILED"
    assert doc["details"]["reason"] == "UNSAFE_PATH"
    assert not list(tmp_path.rglob("escaped-marker"))


@pytest.mark.parametrize(
    "kind, data",
    [({"not": "a string"}, {"run_id": "r2"}), ("run", ["a", "list"]), ("run", {"n": None})],
    ids=["kind-not-text", "data-not-object", "null-field"],
)
def test_chronicle_show_lists_a_record_of_another_shape(make_repo, kind, data) -> None:  # type: ignore[no-untyped-def]
    # The hash chain vouches for order, not for shape: a record anyone could commit, with an
    # intact chain, made `chronicle show` fail with INTERNAL (exit 3).
    from catalytic_hooks.provenance.chronicle import append

    repo = make_repo({"README": "x\n"}, policy='durable_roots = ["outputs"]\n')
    path = repo / ".catalytic" / "chronicle.jsonl"
    append(path, "run", {"run_id": "r1"})
    append(path, kind, data)
    assert catalytic("chronicle", "verify", cwd=repo).returncode == 0
    proc = catalytic("chronicle", "show", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and "run_id=r1" in lines[0]
    shown = json.dumps(kind) if not isinstance(kind, str) else kind
    assert shown in lines[1]


def test_the_replay_markdown_shows_what_a_bundle_supplies_as_code_never_as_markup() -> None:
    """The Markdown report (rendered by GitHub with HTML) took run ids, commands, output paths,
    metric keys and values and environment values as they were: an image fetched from a server
    of the bundle's choosing, a bold "PASS", a `<!--` that hid what followed, a `|` that broke
    the table. Each now sits in a code span, as the validation summary's do."""
    from catalytic_hooks.core.outcomes import Verdict
    from catalytic_hooks.replay.report import ReplayReport

    hostile = ["![x](http://evil.example/p.png)", "<!--", "**PASS**", "a|b", "`tick`"]
    rep = ReplayReport(
        run_id=hostile[1],
        bundle_root="sha256:" + "ab" * 32,
        commit="c0ffee",
        command=["sh", "-c", hostile[0]],
        tolerance=1e-9,
        environment={
            "differences": [{"field": hostile[3], "recorded": hostile[2], "current": hostile[4]}],
            "strict": False,
        },
        started_at="2026-12-04T00:00:00Z",
        verdict=Verdict.EXACT,
        reason=hostile[2],
        outputs=[
            {
                "path": hostile[0],
                "expected": "sha256:" + "1" * 64,
                "replay1": "sha256:" + "1" * 64,
                "match": True,
            }
        ],
        metrics=[
            {
                "file": hostile[3],
                "key": hostile[1],
                "archived": hostile[2],
                "replayed": hostile[4],
                "delta": 0.0,
                "within_tolerance": True,
            }
        ],
    )
    md = rep.markdown()
    # Outside code spans nothing of the bundle's remains (spans taken out as CommonMark reads
    # them: a run of backticks closes at the next run of the same length).
    bare = re.sub(r"(`+)(.+?)\1", "", md)
    for text in ("![x]", "<!--", "**PASS**", "http://evil"):
        assert text not in bare, text
    tables: list[list[int]] = [[]]
    for line in md.splitlines():
        if line.startswith("|"):  # a row: its unescaped `|`s, the same in every row of a table
            tables[-1].append(line.replace("\\|", "").count("|"))
        elif tables[-1]:
            tables.append([])
    assert sum(len(t) for t in tables) == 9  # three tables: header, rule and one row each
    assert all(len(set(t)) == 1 for t in tables if t), tables
