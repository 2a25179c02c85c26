"""What a check reports: one finding per path and reason, naming the commit where it was made."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

MUTATION = "mutation"
TMP_RESIDUE = "tmp-residue"
BUNDLE = "bundle"
POLICY = "policy"
CHRONICLE = "chronicle"
AMENDED = "amended"  # an accepted signed amendment: reported, never blocking


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    reason: str
    commit: str | None = None
    subject: str | None = None
    code: str | None = None
    blocking: bool = True

    def line(self) -> str:
        where = f' (commit {self.commit[:10]} "{self.subject}")' if self.commit else ""
        return f"{self.path}: {self.reason}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if v is not None and not (k == "blocking" and v)}

    def at(self, commit: str, subject: str) -> Finding:
        return replace(self, commit=commit, subject=subject)


# Where findings go as soon as they are found (the hooks print them while a long range is still
# being judged); None: they are only returned.
_REPORTER: list[Callable[[Finding], None]] = []


def set_reporter(fn: Callable[[Finding], None] | None) -> None:
    _REPORTER[:] = [fn] if fn is not None else []


def report(found: Iterable[Finding]) -> None:
    for fn in _REPORTER:
        for f in found:
            fn(f)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(set(findings), key=lambda f: (f.path, f.kind, f.commit or "", f.reason))


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking]


def summary(findings: Sequence[Finding], what: str, inspect: str) -> str:
    n = len(findings)
    return (f"catalytic: {n} finding{'s' if n != 1 else ''} block{'s' if n == 1 else ''} this "
            f"{what}; inspect with `{inspect}`")


def _escape(text: str, prop: bool = False) -> str:
    out = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return out.replace(":", "%3A").replace(",", "%2C") if prop else out


def github_annotation(f: Finding) -> str:
    """A GitHub Actions workflow command: an error on the file for a blocking finding, a notice
    for an accepted amendment."""
    level = "error" if f.blocking else "notice"
    where = f" (commit {f.commit[:10]})" if f.commit else ""
    return (f"::{level} file={_escape(f.path, True)},title={_escape('catalytic ' + f.kind, True)}"
            f"::{_escape(f.reason + where)}")
