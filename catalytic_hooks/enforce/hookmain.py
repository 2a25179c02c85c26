"""What git runs: `catalytic hook pre-commit` and `catalytic hook pre-push REMOTE URL`.

Dispatched before Typer/rich are imported and without pygit2 on a clean run: this module's
import cost is the hook's start-up cost.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from catalytic_hooks.core.errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK, debug_enabled, failure
from catalytic_hooks.enforce.checks import (
    check_push,
    check_range,
    check_staged,
    framework_range,
    framework_root_push,
    parse_push_lines,
)
from catalytic_hooks.enforce.findings import CheckReport, Finding, Reporter
from catalytic_hooks.git.repo import Repo

USAGE = (
    "usage: catalytic hook pre-commit | pre-push [REMOTE [URL]] | pre-receive | "
    "update REF OLD NEW | post-receive"
)


def _show(f: Finding) -> None:
    """A hook's finding on stderr, the moment it is found (long ranges)."""
    print(f.line() if f.blocking else f"catalytic: {f.line()}", file=sys.stderr, flush=True)


def _report(reporter: Reporter, report: CheckReport, inspect: str) -> int:
    reporter.found(report.findings)
    if report.ok:
        return EXIT_OK
    print(report.summary(inspect), file=sys.stderr)
    return EXIT_FAIL


def pre_commit(reporter: Reporter) -> int:
    repo = Repo.discover()
    from catalytic_hooks.enforce.ci import outside_a_commit

    if outside_a_commit(repo):
        return ci_range(repo, reporter)
    return _report(
        reporter, CheckReport(check_staged(repo), "commit"), "catalytic check --staged --json"
    )


def ci_range(repo: Repo, reporter: Reporter) -> int:
    """`pre-commit run` with nothing staged (CI): the proposed range, not the empty index."""
    from catalytic_hooks.enforce.bundles import check_bundles
    from catalytic_hooks.enforce.ci import check_ci, prepare

    rng = prepare(repo)
    print(
        f"catalytic: checking {rng.from_ref or '(no base)'}..{rng.to_ref} ({rng.why})",
        file=sys.stderr,
    )
    return _report(
        reporter,
        CheckReport(check_ci(repo, rng, check_bundles, reporter=reporter), "change"),
        "catalytic check --ci --json",
    )


def pre_push(args: Sequence[str], reporter: Reporter) -> int:
    from catalytic_hooks.enforce.bundles import check_bundles

    repo = Repo.discover()
    rng = framework_range()
    if rng is not None:
        findings = check_range(repo, rng[0], rng[1], check_bundles, reporter=reporter)
        inspect = f"catalytic check --from-ref {rng[0]} --to-ref {rng[1]} --json"
    else:
        remote = args[0] if args else os.environ.get("PRE_COMMIT_REMOTE_NAME")
        lines = framework_root_push(repo) if os.environ.get("PRE_COMMIT") else None
        if lines is None:
            lines = parse_push_lines(sys.stdin.read() if not sys.stdin.isatty() else "")
        findings = check_push(repo, lines, remote, check_bundles, reporter=reporter)
        inspect = "catalytic check --from-ref <remote tip> --to-ref <local tip> --json"
    return _report(reporter, CheckReport(findings, "push"), inspect)


def receive(hook: str, args: Sequence[str], reporter: Reporter) -> int:
    """pre-receive and post-receive (stdin lines) or update (`<ref> <old> <new>` as
    arguments)."""
    from catalytic_hooks.enforce.bundles import check_bundles
    from catalytic_hooks.enforce.findings import sort_findings
    from catalytic_hooks.enforce.server import (
        RefUpdate,
        judge_receive,
        parse_receive_lines,
        record_landed,
        stash_amendments,
    )

    repo = Repo.discover_bare()
    if hook == "update":
        if len(args) != 3:
            print("usage: catalytic hook update REF OLD NEW", file=sys.stderr)
            return EXIT_ERROR
        updates = [RefUpdate(args[1], args[2], args[0])]
    else:
        updates = parse_receive_lines(sys.stdin.read())
    if hook == "post-receive":
        # The refs have moved: only now is an accepted amendment a fact worth recording.
        record_landed(repo, updates)
        return EXIT_OK
    judged = judge_receive(repo, updates, check_bundles, reporter=reporter)
    code = _report(
        reporter,
        CheckReport(sort_findings(f for _, found in judged for f in found), "push"),
        "catalytic check --from-ref <old> --to-ref <new> --json (in a clone)",
    )
    if code == EXIT_OK:
        stash_amendments(repo, judged)
    return code


def main(argv: Sequence[str]) -> int:
    reporter = Reporter(_show)
    try:
        if argv[:1] == ["pre-commit"]:
            return pre_commit(reporter)
        if argv[:1] == ["pre-push"]:
            return pre_push(argv[1:], reporter)
        if argv[:1] in (["pre-receive"], ["update"], ["post-receive"]):
            return receive(argv[0], argv[1:], reporter)
        print(USAGE, file=sys.stderr)
        return EXIT_ERROR
    except (Exception, KeyboardInterrupt) as exc:
        return report_failure(exc)


def report_failure(exc: BaseException) -> int:
    """Fail closed: a hook that cannot decide blocks, and says why (same mapping as the CLI)."""
    code, message, bug = failure(exc)
    if bug and debug_enabled():
        import traceback

        traceback.print_exc()
    print(f"catalytic: {'error: ' if not bug and code != 130 else ''}{message}", file=sys.stderr)
    return code
