"""Typed results: what a command concludes when it raises no error (`SuccessCode`, `VerdictCode`)
and what a replay concludes (`Verdict`). Values are the stable spellings of the reports, the
chronicle and the JSON output (a `StrEnum` member serialises as its value, so the bytes do not
change); compare and branch on the members, never on the strings."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """A replay's verdict (README "Replay"): does the archived run reproduce?"""

    EXACT = "exact"  # every output has the recorded hash
    WITHIN = "within-tolerance"  # outputs differ only in metrics files, within the tolerance
    DRIFT = "drift-verified"  # two replays agree with each other, not with the archive
    NONDET = "nondeterministic"  # the two replays differ from each other
    FAILED = "failed"  # no comparison: the bundle, the environment or the command failed

    @property
    def code(self) -> SuccessCode | VerdictCode:
        """The `code` of `replay --json`: the verdict in capitals (`WITHIN_TOLERANCE`), a success
        code when the verdict passes."""
        name = self.value.upper().replace("-", "_")
        return SuccessCode[name] if self.passing else VerdictCode[name]

    @property
    def passing(self) -> bool:
        """The run reproduced: the replay command exits 0, `verified` is true."""
        return self in PASSING


# The passing verdicts; `verdict in PASSING` also holds for a verdict read back as a string.
PASSING = frozenset({Verdict.EXACT, Verdict.WITHIN})


class SuccessCode(StrEnum):
    """The `code` of a `--json` envelope with `"ok": true` (docs/CODES.md, "Success codes"), and
    the seed receipts' passing `verdict`. A replay that reproduces answers its `Verdict.code`."""

    OK = "OK"  # the command did what was asked (install, create, push, list, ...)
    PASS = "PASS"  # the input was judged and accepted (verify, check, digest, restore, run)
    EXACT = "EXACT"  # `replay`: Verdict.EXACT
    WITHIN_TOLERANCE = "WITHIN_TOLERANCE"  # `replay`: Verdict.WITHIN


class VerdictCode(StrEnum):
    """The `code` of an envelope with `"ok": false` that judges the input without an `ErrorCode`
    (nothing is raised: the command ran and says no); exit 1."""

    FAIL = "FAIL"  # the seed receipts' failing verdict (purity-scan, restore-proof, the demo)
    DOCTOR_PROBLEMS = "DOCTOR_PROBLEMS"  # `doctor` found something to fix
    VALIDATION_FAILED = "VALIDATION_FAILED"  # `validate`: a replay in the sample did not pass
    DRIFT_VERIFIED = "DRIFT_VERIFIED"  # `replay`: Verdict.DRIFT
    NONDETERMINISTIC = "NONDETERMINISTIC"  # `replay`: Verdict.NONDET
    FAILED = "FAILED"  # `replay`: Verdict.FAILED
