"""Stable error codes and the one exception type for expected failures.

Code values are part of the public interface (JSON output, receipts, tests): append new
members, never rename or reuse one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_BUG = 3
EXIT_PIPE = 141  # stdout's reader went away (`| head`): what a shell reports for git
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
DEBUG_ENV = "CATALYTIC_DEBUG"


class ErrorCode(StrEnum):
    @property
    def corrupts_bundle(self) -> bool:
        """A verification failure that means the bundle's own bytes are corrupt: a replay
        quarantines it (BUNDLE_CORRUPT below)."""
        return self in BUNDLE_CORRUPT

    # usage and configuration
    USAGE = "USAGE"
    CONFIG_INVALID = "CONFIG_INVALID"
    NOT_A_REPOSITORY = "NOT_A_REPOSITORY"
    GIT_FAILED = "GIT_FAILED"
    PATH_INVALID = "PATH_INVALID"
    JSON_INVALID = "JSON_INVALID"
    IO_ERROR = "IO_ERROR"
    # seed "Phase 1.5B" receipt codes (frozen there)
    DIGEST_COMPUTATION_FAILED = "DIGEST_COMPUTATION_FAILED"
    HASH_FAILED = "HASH_FAILED"
    PURITY_SCAN_FAILED = "PURITY_SCAN_FAILED"
    RESTORE_PROOF_GENERATION_FAILED = "RESTORE_PROOF_GENERATION_FAILED"
    # SPECTRUM-05 verification
    ARTIFACT_MISSING = "ARTIFACT_MISSING"
    ARTIFACT_EXTRA = "ARTIFACT_EXTRA"
    ARTIFACT_MALFORMED = "ARTIFACT_MALFORMED"
    FIELD_EXTRA = "FIELD_EXTRA"
    FIELD_MISSING = "FIELD_MISSING"
    ALGORITHM_UNSUPPORTED = "ALGORITHM_UNSUPPORTED"
    KEY_INVALID = "KEY_INVALID"
    IDENTITY_INVALID = "IDENTITY_INVALID"
    BUNDLE_ROOT_MISMATCH = "BUNDLE_ROOT_MISMATCH"
    DECISION_INVALID = "DECISION_INVALID"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    SIGNATURE_INCOMPLETE = "SIGNATURE_INCOMPLETE"
    SIGNATURE_MALFORMED = "SIGNATURE_MALFORMED"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    RESTORATION_FAILED = "RESTORATION_FAILED"
    FORBIDDEN_ARTIFACT = "FORBIDDEN_ARTIFACT"
    PATH_ESCAPE_DETECTED = "PATH_ESCAPE_DETECTED"
    OUTPUT_MISSING = "OUTPUT_MISSING"
    HASH_MISMATCH = "HASH_MISMATCH"
    CHAIN_EMPTY = "CHAIN_EMPTY"
    CHAIN_DUPLICATE_RUN = "CHAIN_DUPLICATE_RUN"
    RUN_ID_MISMATCH = "RUN_ID_MISMATCH"
    UNTRUSTED = "UNTRUSTED"
    # keys, signing, runs
    KEY_EXISTS = "KEY_EXISTS"
    SIGNING_KEY_INVALID = "SIGNING_KEY_INVALID"
    ALREADY_SIGNED = "ALREADY_SIGNED"
    RUN_EXISTS = "RUN_EXISTS"
    RUN_FAILED = "RUN_FAILED"
    # SPECTRUM-06 restore
    RESTORE_INELIGIBLE = "RESTORE_INELIGIBLE"
    RESTORE_TARGET_INVALID = "RESTORE_TARGET_INVALID"
    SOURCE_MISSING = "SOURCE_MISSING"
    TARGET_EXISTS = "TARGET_EXISTS"
    COPY_INTEGRITY_FAILED = "COPY_INTEGRITY_FAILED"
    RESTORE_VERIFICATION_FAILED = "RESTORE_VERIFICATION_FAILED"
    CHAIN_RESTORE_FAILED = "CHAIN_RESTORE_FAILED"
    RESTORE_LOCKED = "RESTORE_LOCKED"
    WORKTREE_FAILED = "WORKTREE_FAILED"
    # install
    HOOK_EXISTS = "HOOK_EXISTS"
    # replay and chronicle
    REPLAY_FAILED = "REPLAY_FAILED"
    ENV_MISMATCH = "ENV_MISMATCH"
    CHRONICLE_INVALID = "CHRONICLE_INVALID"
    # verdict of a check (findings), not an error of the tool
    CHECK_FAILED = "CHECK_FAILED"
    INTERNAL = "INTERNAL"
    # appended after the first release
    GIT_MISSING = "GIT_MISSING"
    CI_BASE_MISSING = "CI_BASE_MISSING"
    RUN_UNDO_PENDING = "RUN_UNDO_PENDING"
    UNDO_INCOMPLETE = "UNDO_INCOMPLETE"
    HISTORY_INCOMPLETE = "HISTORY_INCOMPLETE"
    FEATURE_UNAVAILABLE = "FEATURE_UNAVAILABLE"
    JOURNAL_REFUSED = "JOURNAL_REFUSED"
    NO_GOVERNING_POLICY = "NO_GOVERNING_POLICY"
    ARCHIVE_INVALID = "ARCHIVE_INVALID"
    REGISTRY_UNREACHABLE = "REGISTRY_UNREACHABLE"
    REGISTRY_AUTH = "REGISTRY_AUTH"
    REGISTRY_NOT_FOUND = "REGISTRY_NOT_FOUND"
    REGISTRY_FAILED = "REGISTRY_FAILED"
    REGISTRY_INVALID = "REGISTRY_INVALID"
    REGISTRY_DIGEST_MISMATCH = "REGISTRY_DIGEST_MISMATCH"
    REGISTRY_TAG_MOVED = "REGISTRY_TAG_MOVED"
    # environments (DESIGN §13)
    ENV_PYTHON_MISSING = "ENV_PYTHON_MISSING"
    ENV_REBUILD_FAILED = "ENV_REBUILD_FAILED"
    ENV_HASH_REFUSED = "ENV_HASH_REFUSED"
    ENV_NO_WHEEL = "ENV_NO_WHEEL"
    ENV_PIN_INVALID = "ENV_PIN_INVALID"
    REF_FORBIDDEN = "REF_FORBIDDEN"
    REF_NOT_A_COMMIT = "REF_NOT_A_COMMIT"
    ATTESTATION_MISSING = "ATTESTATION_MISSING"
    ENV_UNHASHED = "ENV_UNHASHED"
    CHANGE_TOO_LARGE = "CHANGE_TOO_LARGE"


# Verdict codes exit 1 (the input was judged and rejected); all others exit 2 (the tool could not
# do what was asked). Decided here and nowhere else.
_VERDICT_CODES = frozenset(
    {
        ErrorCode.ARTIFACT_MISSING,
        ErrorCode.ARTIFACT_EXTRA,
        ErrorCode.ARTIFACT_MALFORMED,
        ErrorCode.FIELD_EXTRA,
        ErrorCode.FIELD_MISSING,
        ErrorCode.ALGORITHM_UNSUPPORTED,
        ErrorCode.KEY_INVALID,
        ErrorCode.IDENTITY_INVALID,
        ErrorCode.BUNDLE_ROOT_MISMATCH,
        ErrorCode.DECISION_INVALID,
        ErrorCode.IDENTITY_MISMATCH,
        ErrorCode.SIGNATURE_INCOMPLETE,
        ErrorCode.SIGNATURE_MALFORMED,
        ErrorCode.SIGNATURE_INVALID,
        ErrorCode.RESTORATION_FAILED,
        ErrorCode.FORBIDDEN_ARTIFACT,
        ErrorCode.PATH_ESCAPE_DETECTED,
        ErrorCode.OUTPUT_MISSING,
        ErrorCode.HASH_MISMATCH,
        ErrorCode.CHAIN_EMPTY,
        ErrorCode.CHAIN_DUPLICATE_RUN,
        ErrorCode.RUN_ID_MISMATCH,
        ErrorCode.UNTRUSTED,
        ErrorCode.RUN_FAILED,
        ErrorCode.RESTORE_INELIGIBLE,
        ErrorCode.RESTORE_TARGET_INVALID,
        ErrorCode.SOURCE_MISSING,
        ErrorCode.TARGET_EXISTS,
        ErrorCode.COPY_INTEGRITY_FAILED,
        ErrorCode.RESTORE_VERIFICATION_FAILED,
        ErrorCode.CHAIN_RESTORE_FAILED,
        ErrorCode.REPLAY_FAILED,
        ErrorCode.ENV_MISMATCH,
        ErrorCode.CHRONICLE_INVALID,
        ErrorCode.CHECK_FAILED,
        ErrorCode.JOURNAL_REFUSED,
        ErrorCode.ARCHIVE_INVALID,
        ErrorCode.REGISTRY_INVALID,
        ErrorCode.REGISTRY_DIGEST_MISMATCH,
        ErrorCode.REGISTRY_TAG_MOVED,
        ErrorCode.ENV_HASH_REFUSED,
        ErrorCode.ENV_PIN_INVALID,
        ErrorCode.REF_FORBIDDEN,
        ErrorCode.REF_NOT_A_COMMIT,
        ErrorCode.ATTESTATION_MISSING,
        ErrorCode.ENV_UNHASHED,
    }
)


class CatalyticError(Exception):
    """An expected failure: a stable code, a message a person can act on, details as data."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": False,
            "code": self.code.value,
            "message": self.message,
            "details": self.details,
        }

    def __repr__(self) -> str:
        return f"CatalyticError({self.code.value}, {self.message!r}, {self.details!r})"


def io_failure(doing: str, path: object, exc: OSError) -> CatalyticError:
    """IO_ERROR for what the disk refused while `doing` ("write out.zip"): the kernel's reason,
    the path and the errno, so a full disk or a file size limit is not reported as a bug."""
    return CatalyticError(
        ErrorCode.IO_ERROR,
        f"cannot {doing}: {exc.strerror or exc}",
        path=str(path),
        errno=exc.errno,
    )


# What a failed verification (FORMATS §4) says of the bundle: its own bytes are corrupt (a replay
# moves it to quarantine), or it is intact and refused for another reason: an honest failed run, a
# missing output, a chain given wrongly (left where it is; an untrusted signer is refused before
# either). Every code bundle/verify.py raises is in exactly one of the two
# (tests/test_typed_results.py), so a new verification code cannot fall through silently.
BUNDLE_CORRUPT = frozenset(
    {
        ErrorCode.ARTIFACT_EXTRA,
        ErrorCode.ARTIFACT_MALFORMED,
        ErrorCode.FIELD_EXTRA,
        ErrorCode.FIELD_MISSING,
        ErrorCode.ALGORITHM_UNSUPPORTED,
        ErrorCode.KEY_INVALID,
        ErrorCode.IDENTITY_INVALID,
        ErrorCode.BUNDLE_ROOT_MISMATCH,
        ErrorCode.IDENTITY_MISMATCH,
        ErrorCode.SIGNATURE_INCOMPLETE,
        ErrorCode.SIGNATURE_MALFORMED,
        ErrorCode.SIGNATURE_INVALID,
        ErrorCode.HASH_MISMATCH,
        ErrorCode.PATH_ESCAPE_DETECTED,
        ErrorCode.FORBIDDEN_ARTIFACT,
    }
)
BUNDLE_INTACT = frozenset(
    {
        ErrorCode.ARTIFACT_MISSING,
        ErrorCode.DECISION_INVALID,
        ErrorCode.RESTORATION_FAILED,
        ErrorCode.OUTPUT_MISSING,
        ErrorCode.CHAIN_EMPTY,
        ErrorCode.CHAIN_DUPLICATE_RUN,
        ErrorCode.RUN_ID_MISMATCH,
        ErrorCode.UNTRUSTED,
    }
)


def exit_code_for(code: ErrorCode) -> int:
    if code is ErrorCode.INTERNAL:
        return EXIT_BUG
    return EXIT_FAIL if code in _VERDICT_CODES else EXIT_ERROR


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (`timeout`, `docker stop`, a cancelled CI job, a closed terminal),
    raised where Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs; the exit
    status is 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum, self.name = signum, name


def failure(exc: BaseException) -> tuple[int, str, bool]:
    """The one mapping from an exception to (exit code, one-line message, is it a bug), shared
    by the CLI and the hook entry point."""
    if isinstance(exc, CatalyticError):
        return exit_code_for(exc.code), f"{exc.code.value}: {exc.message}", False
    if isinstance(exc, Terminated):
        return 128 + exc.signum, f"interrupted by {exc.name}", False
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted", False
    if isinstance(exc, BrokenPipeError):
        return EXIT_PIPE, "output pipe closed by its reader", False
    return (
        EXIT_BUG,
        f"internal error (a bug in catalytic-hooks): {type(exc).__name__}: {exc}",
        True,
    )


def debug_enabled() -> bool:
    """`CATALYTIC_DEBUG=1`: show the traceback of an internal error (never locals)."""
    import os

    return os.environ.get(DEBUG_ENV, "") not in ("", "0")
