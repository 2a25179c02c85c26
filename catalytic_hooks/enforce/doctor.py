"""`catalytic doctor`: one screen on whether this repository is really governed, with a fix for
each problem."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass, replace
from typing import Any

from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.policy import load_policy
from catalytic_hooks.enforce.baseline import baseline_at, find_adoption
from catalytic_hooks.enforce.install import (
    CHAIN_SUFFIX,
    HOOK_TYPES,
    hooks_dir,
    is_ours,
    manager_of,
)
from catalytic_hooks.git.invoke import HOOKS_PATH
from catalytic_hooks.git.repo import Repo, git_version, ssh_version

MIN_GIT = (2, 39)  # merge-tree --write-tree --stdin


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hook(repo: Repo, hook: str) -> list[Check]:
    path = hooks_dir(repo) / hook
    chained = path.with_name(hook + CHAIN_SUFFIX)
    out = []
    if not path.exists():
        return [
            Check(
                f"{hook} hook", False, f"{path} is absent", f"catalytic install --hook-type {hook}"
            )
        ]
    if not is_ours(path):
        return [
            Check(
                f"{hook} hook",
                False,
                f"{path} is somebody else's hook",
                f"catalytic install --force --hook-type {hook} (keeps it, chained)",
            )
        ]
    text = path.read_text(encoding="utf-8", errors="replace")
    m = re.search(r"^PY=(.*)$", text, re.MULTILINE)
    python = m.group(1).strip("'\"") if m else ""
    usable = bool(python) and os.access(python, os.X_OK)
    out.append(
        Check(
            f"{hook} hook",
            usable,
            f"catalytic's, run with {python or '?'}" + ("" if usable else " (gone)"),
            "" if usable else f"catalytic install --hook-type {hook}",
        )
    )
    if chained.exists():
        out.append(
            Check(
                f"{hook} chained hook",
                os.access(chained, os.X_OK),
                f"{chained} runs first",
                "" if os.access(chained, os.X_OK) else f"chmod +x {chained}",
            )
        )
    return out


def _policy(repo: Repo) -> list[Check]:
    try:
        disk = load_policy(repo.top)
    except CatalyticError as exc:
        return [Check("policy", False, exc.message, "fix the named key")]
    out = [
        Check(
            "policy",
            disk.source != "defaults",
            f"from {disk.source}",
            "" if disk.source != "defaults" else "catalytic adopt",
        )
    ]
    head = repo.head()
    try:
        committed = baseline_at(repo, head)
    except CatalyticError as exc:
        return [*out, Check("committed policy", False, exc.message, "fix it in a signed amendment")]
    if replace(committed.policy, source="") != replace(disk, source=""):
        out.append(
            Check(
                "committed policy",
                False,
                "the working tree's policy differs from "
                "HEAD's (the hooks judge by the committed one)",
                "commit it as a signed amendment, or `git restore` it",
            )
        )
    try:
        n = len(committed.trust().validators)
        out.append(
            Check(
                "trust file",
                n > 0,
                f"{n} trusted validator(s) in {committed.trust_label}",
                "" if n else "catalytic trust add NAME KEY (in a signed amendment once adopted)",
            )
        )
    except CatalyticError as exc:
        out.append(Check("trust file", False, exc.message, "fix the named line"))
    adoption = find_adoption(repo, head) if head else None
    out.append(
        Check(
            "baseline",
            adoption is not None,
            f"adopted at {adoption[:12]} (baseline {committed.policy.baseline})"
            if adoption
            else "no adoption commit: a push to an empty remote or a new "
            "mirror judges the whole history",
            "" if adoption else "catalytic adopt (in an ungoverned repository)",
        )
    )
    return out


def _tools() -> list[Check]:
    out = []
    version = git_version()
    nums = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    fix = "install git 2.39 or newer (range checks use merge-tree --write-tree --stdin)"
    out.append(
        Check("git", nums >= MIN_GIT, version or "not found", "" if nums >= MIN_GIT else fix)
    )
    ssh = shutil.which("ssh-keygen")
    out.append(
        Check(
            "ssh-keygen",
            ssh is not None,
            f"{ssh} ({ssh_version() or 'version unknown'})" if ssh else "not found",
            "" if ssh else "install OpenSSH (needed to verify signed amendments)",
        )
    )
    return out


def _lfs(repo: Repo) -> list[Check]:
    # Whether this repository tracks files with LFS (a global `git lfs install` alone does not
    # make it an LFS repository).
    attributes = [repo.top / ".gitattributes", repo.git_dir / "info" / "attributes"]
    used = any(a.is_file() and "filter=lfs" in a.read_text(errors="replace") for a in attributes)
    if not used:
        return []
    lfs = repo.lfs_version()
    if lfs is None:
        return [
            Check(
                "git-lfs",
                False,
                "the repository uses LFS but git-lfs is not installed",
                "install git-lfs (apt-get install git-lfs), then `git lfs install`",
            )
        ]
    hook = hooks_dir(repo) / "pre-push"
    chained = hook.with_name("pre-push" + CHAIN_SUFFIX)
    runs = (chained.exists() and manager_of(chained) == "git-lfs") or (
        hook.exists() and manager_of(hook) == "git-lfs"
    )
    return [
        Check(
            "git-lfs",
            runs,
            lfs
            + (
                "; its pre-push hook runs (uploads LFS objects)"
                if runs
                else "; its pre-push hook is missing: pushes would not upload LFS objects"
            ),
            "" if runs else "git lfs install --force, then catalytic install",
        )
    ]


def diagnose(repo: Repo) -> list[Check]:
    hooks_path = repo.config_get(HOOKS_PATH)
    checks = [Check(HOOKS_PATH, True, hooks_path or "(unset: .git/hooks)")]
    for hook in HOOK_TYPES:
        checks += _hook(repo, hook)
    return checks + _policy(repo) + _lfs(repo) + _tools()


# -- a server's bare repository ----------------------------------------------------------------


def server_head(repo: Repo) -> list[Check]:
    """HEAD must lead to the branch that carries the policy: it names the default branch whose
    policy judges new, re-created and pre-adoption refs (enforce.governing)."""
    from catalytic_hooks.enforce.governing import HEAD_FIX, Governance, Refs

    governance = Governance(repo, Refs.of_server(repo))
    refs = governance.refs
    head = refs.head
    if head is not None and head in refs.commits and governance.is_governed(refs.commits[head]):
        return [Check("HEAD", True, f"names {head}, which carries the policy")]
    try:
        found = governance.default()
    except CatalyticError as exc:
        return [Check("HEAD", False, exc.message, HEAD_FIX)]
    if found is None:
        return [
            Check(
                "HEAD",
                False,
                f"names {head or 'no branch'}; no ref carries a policy yet, "
                "so the next push that brings an adoption commit decides the policy",
                "push the adopted default branch yourself (catalytic adopt; git push) "
                "before anyone else can push",
            )
        ]
    problem = found.why.split(": ", 1)[-1]
    return [
        Check(
            "HEAD",
            False,
            f"{problem}: every ref is judged by the newest governed policy "
            f"({found.ref}) instead of the default branch's",
            f"git symbolic-ref HEAD {found.ref}",
        )
    ]


def diagnose_server(repo: Repo) -> list[Check]:
    """A bare repository that receives pushes: its gate hooks and its HEAD."""
    from catalytic_hooks.enforce.install import SERVER_HOOK_TYPES

    hooks_path = repo.config_get(HOOKS_PATH)
    checks = [Check(HOOKS_PATH, True, hooks_path or "(unset: hooks/)")]
    # The gate is pre-receive, or update where a host runs only per-ref hooks; post-receive
    # records the amendments that landed.
    gate = "update" if is_ours(hooks_dir(repo) / "update") else SERVER_HOOK_TYPES[0]
    for hook in (gate, "post-receive"):
        checks += [
            replace(
                c,
                fix=c.fix.replace(
                    "catalytic install", f"catalytic install --server --git-dir {repo.git_dir}"
                ),
            )
            for c in _hook(repo, hook)
        ]
    return checks + server_head(repo) + replace_ref_checks(repo) + _fsck(repo) + _tools()[:1]


def _fsck(repo: Repo) -> list[Check]:
    from catalytic_hooks.enforce.install import SERVER_CONFIG, server_config_missing

    missing = server_config_missing(repo)
    return [
        Check(key, True, "true: git checks every pushed object before the gate reads it")
        if key not in missing
        else Check(
            key,
            False,
            "off: a pushed tree entry git would refuse to check out (`outputs/../data/raw.csv`) "
            "reaches the gate, which judges a path by its text",
            f"catalytic install --server --git-dir {repo.git_dir}; or `git --git-dir "
            f"{repo.git_dir} config {key} true`",
        )
        for key, _ in SERVER_CONFIG
    ]


def _hides_replace_refs(values: list[str]) -> bool:
    """Whether `receive.hideRefs`/`transfer.hideRefs` values make git refuse pushes to
    `refs/replace/*` (a later `!` entry can expose them again)."""
    hidden = False
    for v in values:
        neg = v.startswith("!")
        name = v.lstrip("!^").rstrip("/")
        if name in ("refs", "refs/replace") or (neg and name.startswith("refs/replace")):
            hidden = not neg
    return hidden


def replace_ref_checks(repo: Repo) -> list[Check]:
    """A server (bare repository) must not accept pushed replace refs: the gate refuses them, or
    git does (`receive.hideRefs`); one already there is shown to whoever reads this repository
    with git (never to this tool, which reads objects with replacement off)."""
    from catalytic_hooks.enforce.install import SERVER_HOOK_TYPES
    from catalytic_hooks.git.refs import replace_refs

    gated = [h for h in SERVER_HOOK_TYPES if is_ours(hooks_dir(repo) / h)]
    hidden = _hides_replace_refs(
        repo.config_get_all("transfer.hideRefs") + repo.config_get_all("receive.hideRefs")
    )
    where = f"--git-dir {repo.git_dir}"
    if gated or hidden:
        detail = "refused by " + " and ".join(
            [*(f"catalytic's {h} hook" for h in gated[:1]), *(["receive.hideRefs"] * hidden)]
        )
        out = [Check("replace refs", True, detail)]
    else:
        out = [
            Check(
                "replace refs",
                False,
                "a push may create refs/replace/*: git would then show "
                "every reader of this repository other objects than the ones named",
                f"catalytic install --server {where}; or `git {where} config --add "
                "receive.hideRefs refs/replace`",
            )
        ]
    present = sorted(replace_refs(repo))
    if present:
        out.append(
            Check(
                "replace refs present",
                False,
                f"{len(present)} replace ref(s): "
                f"{', '.join(present[:3])}{' ...' if len(present) > 3 else ''}",
                f"review, then `git {where} update-ref -d REF` for each",
            )
        )
    return out
