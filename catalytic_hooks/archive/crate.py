"""The archive's RO-Crate (RO-Crate 1.1, Process Run Crate profile 0.5): one CreateAction for the
run, with its command (the instrument), start and end time, agent (the validator that signed the
bundle), result (every output with its SHA-256) and actionStatus.

Rendered only from the signed bundle (TASK_SPEC, STATUS, OUTPUT_HASHES, the validator's id), as
canonical JSON: the reader renders it again from what it extracted and requires the same bytes,
so the crate says nothing the signature does not cover.
"""

from __future__ import annotations

import re
import shlex
from json.encoder import encode_basestring as _str
from typing import Any
from urllib.parse import quote

from catalytic_hooks.core.canonical import canonical_bytes, json_text_bytes

CONTEXT = "https://w3id.org/ro/crate/1.1/context"
RO_CRATE = "https://w3id.org/ro/crate/1.1"
PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"


_UNQUOTED = re.compile(r"[A-Za-z0-9_.~/-]*")


def _quote_path(path: str) -> str:
    """`quote(path)`: a path of only the characters it leaves alone (a content-store path of a
    run id in plain ASCII, nearly all) is returned as is, 10,000 calls cheaper."""
    return path if _UNQUOTED.fullmatch(path) else quote(path)


def _ref(i: str) -> dict[str, str]:
    return {"@id": i}


class _Refs:
    """A list of `{"@id": ...}` that renders its own canonical JSON (canonical_bytes splices
    it in): the crate lists every output twice, and 20,000 one-key objects through json.dumps
    were a tenth of `archive create`."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self._json: bytes | None = None

    def canonical_json(self) -> bytes:
        if self._json is None:  # the same list is the action's result and the root's parts
            self._json = json_text_bytes(
                "[" + ",".join('{"@id":' + _str(i) + "}" for i in self.ids) + "]"
            )
        return self._json


def _file(entity_id: str, keys: list[str], size: int, sha256: str) -> str:
    """One File entity's canonical JSON, its keys in canonical (code point) order, the strings
    escaped by json.dumps's own encoder: what canonical_bytes renders for the same dict
    (tests/test_archive.py re-canonicalises the crate and requires the same bytes)."""
    alternates = ',"alternateName":[' + ",".join(map(_str, keys[1:])) + "]" if keys[1:] else ""
    # contentSize is the decimal digits of an int as a string: nothing in it to escape
    return (
        f'{{"@id":{_str(entity_id)},"@type":"File"{alternates},"contentSize":"{size:d}",'
        f'"name":{_str(keys[0])},"sha256":{_str(sha256)}}}'
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _iso(value: Any) -> str | None:
    """STATUS's `2026-11-30T21:17:33Z` as `2026-11-30T21:17:33+00:00` (the profile's form)."""
    if not isinstance(value, str):
        return None
    return value[:-1] + "+00:00" if value.endswith("Z") else value


def render_crate(
    *,
    run_id: str,
    task_spec: Any,
    status: Any,
    hashes: dict[str, str],
    sizes: dict[str, int],
    validator_id: str,
    commit: str | None,
    store_paths: dict[str, str],
) -> bytes:
    """`store_paths`: output key → its path inside the crate (the content store)."""
    spec = task_spec if isinstance(task_spec, dict) else {}
    st = status if isinstance(status, dict) else {}
    command = spec.get("command")
    argv = [c for c in command if isinstance(c, str)] if isinstance(command, list) else []
    action_id = f"#run-{quote(run_id, safe='')}"
    agent_id = f"#validator-{validator_id}"
    # One File per stored blob: outputs with the same bytes share one content-store file, so
    # its `name` is the first of their keys and `alternateName` lists the others.
    by_path: dict[str, list[str]] = {}
    for key in sorted(hashes):
        by_path.setdefault(store_paths[key], []).append(key)
    ids, files = [], []
    for path, keys in sorted(by_path.items()):
        ids.append(_quote_path(path))
        files.append(_file(ids[-1], keys, sizes[keys[0]], hashes[keys[0]].removeprefix("sha256:")))
    refs = _Refs(ids)
    ok = st.get("status") == "success" and st.get("cmp01") == "pass"
    action: dict[str, Any] = {
        "@id": action_id,
        "@type": "CreateAction",
        "name": f"catalytic run {run_id}",
        "description": f"The command {shlex.join(argv)!r} run at commit {commit} as a "
        "catalytic operation; its outputs are the result.",
        "instrument": _ref("#command"),
        "agent": _ref(agent_id),
        "result": refs,
        "actionStatus": COMPLETED if ok else FAILED,
    }
    for key, field in (("startTime", "started_at"), ("endTime", "finished_at")):
        when = _iso(st.get(field))
        if when:
            action[key] = when
    root = {
        "@id": "./",
        "@type": "Dataset",
        "name": f"catalytic run {run_id}",
        "description": f"Archive of the signed catalytic-hooks run {run_id}: the run bundle, "
        "the bytes of every output and the source commit as git objects.",
        "datePublished": _iso(st.get("finished_at")) or "1980-01-01T00:00:00+00:00",
        "license": _ref("#license"),
        "conformsTo": _ref(PROFILE),
        "mentions": _ref(action_id),
        "hasPart": refs,
    }
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "about": _ref("./"),
            "conformsTo": _ref(RO_CRATE),
        },
        root,
        {"@id": PROFILE, "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
        {
            "@id": "#license",
            "@type": "CreativeWork",
            "name": "not recorded",
            "description": "The run records no licence for its outputs; ask whoever published "
            "the archive.",
        },
        action,
        {
            "@id": "#command",
            "@type": "SoftwareApplication",
            "name": argv[0] if argv else "(no command)",
            "description": shlex.join(argv),
            "softwareVersion": commit or "unknown",
        },
        {
            "@id": agent_id,
            "@type": "Person",
            "name": f"validator {validator_id[:16]}",
            "identifier": validator_id,
        },
    ]
    # {"@context": ..., "@graph": [...]} put together as canonical_bytes would (its keys in
    # order), the File entities rendered directly (see _file)
    parts = [canonical_bytes(e) for e in graph]
    if files:  # one string of them all, encoded once
        parts.append(json_text_bytes(",".join(files)))
    return b'{"@context":' + canonical_bytes(CONTEXT) + b',"@graph":[' + b",".join(parts) + b"]}"
