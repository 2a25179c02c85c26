"""`report` (the chronicle as one HTML page) and `validate` (replay a seeded sample)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from catalytic_hooks.cli.context import open_repo
from catalytic_hooks.cli.env_cmd import (
    AllowUnhashedOpt,
    FallbackOpt,
    FindLinksOpt,
    IndexOpt,
    InstallerOpt,
    OfflineOpt,
    PythonOpt,
    rebuild_options,
)
from catalytic_hooks.cli.hot_options import REPORT
from catalytic_hooks.cli.options import JsonOpt, TrustFileOpt, typer_command
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.cli.registry_cmd import InsecureOpt, RegistryConfigOpt
from catalytic_hooks.cli.report_impl import ReportArgs, run_report
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.outcomes import SuccessCode, VerdictCode
from catalytic_hooks.core.policy import load_policy

report = typer_command(
    REPORT,
    ReportArgs,
    run_report,
    "Render the chronicle as one static, self-contained HTML file (exit 1 when the chronicle "
    "does not verify; the report is written either way, with the first bad line in its banner).",
)


def validate(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run directories, archive files, "
            "directories holding them, or oci:// references (default: every run "
            "under the run roots)."
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", help="Replay N runs, picked by rank of HMAC-SHA256(seed, run id)."
        ),
    ] = None,
    seed: Annotated[
        str | None,
        typer.Option(
            "--seed",
            help="The pick's key (default: today's UTC date; with --coverage: 'coverage').",
        ),
    ] = None,
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Replay slice (night mod "
            "ceil(runs/N)) of the ranked runs: every run within ceil(runs/N) "
            "nights.",
        ),
    ] = False,
    day: Annotated[
        str | None,
        typer.Option(
            "--date", help="With --coverage: the night (YYYY-MM-DD, default today in UTC)."
        ),
    ] = None,
    shard_spec: Annotated[
        str | None,
        typer.Option(
            "--shard", help="I/N: replay this job's share of the pick (positions I-1, I-1+N, ...)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Replays at once.")] = 1,
    rebuild_env: Annotated[
        bool,
        typer.Option(
            "--rebuild-env",
            help="Replay each run in a rebuilt copy of its recorded environment (cached by hash).",
        ),
    ] = False,
    offline: OfflineOpt = False,
    index: IndexOpt = None,
    fallback_index: FallbackOpt = None,
    find_links: FindLinksOpt = None,
    python: PythonOpt = None,
    installer: InstallerOpt = None,
    allow_unhashed: AllowUnhashedOpt = False,
    timeout: Annotated[
        float | None, typer.Option(help="Kill each replayed command after S seconds.")
    ] = None,
    summary_file: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            help="Also append the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).",
        ),
    ] = None,
    no_quarantine: Annotated[
        bool, typer.Option("--no-quarantine", help="Leave corrupt bundles in place.")
    ] = False,
    allow_untrusted: Annotated[bool, typer.Option("--allow-untrusted")] = False,
    trust_file: TrustFileOpt = None,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Replay a seeded, stable sample of the archived runs; exit 1 unless every one reproduces
    (exact or within tolerance). Sources may be oci:// references (a repository: its tags)."""
    from catalytic_hooks.bundle.trust import caller_anchor, trust_policy
    from catalytic_hooks.cli.registry_cmd import options
    from catalytic_hooks.replay.runner import ReplayOptions
    from catalytic_hooks.replay.validate import (
        NO_RUNS,
        ValidateOptions,
        ignored_note,
        parse_shard,
        render_markdown,
    )
    from catalytic_hooks.replay.validate import validate as do_validate
    from catalytic_hooks.report.page import fmt_num

    with handled(json_mode):
        r = open_repo(None)
        policy = load_policy(r.top)
        rebuild = (
            rebuild_options(
                r.top,
                policy,
                offline=offline,
                index=index,
                fallbacks=fallback_index,
                find_links=find_links,
                python=python,
                installer=installer,
                allow_unhashed=allow_unhashed,
            )
            if rebuild_env
            else None
        )
        ropts = ReplayOptions(
            rebuild=rebuild,
            timeout=timeout,
            quarantine=not no_quarantine,
            allow_untrusted=allow_untrusted,
            trust=trust_policy(caller_anchor(trust_file), allow_untrusted=allow_untrusted),
        )
        opts = ValidateOptions(
            sample=sample,
            seed=seed,
            coverage=coverage,
            date=day,
            shard=parse_shard(shard_spec) if shard_spec else None,
            jobs=jobs,
            rebuild_env=rebuild_env,
            replay=ropts,
            registry=options(registry_config, insecure),
        )
        summary = do_validate(r, policy, list(sources or []), opts)
        if summary_file is not None:
            try:
                with open(summary_file, "a", encoding="utf-8") as fh:
                    fh.write(render_markdown(summary))
            except OSError as exc:
                raise CatalyticError(
                    ErrorCode.IO_ERROR,
                    f"cannot append the summary to {summary_file}: {exc.strerror}",
                ) from exc

        def human() -> None:
            for row in summary["results"]:
                drift = "-" if row["largest_drift"] is None else fmt_num(row["largest_drift"])
                say(
                    f"{row['verdict']:<17} {row['run_id']}  drift {drift}  environment "
                    f"{row['environment']}  {row['seconds']:.1f} s"
                    + (f"  ({row['reason']})" if row.get("reason") and not row["passing"] else "")
                )
            n = len(summary["results"])
            bad = [row["run_id"] for row in summary["results"] if not row["passing"]]
            say(
                f"validate: {n} of {summary['candidates']} run(s), seed {summary['seed']}"
                + (f", shard {summary['shard']}" if summary["shard"] else "")
                + ignored_note(summary)
                + ": "
                + (
                    "PASS"
                    if summary["ok"]
                    else f"FAIL ({', '.join(bad)})"
                    if bad
                    else f"FAIL ({NO_RUNS})"
                )
            )
            say(f"report: {summary['report_html']}")

        result(
            json_mode,
            summary["ok"],
            SuccessCode.PASS if summary["ok"] else VerdictCode.VALIDATION_FAILED,
            summary,
            human,
        )
