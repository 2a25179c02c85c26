"""The run journal: what `run --restore` needs to undo a command even when catalytic itself is
killed (README: "Interrupted runs and `catalytic recover`").

Before the command starts, `<git dir>/catalytic/runs/run-<32 hex>.json` records the run id, the
roots the digest used, the PRE manifest and the snapshot (every protected file's original blob,
pinned under a ref naming this worktree, git.statefiles.pin_ref, so that `git gc` in any worktree
cannot collect it), and is fsynced.
It is removed only after the undo has completed and the bundle is written. Recovery acts only on
journals this tool named, whose content passes the same path rules as everything else; the
working tree (which the command controls) never supplies one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.core.policy import Policy, root_problem
from catalytic_hooks.fs.files import atomic_write, fsync_dir
from catalytic_hooks.git.refs import delete_ref, set_ref
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.git.statefiles import journal_name, journal_token, pin_ref, pin_refs, runs_dir
from catalytic_hooks.git.statefiles import pending as pending_names
from catalytic_hooks.git.store import tree_of_blobs
from catalytic_hooks.run.undo import Saved

# Set in the command's environment to its journal's token: recovery kills only a process started
# with it (run.recovery.stop_leftover).
TOKEN_ENV = "CATALYTIC_RUN_TOKEN"
_OID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_ROOT_KEYS = ("exclusions", "tmp_roots", "durable_roots", "protected_roots", "implicit_durable")


def journal_dir(repo: Repo) -> Path:
    return Path(runs_dir(str(repo.git_dir)))


def pending(repo: Repo) -> list[Path]:
    return [journal_dir(repo) / n for n in pending_names(str(repo.git_dir))]


@dataclass
class RunJournal:
    path: Path
    token: str
    data: dict[str, Any]

    def write(self) -> None:
        atomic_write(self.path, json.dumps(self.data, sort_keys=True).encode())
        fsync_dir(self.path.parent)


def _pin(repo: Repo, token: str, snap: dict[str, Saved]) -> None:
    """One tree holding every snapshot blob (and link target), under a ref of our own."""
    tree = tree_of_blobs(repo, [s.oid for _path, s in sorted(snap.items()) if s.oid is not None])
    set_ref(repo, pin_ref(str(repo.git_dir), str(repo.common_dir), token), tree)


def recorded_roots(policy: Policy) -> dict[str, list[str]]:
    """What a journal records of the run's policy: enough for `policy_of` to classify every path
    as the run did (tests/test_policy.py ties it to Policy.cache_key)."""
    return {k: list(getattr(policy, k)) for k in _ROOT_KEYS}


def begin(
    repo: Repo,
    policy: Policy,
    run_id: str,
    snap: dict[str, Saved],
    pre_manifest: dict[str, str],
    tmp_existed: set[str],
) -> RunJournal:
    token = uuid.uuid4().hex
    _pin(repo, token, snap)
    directory = journal_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "version": 1,
        "run_id": run_id,
        "phase": "command",
        "command_pgid": None,
        "command_start": None,
        "roots": recorded_roots(policy),
        "pre_manifest": pre_manifest,
        "tmp_existed": sorted(tmp_existed),
        "snapshot": {
            p: [s.kind, s.oid, s.target.hex() if s.target is not None else None]
            for p, s in sorted(snap.items())
        },
    }
    j = RunJournal(directory / journal_name(token), token, data)
    j.write()
    return j


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat): with the pid, an
    identity that pid reuse cannot fake."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()[19]


def finish(repo: Repo, j: RunJournal) -> None:
    j.path.unlink(missing_ok=True)
    fsync_dir(j.path.parent)
    for ref in pin_refs(str(repo.git_dir), str(repo.common_dir), j.token):
        delete_ref(repo, ref)


def _bad(path: Path, why: str) -> CatalyticError:
    return CatalyticError(
        ErrorCode.RUN_UNDO_PENDING,
        f"{path.name}: not a journal this tool wrote ({why}); left alone",
        journal=str(path),
    )


def load(path: Path) -> RunJournal:
    """A journal, validated: our name, our shape, only safe relative paths and object ids."""
    token = journal_token(path.name)
    if token is None or path.is_symlink():
        raise _bad(path, "name")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise _bad(path, f"unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != 1:
        raise _bad(path, "shape")
    snap, pre = data.get("snapshot"), data.get("pre_manifest")
    if not isinstance(snap, dict) or not isinstance(pre, dict):
        raise _bad(path, "shape")
    for p in (*snap, *pre, *data.get("tmp_existed", [])):
        if not isinstance(p, str) or relpath_problem(p) is not None or has_git_component(p):
            raise _bad(path, f"unsafe path {p!r}")
    for entry in snap.values():
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and entry[0] in ("file", "exec", "symlink", "absent")
            and (entry[1] is None or (isinstance(entry[1], str) and _OID.match(entry[1])))
        ):
            raise _bad(path, "snapshot entry")
    j = RunJournal(path, token, data)
    policy_of(j)  # its roots, checked before anything acts on the journal
    return j


def snapshot_of(j: RunJournal) -> dict[str, Saved]:
    return {
        p: Saved(e[0], e[1], bytes.fromhex(e[2]) if e[2] is not None else None)
        for p, e in j.data["snapshot"].items()
    }


def policy_of(j: RunJournal) -> Policy:
    """The roots the run's digests used (the command may have edited the policy file), held to
    the policy's own root rules: a journal naming a root that no policy could (in git's
    directory, `.` as a tmp root) is not one this tool wrote. Which of its tmp roots are emptied
    is decided by recovery from the committed policy, never by the journal alone."""
    roots = j.data.get("roots", {})
    if not isinstance(roots, dict) or not all(
        isinstance(roots.get(k, []), list) for k in _ROOT_KEYS
    ):
        raise _bad(j.path, "shape")
    kwargs = {k: tuple(str(v) for v in roots.get(k, [])) for k in _ROOT_KEYS}
    for k, values in kwargs.items():
        for v in values:
            problem = None if v == "." else relpath_problem(v)
            problem = problem or root_problem("durable_roots" if k == "implicit_durable" else k, v)
            if problem is not None:
                raise _bad(j.path, f"unsafe root {v!r} in {k}: {problem}")
    return Policy(
        exclusions=kwargs["exclusions"],
        tmp_roots=kwargs["tmp_roots"],
        durable_roots=kwargs["durable_roots"],
        protected_roots=kwargs["protected_roots"],
        implicit_durable=kwargs["implicit_durable"],
        source="run journal",
    )
