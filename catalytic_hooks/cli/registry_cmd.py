"""`archive push|pull`, and `oci://` references wherever a command takes an archive file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.archive_impl import (
    ArchivePullArgs,
    ArchivePushArgs,
    run_archive_pull,
    run_archive_push,
)
from catalytic_hooks.cli.hot_options import (
    ARCHIVE_PULL,
    ARCHIVE_PULL_ARGS,
    ARCHIVE_PUSH,
    ARCHIVE_PUSH_ARGS,
    INSECURE,
    REGISTRY_CONFIG,
)
from catalytic_hooks.cli.options import typer_command

RegistryConfigOpt = Annotated[
    Path | None, typer.Option(*REGISTRY_CONFIG.names, help=REGISTRY_CONFIG.help)
]
InsecureOpt = Annotated[bool, typer.Option(*INSECURE.names, help=INSECURE.help)]


def options(config: Path | None, insecure: bool) -> Any:
    from catalytic_hooks.registry.pull import Options

    return Options(config=config, insecure=insecure)


def oci_text(arg: Path | str) -> str | None:
    """The `oci://` reference an argument spells (registry.reference.spelled), or None."""
    from catalytic_hooks.registry.reference import spelled

    return spelled(arg)


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


push_cmd = typer_command(
    ARCHIVE_PUSH,
    ArchivePushArgs,
    run_archive_push,
    "Push a run's archive to an OCI registry, with its attestation as a referrer; print the "
    "digest reference.",
    positional=ARCHIVE_PUSH_ARGS,
)

pull_cmd = typer_command(
    ARCHIVE_PULL,
    ArchivePullArgs,
    run_archive_pull,
    "Pull a run's archive (digest and size checked while streaming, through the verified "
    "cache), and its attestations beside it (<run_id>.intoto.json).",
    positional=ARCHIVE_PULL_ARGS,
)
