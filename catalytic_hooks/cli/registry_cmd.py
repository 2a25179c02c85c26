"""`archive push|pull`, and `oci://` references wherever a command takes an archive file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.options import JsonOpt
from catalytic_hooks.cli.output import handled, result, say
from catalytic_hooks.core.outcomes import SuccessCode

RegistryConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry-config",
        help="The Docker/OCI config.json with registry "
        "credentials (default: $DOCKER_CONFIG/config.json, else "
        "~/.docker/config.json).",
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Allow plain HTTP to a registry that is not on this "
        "machine (loopback registries use HTTP anyway).",
    ),
]


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
    from catalytic_hooks.cli.archive_cmd import caller_limits
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


def pull_cmd(
    reference: Annotated[
        str,
        typer.Argument(help="oci://HOST[:PORT]/NAME:TAG or ...@sha256:DIGEST (pins exact bytes)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="The archive file (default: ./<run_id>.catalytic.zip; never overwritten).",
        ),
    ] = None,
    no_attestations: Annotated[
        bool,
        typer.Option(
            "--no-attestations", help="Do not fetch the attestations attached to the archive."
        ),
    ] = False,
    registry_config: RegistryConfigOpt = None,
    insecure: InsecureOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Pull a run's archive (digest and size checked while streaming, through the verified
    cache), and its attestations beside it (<run_id>.intoto.json)."""
    from catalytic_hooks.registry.pull import pull

    with handled(json_mode):
        info = pull(
            reference, options(registry_config, insecure), output, attestations=not no_attestations
        )

        def human() -> None:
            say(f"pulled {info['reference']} to {info['archive_file']}")
            for a in info["attestations"]:
                say(f"  attestation {a['file']}")

        result(json_mode, True, SuccessCode.OK, info, human)
