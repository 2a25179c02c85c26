"""Canonical JSON (docs/FORMATS.md §0): the only producer of hashed or signed bytes.

Also strict loading, which rejects what the stdlib parser quietly accepts: duplicate keys,
NaN/Infinity, a BOM, invalid UTF-8 and lone surrogates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 200


def canonical_bytes(obj: Any) -> bytes:
    """CJ: sorted keys, no whitespace, UTF-8, no trailing newline.

    A value with a `canonical_json()` method (a compact manifest, core.records) renders itself:
    it stands in as a string carrying a random token and its bytes are spliced in, so a
    100,000-entry manifest is never turned into a dict just to be serialised."""
    rendered: list[bytes] = []
    token = os.urandom(12).hex()

    def default(value: Any) -> str:
        render = getattr(value, "canonical_json", None)
        if render is None:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        rendered.append(render())
        return f"{token}:{len(rendered) - 1}"

    try:
        text = json.dumps(
            obj,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=default,
        ).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise CatalyticError(
            ErrorCode.JSON_INVALID, f"value cannot be canonicalised: {exc}"
        ) from exc
    for i, data in enumerate(rendered):
        text = text.replace(f'"{token}:{i}"'.encode(), data, 1)
    return text


def json_text_bytes(text: str) -> bytes:
    """Canonical JSON text rendered by hand (a long list's items, json.dumps's own string
    encoder for the strings) as its UTF-8 bytes, refused as canonical_bytes refuses a lone
    surrogate."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CatalyticError(
            ErrorCode.JSON_INVALID, f"value cannot be canonicalised: {exc}"
        ) from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_hash(obj: Any) -> str:
    return sha256_hex(canonical_bytes(obj))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _finite_float(text: str) -> float:
    # `1e400` parses to inf without ever spelling "Infinity": refused like the constant itself.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is not finite")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        raise ValueError("JSON nested too deeply")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(
            _has_lone_surrogate(k, depth + 1) or _has_lone_surrogate(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_lone_surrogate(v, depth + 1) for v in value)
    return False


def loads_strict(data: bytes, *, what: str = "JSON") -> Any:
    """Parse UTF-8 JSON strictly; raise CatalyticError(JSON_INVALID) with the reason."""
    if len(data) > MAX_JSON_BYTES:
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: larger than {MAX_JSON_BYTES} bytes")
    if data.startswith(b"\xef\xbb\xbf"):
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: starts with a UTF-8 BOM")
    try:
        text = data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: invalid UTF-8 ({exc})") from exc
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
        # The walk checks two things: nesting deeper than MAX_DEPTH, which needs more than
        # MAX_DEPTH opening brackets in the text, and lone surrogates, which a decoded string
        # holds only from a \uD800-\uDFFF escape (strict UTF-8 decoding makes none). Text with
        # neither cannot fail it.
        deep = text.count("[") + text.count("{") > MAX_DEPTH
        if (deep or _SURROGATE_ESCAPE.search(text)) and _has_lone_surrogate(value):
            raise ValueError("lone surrogate in a string")
    except RecursionError as exc:
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise CatalyticError(ErrorCode.JSON_INVALID, f"{what}: {exc}") from exc
    return value


def proof_hash(proof_without_hash: dict[str, Any]) -> str:
    """docs/FORMATS.md §3 `proof_hash`: the one hash computed with ASCII escaping on (the format's
    historical quirk). Kept here so every hashed byte still comes from this module."""
    text = json.dumps(proof_without_hash, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return sha256_hex(text.encode("ascii"))
