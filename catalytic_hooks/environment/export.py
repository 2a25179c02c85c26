"""`env export`: the recorded environment as a lock other tools install.

`requirements` (the primary format): one `name==version` per pin with every recorded
`--hash`, which `pip install --no-deps --require-hashes -r FILE` and `uv pip sync
--require-hashes FILE` install exactly. `pylock` (PEP 751, still preview in uv and experimental
in pip): the same pins and hashes as `[[packages]]`. Installs built from the repository
(editable, directory) are listed as comments: they come from a checkout, not from an index."""

from __future__ import annotations

import json
from typing import Any

from catalytic_hooks.environment.pins import Pin, plan_of

FORMATS = ("requirements", "pylock")


def _wheel_name(pin: Pin, packages: dict[str, dict[str, Any]]) -> str | None:
    """The installed wheel's file name, from the tags its WHEEL file recorded, when the pin has
    exactly one recorded hash (several hashes come from a lock file and name several files)."""
    rec = packages.get(pin.name, {})
    tags = rec.get("wheel_tags")
    if len(pin.hashes) != 1 or not isinstance(tags, list) or not tags:
        return None
    parts = [t.split("-") for t in tags if isinstance(t, str) and t.count("-") == 2]
    if not parts:
        return None
    py, abi, plat = (".".join(sorted({p[i] for p in parts})) for i in range(3))
    build = rec.get("wheel_build")
    dist = pin.name.replace("-", "_")
    return f"{dist}-{pin.version}{'-' + build if build else ''}-{py}-{abi}-{plat}.whl"


def export(environment: Any, fmt: str, run_id: str) -> tuple[str, list[str]]:
    """(text, names of pins without a recorded hash)."""
    plan = plan_of(environment)
    unhashed = [p.name for p in plan.wheels if not p.hashes]
    head = [
        f"# The environment of run {run_id}, exported by catalytic-hooks.",
        f"# Python: {plan.implementation} {plan.python_version}; environment hash "
        f"{plan.environment_hash}",
    ]
    built = [
        f"# built from the repository, not listed: {p.name}=={p.version} "
        f"({p.kind} install of {p.repo_path})"
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
    packages = {
        str(p.get("name")): p for p in environment.get("packages", []) if isinstance(p, dict)
    }
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
        name = _wheel_name(p, packages)
        for h in p.hashes:
            out += ["[[packages.wheels]]"]
            if name is not None:
                out.append(f"name = {json.dumps(name)}")
            out.append(f"hashes = {{ sha256 = {json.dumps(h.removeprefix('sha256:'))} }}")
    return "\n".join(out) + "\n", unhashed
