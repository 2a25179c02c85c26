"""The tree digest formula (docs/FORMATS.md §1): records, their hash, the exclusions hash.

Pure: the views and the hashing that produce a manifest live in the git layer (git/digests.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from catalytic_hooks.core.canonical import canonical_hash, sha256_hex
from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.core.records import Overlay, Records


class TreeDigest:
    """A digest and its manifest. `records` is the compact form (core.records); `manifest`, a
    dict, is built on first use only: most digests never need 100,000 string pairs."""

    __slots__ = ("_dict", "digest", "records")

    def __init__(self, records: Overlay, digest: str | None = None):
        self.records = records
        self.digest = digest if digest is not None else records.digest()
        self._dict: dict[str, str] | None = None

    @classmethod
    def of(cls, values: Mapping[str, str]) -> TreeDigest:
        check_record_paths(values)
        return cls(Overlay(Records.from_values(values)))

    @property
    def manifest(self) -> dict[str, str]:
        if self._dict is None:
            self._dict = self.records.to_dict()
        return self._dict

    @property
    def file_count(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        """Same digest over the same records (byte for byte), however each was computed."""
        if not isinstance(other, TreeDigest):
            return NotImplemented
        return self.digest == other.digest and self.records.text() == other.records.text()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TreeDigest({self.digest}, {self.file_count} records)"


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
