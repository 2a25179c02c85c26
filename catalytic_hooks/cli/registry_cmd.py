"""`archive push|pull`, and `oci://` references wherever a command takes an archive file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.archive_impl import ArchivePullArgs, run_archive_pull
from catalytic_hooks.cli.hot_options import (
    ARCHIVE_PULL,
    ARCHIVE_PULL_ARG,
    INSECURE,
    REGISTRY_CONFIG,
)
from catalytic_hooks.cli.options import JsonOpt, typer_command
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.outcomes import SuccessCode

RegistryConfigOpt = Annotated[
    Path | None, typer.Option(*REGISTRY_CONFIG.names, help=REGISTRY_CONFIG.help)
]
InsecureOpt = Annotated[bool, typer.Option(*INSECURE.names, help=INSECURE.help)]


def options(config: Path | None, insecure: bool) -> Any:
    from catalytic_hooks.registry.pull import Options

    return Options(config=config, insecure=insecure)


def oci_text(arg: Path | str) -> str | None:
    """The `oci://` reference an argument spells, or None. A Path argument has folded the
    scheme's `//` into one `/`; no file path a consumer takes starts with `oci:/`."""
    text = str(arg)
    if text.startswith("oci://"):
        return text
    if text.startswith("oci:/"):
        return "oci://" + text[len("oci:/") :]
    return None


@contextlib.contextmanager
def resolved(
    args: list[Path], opts: Any, *, attestations: bool = False
) -> Iterator[tuple[list[Path], list[dict[str, Any]]]]:
    """The arguments with every `oci://` reference pulled (checked, into the cache) and
    replaced by a private path to the archive, removed afterwards; and what was pulled (with
    `attestations`, each entry's `attached`: the attestations found for it)."""
    from catalytic_hooks.registry.pull import pulled_archive

    with contextlib.ExitStack() as stack:
        paths: list[Path] = []
        pulled: list[dict[str, Any]] = []
        for arg in args:
            text = oci_text(arg)
            if text is None:
                paths.append(arg)
                continue
            path, info = stack.enter_context(pulled_archive(text, opts, attestations=attestations))
            paths.append(path)
            pulled.append({**info, "path": str(path)})
        yield paths, pulled


def name_pulled(rows: list[dict[str, Any]], pulled: list[dict[str, Any]]) -> None:
    """Rows that name a pulled archive's private path name its reference instead."""
    names = {p["path"]: p["reference"] for p in pulled}
    for row in rows:
        for key in ("archive", "run_dir"):
            if row.get(key) in names:
                row[key] = names[row[key]]


def push_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            help="An archive file, or a run directory (archived first, as `archive create` would)."
        ),
    ],
    target: Annotated[
        str, typer.Argument(help="oci://HOST[:PORT]/NAME[:TAG] (the tag defaults to the run id).")
    ],
    attestation: Annotated[
        Path | None,
        typer.Option(
            "--attestation",
            help="The attestation "
            "to attach (default: RUN_DIR/attestation.intoto.json, or "
            "<run_id>.intoto.json beside the archive, when present).",
        ),
    ] = None,
    no_attestation: Annotated[
        bool, typer.Option("--no-attestation", help="Push the archive only.")
    ] = False,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk-size",
            min=1,
            help="Upload in PATCH chunks of this many MiB (for a registry, or a proxy before it, "
            "that caps request bodies). Default: one streamed PUT, sent again in 64 MiB chunks "
            "if the registry answers 413.",
        ),
    ] = None,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Push a run's archive to an OCI registry, with its attestation as a referrer; print the
    digest reference."""
    from catalytic_hooks.cli.context import caller_limits
    from catalytic_hooks.registry.push import push
    from catalytic_hooks.registry.reference import parse

    with handled(json_mode):
        ref = parse(target)
        client = options(registry_config, insecure).client(ref)
        if chunk_size is not None:
            client.chunk_size = chunk_size * 1024 * 1024
        try:
            info = push(
                source,
                ref,
                client,
                limits=caller_limits(),
                attestation=attestation,
                with_attestation=not no_attestation,
            )
        finally:
            client.close()

        def human() -> None:
            say(info["reference"])
            say(
                f"  tagged {info['tagged']}; {info['blobs_uploaded']} blob(s) uploaded, "
                f"{info['blobs_skipped']} already there"
            )
            if info["attestation"]:
                say(f"  attestation {info['attestation']['digest']} ({info['attestation']['via']})")

        result(json_mode, True, SuccessCode.OK, info, human)


pull_cmd = typer_command(
    ARCHIVE_PULL,
    ArchivePullArgs,
    run_archive_pull,
    "Pull a run's archive (digest and size checked while streaming, through the verified "
    "cache), and its attestations beside it (<run_id>.intoto.json).",
    positional=ARCHIVE_PULL_ARG,
)
