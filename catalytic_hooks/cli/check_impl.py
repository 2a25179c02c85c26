"""`catalytic check`, Typer-free: the CLI command and the start-up fast path (fastpath.py) both
call `run_check`, so a CI job pays no Typer start-up for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.output import handled, result, say, warn
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode
from catalytic_hooks.enforce.checks import check_range, check_staged, framework_range
from catalytic_hooks.enforce.findings import CheckReport, Finding
from catalytic_hooks.git.repo import Repo


@dataclass
class CheckArgs:
    staged: bool = False
    from_ref: str | None = None
    to_ref: str | None = None
    ci: bool = False
    fmt: str = "text"
    repo: Path | None = None
    json_mode: bool = False


def _select(
    r: Repo, staged: bool, rng: tuple[str, str] | None, ci: bool
) -> tuple[list[Finding], dict[str, str], str]:
    if ci:
        from catalytic_hooks.enforce.bundles import check_bundles
        from catalytic_hooks.enforce.ci import check_ci, prepare

        found = prepare(r)
        warn(f"catalytic: checking {found.from_ref or '(no base)'}..{found.to_ref} ({found.why})")
        mode = {
            "mode": "ci",
            "from_ref": found.from_ref,
            "to_ref": found.to_ref,
            "why": found.why,
            "policy_ref": found.policy_ref or found.from_ref,
        }
        return check_ci(r, found, check_bundles), mode, "push"
    else:
        rng = rng if rng is not None else (None if staged else framework_range())
        mode = {"mode": "range", "from_ref": rng[0], "to_ref": rng[1]} if rng else {}
    if rng is None:
        return check_staged(r), {"mode": "staged"}, "commit"
    from catalytic_hooks.enforce.bundles import check_bundles

    return check_range(r, rng[0], rng[1], check_bundles), mode, "push"


def run_check(a: CheckArgs) -> None:
    json_mode = a.json_mode or a.fmt == "json"
    with handled(json_mode):
        if a.fmt not in ("text", "json", "github"):
            raise CatalyticError(
                ErrorCode.USAGE, f"--format {a.fmt!r}: choose text, json or github"
            )
        if (a.from_ref is None) != (a.to_ref is None):
            raise CatalyticError(ErrorCode.USAGE, "give both --from-ref and --to-ref")
        if sum((a.staged, a.from_ref is not None, a.ci)) > 1:
            raise CatalyticError(ErrorCode.USAGE, "--staged, a range and --ci are exclusive")
        rng = (a.from_ref, a.to_ref) if a.from_ref is not None and a.to_ref is not None else None
        findings, mode, what = _select(open_repo(a.repo), a.staged, rng, a.ci)
        report = CheckReport(findings, what)

        def human() -> None:
            for f in report.findings:
                if a.fmt == "github":
                    say(f.annotation())
                say(f.line() if f.blocking else f"accepted: {f.line()}")
            if report.ok:
                say("catalytic: no findings")
            else:
                warn(report.summary("catalytic check ... --json"))

        result(
            json_mode,
            report.ok,
            SuccessCode.PASS if report.ok else ErrorCode.CHECK_FAILED,
            {**mode, **report.to_dict()},
            human,
        )
