"""The options of the hot commands (`digest`, `check`, `run`, `archive create`, `archive pull`,
`archive push`, `report`), declared once:
the start-up fast path's tables (cli/fastpath.py) and the Typer commands
(cli/options.typer_command) are both derived from these declarations, so adding an option touches
one line here (and the field, with its default, on the command's *Args dataclass). Imports
nothing but typing: the fast path loads it before anything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Opt(NamedTuple):
    """One option of a hot command, declared once: the fast path's table below and the Typer
    command (cli/options.typer_command) are both derived from it, so adding an option is one
    line here (and the field on the command's *Args dataclass, which gives the default)."""

    field: str  # the *Args dataclass field
    kind: str  # "flag", "str", "path", "list" (repeatable), "int" or "float"
    names: tuple[str, ...]  # every spelling; Typer shows them in this order
    help: str
    required: bool = False
    minimum: int | None = None  # an "int" below it goes to Typer, which refuses it


_ROOTS_HELP = "Comma-separated roots; repeatable. Overrides the configuration."
_REPO = Opt(
    "repo",
    "path",
    ("--repo", "--repo-root"),
    "Repository (default: the one containing the current directory).",
)
_JSON = Opt("json_mode", "flag", ("--json",), "Print one JSON document on stdout.")

DIGEST = (
    Opt("rev", "str", ("--rev",), "Digest this revision's tree."),
    Opt("index", "flag", ("--index",), "Digest the index."),
    Opt("worktree", "flag", ("--worktree",), "Digest the working tree."),
    Opt("dir", "path", ("--dir",), "Digest a plain directory."),
    Opt("ignored", "flag", ("--ignored",), "Working tree: add ignored files."),
    Opt("exclusions", "list", ("--exclusions",), _ROOTS_HELP),
    Opt("durable_roots", "list", ("--durable-roots",), _ROOTS_HELP),
    Opt("tmp_roots", "list", ("--tmp-roots",), _ROOTS_HELP),
    _REPO,
    Opt(
        "output",
        "path",
        ("--output",),
        "Write the receipt (canonical JSON, atomically) to this file.",
    ),
    Opt("pre", "path", ("--pre", "--pre-digest"), "Seed alias of --output for a PRE_DIGEST."),
    Opt("post", "path", ("--post", "--post-digest"), "Seed alias of --output for a POST_DIGEST."),
    Opt(
        "error_receipt_path",
        "path",
        ("--error-receipt",),
        "Write an error receipt here when the computation cannot complete (none by default).",
    ),
    _JSON,
)

CHECK = (
    Opt("staged", "flag", ("--staged",), "The pre-commit check: HEAD vs index, plus tmp residue."),
    Opt("from_ref", "str", ("--from-ref",), "Range start (excluded)."),
    Opt("to_ref", "str", ("--to-ref",), "Range end (the pushed tip)."),
    Opt(
        "ci",
        "flag",
        ("--ci",),
        "Detect the range a CI job proposes (pull request base, pushed "
        "range, upstream) and check it.",
    ),
    Opt("fmt", "str", ("--format",), "text, json or github (workflow annotations)."),
    _REPO,
    _JSON,
)

RUN = (
    Opt("run_id", "str", ("--run-id",), "Name of the run directory.", required=True),
    Opt(
        "restore",
        "flag",
        ("--restore",),
        "Snapshot protected state and undo every non-durable mutation afterwards.",
    ),
    Opt("pack", "flag", ("--pack",), "Copy outputs into the bundle's content store."),
    Opt("sign", "path", ("--sign",), "Sign at once with this key."),
    Opt("timeout", "float", ("--timeout",), "Kill the command after S seconds."),
    Opt(
        "grace",
        "float",
        ("--grace",),
        "Seconds a stopped command, and whatever it left "
        "running after it exited, get to end before they are killed.",
    ),
    Opt("seed", "int", ("--seed",), "Seed exported as CATALYTIC_SEED/PYTHONHASHSEED."),
    Opt(
        "metrics",
        "list",
        ("--metrics",),
        "Declare a metrics JSON file (repository-relative) for replay; repeatable.",
    ),
    Opt(
        "attest",
        "flag",
        ("--attest",),
        "With --sign: also write the run's in-toto attestation (attestation.intoto.json).",
    ),
    _JSON,
)
RUN_REST_HELP = "The command, after `--`."  # run's positional COMMAND...

ARCHIVE_CREATE = (
    Opt(
        "output",
        "path",
        ("-o", "--output"),
        "The archive file (default: <archive_dir>/<run_id>.catalytic.zip in a repository, else "
        "./<run_id>.catalytic.zip).",
    ),
    Opt("history", "flag", ("--history",), "Also carry the commit's ancestry."),
    Opt(
        "project_root",
        "path",
        ("--project-root",),
        "Where outputs live (default: the repository of the run directory).",
    ),
    _JSON,
)
# archive create's one positional argument, before its options in the help
ARCHIVE_CREATE_ARGS = (Opt("run_dir", "path", (), "The run directory.", required=True),)

REGISTRY_CONFIG = Opt(
    "registry_config",
    "path",
    ("--registry-config",),
    "The Docker/OCI config.json with registry credentials (default: "
    "$DOCKER_CONFIG/config.json, else ~/.docker/config.json).",
)
INSECURE = Opt(
    "insecure",
    "flag",
    ("--insecure",),
    "Allow plain HTTP to a registry that is not on this machine (loopback registries use "
    "HTTP anyway).",
)
ARCHIVE_PULL = (
    Opt(
        "output",
        "path",
        ("-o", "--output"),
        "The archive file (default: ./<run_id>.catalytic.zip; never overwritten).",
    ),
    Opt(
        "no_attestations",
        "flag",
        ("--no-attestations",),
        "Do not fetch the attestations attached to the archive.",
    ),
    REGISTRY_CONFIG,
    INSECURE,
    _JSON,
)
# archive pull's one positional argument
ARCHIVE_PULL_ARGS = (
    Opt(
        "reference",
        "str",
        (),
        "oci://HOST[:PORT]/NAME:TAG or ...@sha256:DIGEST (pins exact bytes).",
        required=True,
    ),
)

ARCHIVE_PUSH = (
    Opt(
        "attestation",
        "path",
        ("--attestation",),
        "The attestation to attach (default: RUN_DIR/attestation.intoto.json, or "
        "<run_id>.intoto.json beside the archive, when present).",
    ),
    Opt("no_attestation", "flag", ("--no-attestation",), "Push the archive only."),
    Opt(
        "chunk_size",
        "int",
        ("--chunk-size",),
        "Upload in PATCH chunks of this many MiB (for a registry, or a proxy before it, that "
        "caps request bodies). Default: one streamed PUT, sent again in 64 MiB chunks if the "
        "registry answers 413.",
        minimum=1,
    ),
    REGISTRY_CONFIG,
    INSECURE,
    _JSON,
)
# archive push's two positional arguments, in order
ARCHIVE_PUSH_ARGS = (
    Opt(
        "source",
        "path",
        (),
        "An archive file, or a run directory (archived first, as `archive create` would).",
        required=True,
    ),
    Opt(
        "target",
        "str",
        (),
        "oci://HOST[:PORT]/NAME[:TAG] (the tag defaults to the run id).",
        required=True,
    ),
)

REPORT = (
    Opt(
        "out",
        "path",
        ("--out",),
        "Directory to write report.html into (default: the reports directory, .catalytic/reports).",
    ),
    Opt("open_it", "flag", ("--open",), "Open the report in a web browser afterwards."),
    _REPO,
    _JSON,
)


def table(options: Sequence[Opt]) -> dict[str, tuple[str, str]]:
    """option spelling → (field, kind), what `parse_options` reads."""
    return {name: (o.field, o.kind) for o in options for name in o.names}


def minimums(options: Sequence[Opt]) -> dict[str, int]:
    """field → the least value its number may take, what `parse_options` checks."""
    return {o.field: o.minimum for o in options if o.minimum is not None}


DIGEST_OPTIONS = table(DIGEST)
CHECK_OPTIONS = table(CHECK)
RUN_OPTIONS = table(RUN)
ARCHIVE_CREATE_OPTIONS = table(ARCHIVE_CREATE)
ARCHIVE_PULL_OPTIONS = table(ARCHIVE_PULL)
ARCHIVE_PUSH_OPTIONS = table(ARCHIVE_PUSH)
REPORT_OPTIONS = table(REPORT)
