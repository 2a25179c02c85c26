"""The tree digest formula (docs/FORMATS.md §1): records, their hash, the exclusions hash.

Pure: the views and the hashing that produce a manifest live in the git layer (git/digests.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from catalytic_hooks.core.canonical import canonical_hash, sha256_hex
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy


@dataclass(frozen=True)
class TreeDigest:
    digest: str
    manifest: dict[str, str]

    @property
    def file_count(self) -> int:
        return len(self.manifest)


def manifest_digest(manifest: dict[str, str]) -> str:
    """sha256 of `path:hash\\n` records sorted by code point (docs/FORMATS.md §1)."""
    check_record_paths(manifest)
    keys = sorted(manifest)
    return text_digest("".join(map("{}:{}\n".format, keys, map(manifest.__getitem__, keys))))


def text_digest(records: str) -> str:
    """SHA-256 of the rendered records; a name that is not valid UTF-8 fails closed."""
    try:
        return sha256_hex(records.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise CatalyticError(
            ErrorCode.DIGEST_COMPUTATION_FAILED, f"a path is not valid UTF-8: {exc}"
        ) from exc


def check_record_paths(paths: Iterable[str]) -> None:
    """Fail closed on any path that would make the records ambiguous (one C-level scan of all
    names; the slow per-path check runs only to name the offender)."""
    joined = "/".join(paths)
    if "\n" in joined or "\r" in joined or "\x00" in joined:
        for path in paths:
            _check_record_path(path)


def _check_record_path(path: str) -> None:
    # A newline in a name would let one crafted file impersonate two records.
    for ch, name in (("\n", "newline"), ("\r", "carriage return"), ("\x00", "NUL")):
        if ch in path:
            raise CatalyticError(
                ErrorCode.DIGEST_COMPUTATION_FAILED,
                f"path {path!r} contains a {name}; the digest would be ambiguous",
                path=path,
            )


def exclusions_spec_hash(policy: Policy) -> str:
    return canonical_hash(policy.spec_roots())
