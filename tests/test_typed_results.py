"""Typed results: replay verdicts, the quarantine decision and the hooks' findings are typed
values with one spelling each, and a new verification code or verdict cannot slip past them."""

from __future__ import annotations

import re

from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.errors import BUNDLE_CORRUPT, BUNDLE_INTACT, ErrorCode
from catalytic_hooks.core.outcomes import PASSING, Verdict

from .helpers import ROOT


def test_every_verification_code_says_whether_the_bundle_is_corrupt() -> None:
    """A code bundle/verify.py raises must be in BUNDLE_CORRUPT (a replay quarantines the bundle)
    or BUNDLE_INTACT (left in place): a new one that is in neither fails here."""
    source = (ROOT / "catalytic_hooks" / "bundle" / "verify.py").read_text()
    raised = {ErrorCode[name] for name in re.findall(r"ErrorCode\.([A-Z_]+)", source)}
    assert raised  # the pattern still finds the codes
    assert sorted(raised - BUNDLE_CORRUPT - BUNDLE_INTACT) == []
    assert not BUNDLE_CORRUPT & BUNDLE_INTACT
    assert ErrorCode.SIGNATURE_INVALID.corrupts_bundle
    assert not ErrorCode.OUTPUT_MISSING.corrupts_bundle
    assert "HASH_MISMATCH" in BUNDLE_CORRUPT  # a reason read back from JSON details is a str


def test_verdicts_keep_their_spellings_and_render_as_them() -> None:
    assert [v.value for v in Verdict] == [
        "exact",
        "within-tolerance",
        "drift-verified",
        "nondeterministic",
        "failed",
    ]
    assert sorted(v for v in Verdict if v.passing) == ["exact", "within-tolerance"]
    assert "exact" in PASSING and "failed" not in PASSING
    assert canonical_bytes({"verdict": Verdict.WITHIN}) == b'{"verdict":"within-tolerance"}'
    assert f"{Verdict.DRIFT}" == "drift-verified"


def test_the_report_pages_know_every_verdict() -> None:
    """The HTML report styles verdicts by their values: each one has a symbol, a plot marker and
    a side (passing or failing), the same side as `Verdict.passing`."""
    from catalytic_hooks.report import page, plot

    assert set(page.SYMBOL) == set(Verdict)
    assert set(plot.STYLE) == set(Verdict)
    assert set(page.PASSING) == {v for v in Verdict if v.passing}
    assert set(page.FAILING) == {v for v in Verdict if not v.passing}


def test_findings_render_once_each_and_reporters_hold_their_own_state() -> None:
    from catalytic_hooks.enforce import findings
    from catalytic_hooks.enforce.findings import CheckReport, Finding, FindingKind, Reporter

    bad = Finding(
        "out/a, b.txt",
        FindingKind.MUTATION,
        "protected file modified",
        commit="0123456789abcdef",
        subject="edit",
    )
    ok = Finding("policy.toml", FindingKind.AMENDED, "signed amendment by alice", blocking=False)
    report = CheckReport([bad, ok], "push")
    assert (report.ok, report.blocking) == (False, [bad])
    assert report.to_dict() == {
        "findings": [
            {
                "path": "out/a, b.txt",
                "kind": "mutation",
                "reason": "protected file modified",
                "commit": "0123456789abcdef",
                "subject": "edit",
            }
        ],
        "amendments": [
            {
                "path": "policy.toml",
                "kind": "amended",
                "reason": "signed amendment by alice",
                "blocking": False,
            }
        ],
    }
    assert bad.line() == 'out/a, b.txt: protected file modified (commit 0123456789 "edit")'
    assert bad.annotation() == (
        "::error file=out/a%2C b.txt,title=catalytic mutation::"
        "protected file modified (commit 0123456789)"
    )
    assert (
        ok.annotation() == "::notice file=policy.toml,title=catalytic amended::signed "
        "amendment by alice"
    )
    assert report.summary("catalytic check --json") == (
        "catalytic: 1 finding blocks this push; inspect with `catalytic check --json`"
    )
    # No module-level reporter: each hook run passes its own, which shows a finding once; and
    # no kind spelled beside the enum (a kind is a FindingKind member, its value the JSON's).
    assert not [n for n in vars(findings) if n.isupper()]
    assert [k.value for k in FindingKind] == [
        "mutation",
        "tmp-residue",
        "bundle",
        "policy",
        "chronicle",
        "amended",
        "ref",
        "adoption",
    ]
    seen: list[Finding] = []
    first, second = Reporter(seen.append), Reporter(seen.append)
    first.found([bad, ok])
    first.found([bad])
    second.found([bad])
    assert seen == [bad, ok, bad]


def test_success_codes_keep_their_spellings_and_replay_codes_follow_the_verdict() -> None:
    from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode

    assert [c.value for c in SuccessCode] == ["OK", "PASS", "EXACT", "WITHIN_TOLERANCE"]
    assert {v: v.code for v in Verdict} == {
        Verdict.EXACT: SuccessCode.EXACT,
        Verdict.WITHIN: SuccessCode.WITHIN_TOLERANCE,
        Verdict.DRIFT: VerdictCode.DRIFT_VERIFIED,
        Verdict.NONDET: VerdictCode.NONDETERMINISTIC,
        Verdict.FAILED: VerdictCode.FAILED,
    }
    envelope = {"ok": True, "code": SuccessCode.PASS, "details": {}}
    assert canonical_bytes(envelope) == b'{"code":"PASS","details":{},"ok":true}'


def test_no_command_spells_an_envelope_code_as_a_string() -> None:
    """Every `code` handed to cli/output.result or envelope is an enum member (SuccessCode,
    VerdictCode, ErrorCode) or comes from one: a string literal there is a code no enum lists,
    so docs/CODES.md and its test would not know it."""
    import ast

    def literals(e: ast.expr) -> list[ast.Constant]:
        if isinstance(e, ast.IfExp):
            return literals(e.body) + literals(e.orelse)
        return [e] if isinstance(e, ast.Constant) and isinstance(e.value, str) else []

    spelled = []
    for path in sorted((ROOT / "catalytic_hooks").rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "id", getattr(call.func, "attr", ""))
            at = {"result": 2, "envelope": 1}.get(name)
            if at is None or len(call.args) <= at:
                continue
            spelled += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in literals(call.args[at])]
    assert spelled == []


def test_a_replay_report_renders_each_format_from_one_value() -> None:
    """The report is one typed value: the JSON document leaves out what the replay never reached
    (never a null in its place), and the Markdown and console renderers read the same fields."""
    from catalytic_hooks.replay.report import SEED_FIELDS, ReplayReport

    rep = ReplayReport(
        run_id="r1",
        bundle_root="sha256:" + "ab" * 32,
        commit="c0ffee",
        command=["python", "job.py"],
        tolerance=1e-9,
        environment={"differences": [], "strict": False},
        started_at="2026-12-04T00:00:00Z",
    )
    stopped = rep.to_dict()
    assert sorted(stopped) == sorted(
        ["run_id", "bundle_root", "commit", "command", "tolerance", "environment", "started_at"]
    )
    assert rep.markdown().startswith("# Replay of `r1`: **?**\n")
    rep.verdict, rep.replays, rep.restoration_id = Verdict.EXACT, 1, "replay-r1"
    rep.outputs = [{"path": "out/a", "expected": "sha256:1", "replay1": "sha256:1", "match": True}]
    rep.metrics, rep.report_md = [], "reports/replay-r1.md"
    doc = rep.to_dict()
    assert set(SEED_FIELDS) <= set(doc) and doc["source_archive"] is None
    assert "reason" not in doc and "likely_causes" not in doc and "pulled" not in doc
    assert canonical_bytes(doc).count(b'"verdict":"exact"') == 1
    assert rep.passing and rep.lines() == [
        "  = out/a",
        "replay r1: exact",
        "report: reports/replay-r1.md",
    ]
