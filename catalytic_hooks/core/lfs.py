"""git-lfs pointer files: what git versions in place of an LFS-tracked file's content.

A pointer names the SHA-256 of the content it stands for, so an output whose committed blob is a
pointer can be verified against its recorded hash without the content being present.
"""

from __future__ import annotations

import re

_POINTER = re.compile(
    rb"^version https://git-lfs\.github\.com/spec/v1\n(?:[a-z0-9.-]+ [^\n]*\n)*?"
    rb"oid sha256:([0-9a-f]{64})\nsize (\d+)\n(?:[a-z0-9.-]+ [^\n]*\n)*$"
)
MAX_POINTER = 1024  # git-lfs never writes a larger pointer


def pointer_oid(data: bytes) -> str | None:
    """The content's SHA-256 hex if `data` is an LFS pointer, else None."""
    if len(data) > MAX_POINTER:
        return None
    m = _POINTER.match(data)
    return m.group(1).decode() if m else None
