"""Typer option types shared by several commands (the repository and policy helpers they use,
Typer-free, are in context.py), and the Typer commands built from the hot commands' option
declarations (cli/fastpath.py)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from catalytic_hooks.cli.hot_options import Opt

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


_TYPES: dict[str, Any] = {
    "flag": bool,
    "str": str,
    "path": Path,
    "list": list[str],
    "int": int,
    "float": float,
}


def typer_command(
    options: Sequence[Opt],
    args_cls: Any,
    impl: Callable[[Any], None],
    doc: str,
    rest: str | None = None,
    positional: Sequence[Opt] = (),
) -> Callable[..., None]:
    """The Typer command of a hot command, built from its one declaration (cli/fastpath.py):
    each option's names, help and kind, the default from `args_cls`'s field; `rest`: the help
    of the positional arguments that fill the `command` field; `positional`: the required
    positional arguments, in order, before the options; an option's `minimum` is Typer's
    `min`. It calls `impl` with an `args_cls` filled exactly as the fast path fills it."""
    defaults = {f.name: f.default for f in dataclasses.fields(args_cls)}
    params: list[inspect.Parameter] = []
    for arg in positional:
        params.append(
            inspect.Parameter(
                arg.field,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[_TYPES[arg.kind], typer.Argument(help=arg.help)],
            )
        )
    for o in options:
        base = _TYPES[o.kind]
        default = None if o.kind == "list" else defaults[o.field]
        hint = base if o.required or default is not None else base | None
        info = typer.Option(*o.names, help=o.help, min=o.minimum)
        params.append(
            inspect.Parameter(
                o.field,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[hint, info],
                default=inspect.Parameter.empty if o.required else default,
            )
        )
        if rest is not None and o.required:
            # the positional arguments right after the required option, as Typer lists them
            params.append(
                inspect.Parameter(
                    "command",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[list[str] | None, typer.Argument(help=rest)],
                )
            )

    def command(**given: Any) -> None:
        # An option left out (None) takes its field's default, as on the fast path.
        impl(
            args_cls(
                **{
                    k: list(v) if isinstance(v, list | tuple) else v
                    for k, v in given.items()
                    if v is not None
                }
            )
        )

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command
