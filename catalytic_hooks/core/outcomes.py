"""Typed results: what a replay concludes. Values are the stable spellings of the reports, the
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
    def passing(self) -> bool:
        """The run reproduced: the replay command exits 0, `verified` is true."""
        return self in PASSING


# The passing verdicts; `verdict in PASSING` also holds for a verdict read back as a string.
PASSING = frozenset({Verdict.EXACT, Verdict.WITHIN})
