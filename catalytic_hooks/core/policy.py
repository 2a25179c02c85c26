"""Repository policy (README: "Configuration"): loading, validation and path classification."""

from __future__ import annotations

import math
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component, normalise_root
from catalytic_hooks.core.roots import class_of

CONFIG_FILE = ".catalytic.toml"
STATE_DIR = ".catalytic"
DEFAULT_TRUST_FILE = f"{STATE_DIR}/allowed_validators"


class PathClass(StrEnum):
    EXCLUDED = "excluded"
    TMP = "tmp"
    DURABLE = "durable"
    PROTECTED = "protected"
    UNPROTECTED = "unprotected"


# Where `env rebuild` and `replay --rebuild-env` find the interpreter and the wheels (README
# "Rebuilding the environment").
_ENV_KEYS = ("env_python", "env_index", "env_fallback_indexes", "env_find_links")
_LIST_KEYS = ("durable_roots", "tmp_roots", "exclusions", "protected_roots", "run_roots")
_KNOWN_KEYS = frozenset(
    (
        *_LIST_KEYS,
        "trusted_validators",
        "metrics_tolerance",
        "lock_files",
        "chronicle",
        "reports_dir",
        "quarantine_dir",
        "baseline",
        "archive_dir",
        "replays_dir",
        "archive_max_entries",
        "archive_max_bytes",
        "ref_namespaces",
        *_ENV_KEYS,
    )
)
# Where a push may create, move or delete refs at the server gate (enforce.server). Never
# `refs/replace/`, whatever the policy says: a replace ref changes what every reader sees.
DEFAULT_REF_NAMESPACES = ("refs/heads/", "refs/tags/")


@dataclass(frozen=True)
class Policy:
    durable_roots: tuple[str, ...] = ()
    tmp_roots: tuple[str, ...] = ()
    exclusions: tuple[str, ...] = ()
    protected_roots: tuple[str, ...] = (".",)
    run_roots: tuple[str, ...] = ("_runs",)
    trusted_validators: tuple[str, ...] | str | None = None
    metrics_tolerance: float = 1e-8
    lock_files: tuple[str, ...] = ()
    chronicle: str = f"{STATE_DIR}/chronicle.jsonl"
    reports_dir: str = f"{STATE_DIR}/reports"
    quarantine_dir: str = f"{STATE_DIR}/quarantine"
    archive_dir: str = f"{STATE_DIR}/archives"
    replays_dir: str = "replays"
    # Limits on an archive being read (README "Archives"); no ZIP64, so at most 65,534 entries
    # and 4 GiB.
    archive_max_entries: int = 50_000
    archive_max_bytes: int = 4 * 1024**3 - 1
    # The commit `catalytic adopt` started from: history reachable from it predates the policy.
    baseline: str | None = None
    env_python: str | None = None
    env_index: str | None = None
    env_fallback_indexes: tuple[str, ...] = ()
    env_find_links: tuple[str, ...] = ()
    ref_namespaces: tuple[str, ...] = DEFAULT_REF_NAMESPACES
    source: str = "defaults"
    # Roots that are durable without being declared: run bundles and the tool's own state.
    implicit_durable: tuple[str, ...] = field(default=(), compare=False)

    @property
    def trust_path(self) -> str | None:
        """The trusted-validators file, relative to the top (None: an inline list of ids)."""
        tv = self.trusted_validators
        if isinstance(tv, tuple):
            return None
        return tv if tv is not None else DEFAULT_TRUST_FILE

    @property
    def effective_durable(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.durable_roots) | set(self.implicit_durable)))

    def classifier(self) -> Callable[[str], PathClass]:
        """A fast `classify` for many paths: files in one directory share every root that is a
        proper prefix, so the slow decision is made once per directory (and for the rare path
        that is itself a root)."""
        roots = {
            *self.exclusions,
            *self.tmp_roots,
            *self.effective_durable,
            *self.protected_roots,
            ".git",
        }
        memo: dict[str, PathClass] = {}
        slow = self.classify

        def fast(path: str) -> PathClass:
            if path in roots:
                return slow(path)
            cut = path.rfind("/")
            d = path[:cut] if cut >= 0 else ""
            got = memo.get(d)
            if got is None:
                got = memo[d] = self._classify_dir(d)
            return got

        return fast

    def _classify_dir(self, d: str) -> PathClass:
        """The class every file directly inside directory `d` ("" = top) gets from its
        ancestors (roots equal to the file itself are handled by the caller)."""
        probe = f"{d}/\x00" if d else "\x00"
        return self.classify(probe)

    def classify(self, path: str) -> PathClass:
        """Precedence: exclusions, then tmp, then durable, then protected (README:
        "Configuration")."""
        return PathClass(
            class_of(
                path, self.exclusions, self.tmp_roots, self.effective_durable, self.protected_roots
            )
        )

    def with_roots(
        self,
        *,
        exclusions: list[str] | None,
        durable_roots: list[str] | None,
        tmp_roots: list[str] | None,
    ) -> Policy:
        """Seed-compatible override: explicit lists replace the configured ones entirely."""
        if exclusions is None and durable_roots is None and tmp_roots is None:
            return self
        return replace(
            self,
            exclusions=_roots(exclusions or [], "exclusions"),
            durable_roots=_roots(durable_roots or [], "durable_roots"),
            tmp_roots=_roots(tmp_roots or [], "tmp_roots"),
            implicit_durable=(),
            source="command line",
        )

    def spec_roots(self) -> list[str]:
        """The list behind exclusions_spec_hash: everything a digest leaves out."""
        return sorted(set(self.exclusions) | set(self.effective_durable) | set(self.tmp_roots))

    def watched(self) -> list[str]:
        """Paths whose change is always a `policy` finding: the policy sources and the trust
        file."""
        return sorted(p for p in (*POLICY_SOURCES, self.trust_path) if p)

    def cache_key(self) -> dict[str, list[str]]:
        """Everything a cache of this policy's decisions must record (the quick paths' records,
        the index snapshot's name): the roots of each class, in core.roots.class_of's order;
        `special`, what a push check looks at beyond the roots (run roots, the chronicle, the
        tool's own state); `watched`. Every field of Policy is in CACHE_CARRIED (and changes
        this) or in CACHE_IRRELEVANT (tests/test_policy.py), so that a new field that decides
        anything reaches every cache, or a test fails."""
        return {
            "exclusions": list(self.exclusions),
            "tmp": list(self.tmp_roots),
            "durable": list(self.effective_durable),
            "protected": list(self.protected_roots),
            "special": sorted({*self.run_roots, self.chronicle, *self.implicit_durable}),
            "watched": self.watched(),
        }


# The fields Policy.cache_key carries (implicit_durable is derived from run_roots, chronicle,
# reports_dir, quarantine_dir and archive_dir), and those no cache of path decisions needs, with
# why.
CACHE_CARRIED = frozenset(
    {
        "durable_roots",
        "tmp_roots",
        "exclusions",
        "protected_roots",
        "run_roots",
        "trusted_validators",
        "chronicle",
        "reports_dir",
        "quarantine_dir",
        "archive_dir",
        "implicit_durable",
    }
)
CACHE_IRRELEVANT = {
    "metrics_tolerance": "replay's comparison of metrics, never a path's class or a finding",
    "lock_files": "the environment fingerprint of a run, never a path's class or a finding",
    "baseline": "the adoption rule, applied only where no policy is committed, and no record "
    "is written for a base without one",
    "source": "where the policy came from, for messages",
    "replays_dir": "where replays put their work, never a root of the policy",
    "archive_max_entries": "a limit of the archive reader, never a path's class or a finding",
    "archive_max_bytes": "a limit of the archive reader, never a path's class or a finding",
    "env_python": "which interpreter a run records, never a path's class or a finding",
    "env_index": "where a rebuild fetches wheels, never a path's class or a finding",
    "env_fallback_indexes": "where a rebuild fetches wheels, never a path's class or a finding",
    "env_find_links": "where a rebuild fetches wheels, never a path's class or a finding",
    "ref_namespaces": "which refs a push may write, decided only by the server gate from the "
    "default branch's committed policy; no cache or quick path looks at refs",
}


def _roots(values: Any, key: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"'{key}' must be a list of strings", key=key
        )
    out = []
    for v in values:
        try:
            root = normalise_root(v)
        except CatalyticError as exc:
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID, f"'{key}': {exc.message}", key=key, root=v
            ) from exc
        problem = root_problem(key, root)
        if problem is not None:
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID, f"'{key}': root {v!r} {problem}", key=key, root=v
            )
        out.append(root)
    return tuple(sorted(set(out)))


def root_problem(key: str, root: str) -> str | None:
    """Why a normalised root may not stand under `key`, or None. The tool deletes what lies
    under the tmp roots and writes under the others, so none may reach into git's directory
    (in any spelling git treats as `.git`, SECURITY.md "Deletion"), and `.` is never a tmp root
    (it would empty the working tree). Exclusions only take paths out of every view, which git's
    directory already is: the seed's own examples exclude `.git`."""
    if key != "exclusions" and has_git_component(root):
        return (
            "names git's own directory (.git in some spelling); nothing may be written or "
            "deleted there"
        )
    if key == "tmp_roots" and root == ".":
        return "is the whole working tree; a tmp root is emptied after every run --restore"
    return None


def _single_path(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"'{key}' must be a string", key=key)
    return _roots([value], key)[0]


def _namespaces(values: Any) -> tuple[str, ...]:
    key = "ref_namespaces"
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"'{key}' must be a list of strings", key=key
        )
    for v in values:
        parts = v.split("/")
        if (
            not v.startswith("refs/")
            or not v.endswith("/")
            or "" in parts[:-1]
            or any(p in (".", "..") for p in parts)
            or any(c.isspace() for c in v)
        ):
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                f"'{key}': {v!r} is not a ref namespace (`refs/<name>/`, ending in a slash)",
                key=key,
                namespace=v,
            )
    return tuple(sorted(set(values)))


def policy_from_mapping(data: dict[str, Any], source: str) -> Policy:
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"{source}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_KNOWN_KEYS))})",
            key=unknown[0],
        )
    kwargs: dict[str, Any] = {"source": source}
    for key in _LIST_KEYS:
        if key in data:
            kwargs[key] = _roots(data[key], key)
    if "lock_files" in data:
        kwargs["lock_files"] = _roots(data["lock_files"], "lock_files")
    for key in ("chronicle", "reports_dir", "quarantine_dir", "archive_dir", "replays_dir"):
        if key in data:
            kwargs[key] = _single_path(data[key], key)
    if "trusted_validators" in data:
        tv = data["trusted_validators"]
        if isinstance(tv, str):
            kwargs["trusted_validators"] = _single_path(tv, "trusted_validators")
        elif isinstance(tv, list) and all(isinstance(v, str) for v in tv):
            for v in tv:
                if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
                    raise CatalyticError(
                        ErrorCode.CONFIG_INVALID,
                        f"'trusted_validators': {v!r} is not a 64-hex lowercase validator id",
                        key="trusted_validators",
                    )
            kwargs["trusted_validators"] = tuple(tv)
        else:
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                "'trusted_validators' must be a list of validator ids or a file path",
                key="trusted_validators",
            )
    if "ref_namespaces" in data:
        kwargs["ref_namespaces"] = _namespaces(data["ref_namespaces"])
    if "baseline" in data:
        b = data["baseline"]
        if (
            not isinstance(b, str)
            or len(b) not in (40, 64)
            or any(c not in "0123456789abcdef" for c in b)
        ):
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                "'baseline' must be a full commit id (40 or 64 lowercase hex)",
                key="baseline",
            )
        kwargs["baseline"] = b
    for key, top in (("archive_max_entries", 65_534), ("archive_max_bytes", 4 * 1024**3 - 1)):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
                raise CatalyticError(
                    ErrorCode.CONFIG_INVALID, f"'{key}' must be an integer from 1 to {top}", key=key
                )
            kwargs[key] = value
    kwargs.update(_env_keys(data))
    if "metrics_tolerance" in data:
        tol = data["metrics_tolerance"]
        # TOML integers have no size limit here, and float() of one beyond every float raises.
        if (
            isinstance(tol, bool)
            or not isinstance(tol, int | float)
            or not -sys.float_info.max <= tol <= sys.float_info.max
            or not math.isfinite(tol)
            or tol < 0
        ):
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                "'metrics_tolerance' must be a non-negative number no larger than the largest "
                "float (1.8e308)",
                key="metrics_tolerance",
            )
        kwargs["metrics_tolerance"] = float(tol)
    policy = Policy(**kwargs)
    # Exactly the tool's own outputs are durable, not all of .catalytic/: the trusted-validators
    # file lives there too and must stay protected, so that no run can trust itself.
    state_roots = {
        policy.chronicle,
        policy.chronicle + ".head",
        policy.reports_dir,
        policy.quarantine_dir,
        policy.archive_dir,
    }
    policy = replace(policy, implicit_durable=tuple(sorted(set(policy.run_roots) | state_roots)))
    trust = policy.trust_path
    if trust is not None and policy.classify(trust) in _UNJUDGED:
        # A trust file that runs may write, or that no check looks at, lets a change vouch for
        # itself: refuse the policy rather than judge with it.
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID,
            f"{source}: the trusted-validators file {trust} lies under a "
            f"{policy.classify(trust).value} root; keep it protected",
            key="trusted_validators",
        )
    return policy


def masked_url(url: str) -> str:
    """`url` with any user info (`USER:PASSWORD@`) replaced by `***@`: for a message."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def user_info_refusal(url: str, where: str, code: ErrorCode) -> CatalyticError | None:
    """The refusal of an index URL carrying credentials, or None. They would travel in every
    message, report and lock file that names the index (and urllib does not send them)."""
    if masked_url(url) == url:
        return None
    return CatalyticError(
        code,
        f"{where}: {masked_url(url)} has user info (credentials) in it; they are never put in "
        "a URL here: serve the index on loopback, or give a wheelhouse (--find-links)",
        location=masked_url(url),
    )


def _env_value(key: str, value: Any, *, url: bool) -> str:
    """A location handed to an installer: never empty, never option-like (a value starting with
    '-' would be read as an option), no control characters; URLs are http(s) or file."""
    if (
        not isinstance(value, str)
        or not value
        or value.startswith("-")
        or any(ord(c) < 32 or c == "\x7f" for c in value)
    ):
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"'{key}': {value!r} is not a usable location", key=key
        )
    if url and (refused := user_info_refusal(value, f"'{key}'", ErrorCode.CONFIG_INVALID)):
        refused.details["key"] = key
        raise refused
    if url and not value.startswith(("http://", "https://", "file://")):
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"'{key}': {value!r} must be an http(s) or file URL", key=key
        )
    return value


def _env_keys(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "env_python" in data:
        out["env_python"] = _env_value("env_python", data["env_python"], url=False)
    if "env_index" in data:
        out["env_index"] = _env_value("env_index", data["env_index"], url=True)
    for key in ("env_fallback_indexes", "env_find_links"):
        if key in data:
            values = data[key]
            if not isinstance(values, list):
                raise CatalyticError(
                    ErrorCode.CONFIG_INVALID, f"'{key}' must be a list of strings", key=key
                )
            out[key] = tuple(_env_value(key, v, url=key == "env_fallback_indexes") for v in values)
    return out


_UNJUDGED = (PathClass.EXCLUDED, PathClass.TMP, PathClass.DURABLE)


PYPROJECT = "pyproject.toml"
POLICY_SOURCES = (PYPROJECT, CONFIG_FILE)


def load_policy(repo_root: Path) -> Policy:
    """Read `[tool.catalytic]` from pyproject.toml or `.catalytic.toml` (never both) on disk: the
    policy of local commands. What the hooks judge by comes from git objects (enforce.baseline)."""
    return policy_from_sources(read_sources(repo_root))


def read_sources(repo_root: Path) -> dict[str, bytes | None]:
    """The bytes of each possible policy source on disk (None: absent)."""
    return {name: _read_file(repo_root / name) for name in POLICY_SOURCES}


def catalytic_table(pyproject: bytes, label: str = PYPROJECT) -> dict[str, Any] | None:
    """The `[tool.catalytic]` table of a pyproject.toml (None: the file configures nothing)."""
    tool = _parse_toml(pyproject, label).get("tool", {})
    if not isinstance(tool, dict) or "catalytic" not in tool:
        return None
    if not isinstance(tool["catalytic"], dict):
        raise CatalyticError(ErrorCode.CONFIG_INVALID, f"{label}: [tool.catalytic] must be a table")
    return tool["catalytic"]


def policy_from_sources(files: dict[str, bytes | None], where: str = "") -> Policy:
    """The policy given the contents of its two possible sources (None: file absent)."""
    section: dict[str, Any] | None = None
    source = "defaults"
    pyproject, dotfile = files.get(PYPROJECT), files.get(CONFIG_FILE)
    if pyproject is not None:
        section = catalytic_table(pyproject, PYPROJECT + where)
        if section is not None:
            source = f"{PYPROJECT}{where} [tool.catalytic]"
    if dotfile is not None:
        if section is not None:
            raise CatalyticError(
                ErrorCode.CONFIG_INVALID,
                f"both {PYPROJECT} [tool.catalytic] and {CONFIG_FILE} configure catalytic{where}; "
                "keep one",
            )
        section, source = _parse_toml(dotfile, CONFIG_FILE + where), CONFIG_FILE + where
    return policy_from_mapping(section or {}, source)


def _read_file(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise CatalyticError(ErrorCode.IO_ERROR, f"cannot read {path}: {exc}") from exc


def _parse_toml(data: bytes, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError as exc:  # tomllib recurses once per nested array or table
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"{label}: invalid TOML: nested too deeply", file=label
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalyticError(
            ErrorCode.CONFIG_INVALID, f"{label}: invalid TOML: {exc}", file=label
        ) from exc
