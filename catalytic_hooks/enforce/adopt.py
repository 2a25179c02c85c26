"""`catalytic adopt`: govern an existing repository without `--no-verify`.

It writes the policy (roots proposed from the top-level directories it finds) with `baseline`
set to HEAD, and the trusted-validators file, and commits exactly those two files on top of HEAD:
the adoption commit. History reachable from the baseline predates the policy and is never
judged, so the first push to an empty remote, a new mirror or a fork passes; every later commit
is judged by the adoption's policy (enforce.checks.judged_from).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import normalise_root
from catalytic_hooks.core.policy import CONFIG_FILE, DEFAULT_TRUST_FILE, load_policy
from catalytic_hooks.fs.files import atomic_write
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.store import commit_paths

DURABLE_NAMES = ("outputs", "output", "results", "artifacts", "models", "figures", "reports")
TMP_NAMES = ("_tmp", "tmp", ".tmp", "scratch")
RUN_ROOT = "_runs"


@dataclass
class Adoption:
    baseline: str
    durable_roots: list[str]
    tmp_roots: list[str]
    validators: list[str] = field(default_factory=list)
    commit: str | None = None
    files: list[str] = field(default_factory=list)


def propose(repo: Repo) -> tuple[list[str], list[str]]:
    """Durable and tmp roots from the conventional top-level names present (committed or on
    disk); everything else stays protected."""
    committed = {e.path.split("/", 1)[0] for e in repo.ls_tree("HEAD")}
    present = committed | {p.name for p in repo.top.iterdir() if p.is_dir()}
    return ([n for n in DURABLE_NAMES if n in present], [n for n in TMP_NAMES if n in present])


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def policy_text(a: Adoption) -> str:
    return (
        '# catalytic-hooks policy, written by `catalytic adopt` (README: "Adopting").\n'
        "# History reachable from the baseline predates this policy and is not judged; every\n"
        "# later commit is. Change this file, or the trust file, only in a signed amendment.\n"
        f'baseline = "{a.baseline}"\n'
        'protected_roots = ["."]\n'
        f"durable_roots = {_toml_list(a.durable_roots)}\n"
        f"tmp_roots = {_toml_list(a.tmp_roots)}\n"
        f'run_roots = ["{RUN_ROOT}"]\n'
        f'trusted_validators = "{DEFAULT_TRUST_FILE}"\n'
    )


def _preconditions(repo: Repo) -> str:
    head = repo.head()
    if head is None:
        raise CatalyticError(
            ErrorCode.USAGE,
            "adopt needs a first commit to start from: "
            "commit your files, then run `catalytic adopt`",
        )
    if load_policy(repo.top).source != "defaults":
        raise CatalyticError(
            ErrorCode.USAGE,
            "this repository already has a catalytic policy; "
            "adopt only starts governing an ungoverned one",
        )
    if repo.has_tracked_changes():
        raise CatalyticError(
            ErrorCode.USAGE,
            "commit or stash your changes first: the adoption "
            "commit must hold only the policy and the trust file",
        )
    return head


def adopt(
    repo: Repo,
    *,
    durable: list[str] | None,
    tmp: list[str] | None,
    validators: list[tuple[str, str]],
    commit: bool,
) -> Adoption:
    """`validators`: (name, key file or key text) pairs to trust from the start."""
    from catalytic_hooks.bundle.trust import (
        HEADER,
        Validator,
        key_text_of,
        parse,
        validator_id_of_key,
    )

    head = _preconditions(repo)
    proposed = propose(repo)
    a = Adoption(
        head,
        [normalise_root(r) for r in (durable if durable is not None else proposed[0])],
        [normalise_root(r) for r in (tmp if tmp is not None else proposed[1])],
    )
    lines = []
    for name, key in validators:
        if not name or any(c.isspace() for c in name):
            raise CatalyticError(ErrorCode.USAGE, f"validator name {name!r} must be one word")
        text = key_text_of(key)
        lines.append(Validator(name, validator_id_of_key(text), text).line())
        a.validators.append(name)
    trust = HEADER + "".join(line + "\n" for line in lines)
    parse(trust, DEFAULT_TRUST_FILE)
    atomic_write(repo.top / CONFIG_FILE, policy_text(a).encode())
    (repo.top / DEFAULT_TRUST_FILE).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(repo.top / DEFAULT_TRUST_FILE, trust.encode())
    a.files = [CONFIG_FILE, DEFAULT_TRUST_FILE]
    load_policy(repo.top)  # what was written must load (a bad root raises here)
    if commit:
        commit_paths(repo, a.files, f"Adopt catalytic-hooks (baseline {head[:12]})")
        a.commit = repo.head()
    return a
