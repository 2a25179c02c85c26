"""`env export`: the recorded environment as a lock other tools install.

`requirements` (the primary format): one `name==version` per pin with every recorded
`--hash`, which `pip install --no-deps --require-hashes -r FILE` and `uv pip sync
--require-hashes FILE` install exactly. `pylock` (PEP 751, still preview in uv and experimental
in pip): the same pins and hashes as `[[packages]]`, each wheel with the `url` (an index) or
`path` (a wheelhouse) where the rebuild's sources offer exactly those bytes, since PEP 751 wheels
must say where they are (uv refuses one that does not). Installs built from the repository
(editable, directory) are listed as comments: they come from a checkout, not from an index."""

from __future__ import annotations

import json
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.environment.pins import plan_of
from catalytic_hooks.environment.sources import Source, locate

FORMATS = ("requirements", "pylock")


def _inert(text: str) -> str:
    """`text` for a comment line: on one line, ASCII, no control character (JSON's escapes,
    and DEL, which TOML forbids in a comment). A run id is a directory's name, which no
    signature covers; with a newline in it, `r\nevil==1.0 --hash=...` would become a
    requirement that pip installs."""
    return json.dumps(text)[1:-1].replace("\x7f", "\\u007f")


def export(
    environment: Any, fmt: str, run_id: str, sources: list[Source] | None = None
) -> tuple[str, list[str]]:
    """(text, names of pins without a recorded hash). `pylock` needs the `sources` where the
    recorded files are (those of a rebuild); a hashed pin none of them offers is refused."""
    plan = plan_of(environment)
    unhashed = [p.name for p in plan.wheels if not p.hashes]
    head = [
        f"# The environment of run {_inert(run_id)}, exported by catalytic-hooks.",
        f"# Python: {plan.implementation} {plan.python_version}; environment hash "
        f"{plan.environment_hash}",
    ]
    built = [
        f"# built from the repository, not listed: {p.name}=={p.version} "
        f"({p.kind} install of {_inert(p.repo_path or '')})"
        for p in plan.builds
    ]
    if unhashed:
        head.append(
            f"# no hash recorded for: {', '.join(unhashed)} (pip's --require-hashes "
            "refuses this file until they have one)"
        )
    if fmt == "requirements":
        head.append(
            "# install: pip install --no-deps --require-hashes -r THIS_FILE  |  "
            "uv pip sync --require-hashes THIS_FILE"
        )
        lines = [*head, *built]
        for p in plan.wheels:
            lines.append(" \\\n    ".join([p.requirement(), *(f"--hash={h}" for h in p.hashes)]))
        return "\n".join(lines) + "\n", unhashed
    located = {}
    for p in plan.wheels:
        if not p.hashes:
            continue
        located[p.name] = locate(p, sources or [])
        if not located[p.name]:
            raise CatalyticError(
                ErrorCode.ENV_REBUILD_FAILED,
                f"no source offers {p.name} {p.version} "
                "as the bytes the run recorded; a pylock.toml names where each wheel is: give "
                "--find-links DIR (a wheelhouse) or --index URL",
                package=p.name,
                version=p.version,
                sources=[s.location for s in sources or []],
            )
    out = [
        *head,
        *built,
        'lock-version = "1.0"',
        'created-by = "catalytic-hooks"',
        f'requires-python = "=={plan.python_version}"',
    ]
    for p in plan.wheels:
        out += [
            "",
            "[[packages]]",
            f"name = {json.dumps(p.name)}",
            f"version = {json.dumps(p.version)}",
        ]
        indexes = sorted({f.index for f in located.get(p.name, []) if f.index})
        if len(indexes) == 1:
            out.append(f"index = {json.dumps(indexes[0])}")
        for f in located.get(p.name, []):
            out += ["[[packages.wheels]]", f"name = {json.dumps(f.filename)}"]
            if f.url is not None:
                out.append(f"url = {json.dumps(f.url)}")
            else:
                out.append(f"path = {json.dumps(f.path)}")
            out.append(f"hashes = {{ sha256 = {json.dumps(f.sha256.removeprefix('sha256:'))} }}")
    return "\n".join(out) + "\n", unhashed
