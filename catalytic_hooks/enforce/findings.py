"""What a check reports: one finding per path and reason, naming the commit where it was made."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class FindingKind(StrEnum):
    """What a finding is about; its value is the `kind` of the JSON output and the title of a
    GitHub annotation (`catalytic mutation`)."""

    MUTATION = "mutation"  # a protected path changed outside the durable roots
    TMP_RESIDUE = "tmp-residue"  # a file under a tmp root staged, pushed or left on disk
    BUNDLE = "bundle"  # a run bundle in the change that fails verification or is untrusted
    POLICY = "policy"  # the policy, the trust file or the governing policy of a ref
    CHRONICLE = "chronicle"  # the chronicle rewritten instead of appended to
    AMENDED = "amended"  # an accepted signed amendment: reported, never blocking
    REF = "ref"  # a ref the server gate refuses whatever it points to (enforce.server.ref_findings)
    ADOPTION = "adoption"  # the adoption commit changes more than the policy and the trust file


@dataclass(frozen=True)
class Finding:
    path: str
    kind: FindingKind
    reason: str
    commit: str | None = None
    subject: str | None = None
    code: str | None = None
    blocking: bool = True

    def line(self) -> str:
        where = f' (commit {self.commit[:10]} "{self.subject}")' if self.commit else ""
        return f"{self.path}: {self.reason}{where}"

    def to_dict(self) -> dict[str, Any]:
        # vars(), not asdict(): every field is a str, an enum or a bool, so asdict's deep copy
        # only cost time (100 us a finding: minutes for a push with a million of them).
        return {
            k: v for k, v in vars(self).items() if v is not None and not (k == "blocking" and v)
        }

    def at(self, commit: str, subject: str) -> Finding:
        return replace(self, commit=commit, subject=subject)

    def annotation(self) -> str:
        """A GitHub Actions workflow command: an error on the file for a blocking finding, a
        notice for an accepted amendment."""
        level = "error" if self.blocking else "notice"
        where = f" (commit {self.commit[:10]})" if self.commit else ""
        return (
            f"::{level} file={_escape(self.path, True)},"
            f"title={_escape('catalytic ' + self.kind, True)}::{_escape(self.reason + where)}"
        )


class Reporter:
    """Where a hook's findings go the moment they are found (a long range is still being judged),
    each shown once. Passed down explicitly to the checks that find them; no reporter: findings
    are only returned."""

    def __init__(self, show: Callable[[Finding], None]) -> None:
        self._show = show
        self._shown: set[Finding] = set()

    def found(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            if f not in self._shown:
                self._shown.add(f)
                self._show(f)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(set(findings), key=lambda f: (f.path, f.kind, f.commit or "", f.reason))


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking]


@dataclass(frozen=True)
class CheckReport:
    """The findings of one check, rendered once for each output: a finding's `line()` (human),
    `to_dict()` (JSON) and `annotation()` (GitHub); the report's `to_dict()` and `summary()`."""

    findings: Sequence[Finding]
    what: str  # what a blocking finding stops: "commit", "push", "change"

    @property
    def blocking(self) -> list[Finding]:
        return blocking(self.findings)

    @property
    def ok(self) -> bool:
        return not self.blocking

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.blocking],
            "amendments": [f.to_dict() for f in self.findings if not f.blocking],
        }

    def summary(self, inspect: str) -> str:
        return summary(self.blocking, self.what, inspect)


def summary(findings: Sequence[Finding], what: str, inspect: str) -> str:
    n = len(findings)
    return (
        f"catalytic: {n} finding{'s' if n != 1 else ''} block{'s' if n == 1 else ''} this "
        f"{what}; inspect with `{inspect}`"
    )


def _escape(text: str, prop: bool = False) -> str:
    out = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return out.replace(":", "%3A").replace(",", "%2C") if prop else out
