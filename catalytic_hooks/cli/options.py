"""Typer option types shared by several commands (the repository and policy helpers they use,
Typer-free, are in context.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
RepoOpt = Annotated[
    Path | None,
    typer.Option(
        "--repo",
        "--repo-root",
        help="Repository (default: the one containing the current directory).",
    ),
]
TrustFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust-file",
        help="Trusted-validators file to judge signers by (default: "
        "the one of the repository this command runs in, never the bundle's own).",
    ),
]
ListOpt = Annotated[
    list[str] | None,
    typer.Option(help="Comma-separated roots; repeatable. Overrides the configuration."),
]
