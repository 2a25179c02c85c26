"""Replay step 3 (DESIGN §7, §13): the environment and the workspace the replayed command sees.

Without `--rebuild-env` the recorded environment is compared with the one the command would run
in here (the interpreter found on the replay's PATH, as `catalytic run` found it): differences
are reported. With it, the recorded environment is rebuilt (environment.build, cached), must
hash equal before anything runs, and the command runs with it first on PATH and VIRTUAL_ENV set.
The worktree gets the durable and tmp root directories the run had (empty), and a replay that
fails or drifts names the untracked inputs the run saw as a likely cause."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from catalytic_hooks.core.markdown import literal
from catalytic_hooks.core.paths import has_git_component, relpath_problem
from catalytic_hooks.core.policy import Policy
from catalytic_hooks.environment.build import RebuildOptions, Rebuilt, rebuild
from catalytic_hooks.fs.dirfd import open_dir_chain
from catalytic_hooks.git.repo import Repo
from catalytic_hooks.provenance.environment import compare, fingerprint, recorded_lock_files


def _safe(rel: Any) -> bool:
    return (
        isinstance(rel, str)
        and rel != "."
        and relpath_problem(rel) is None
        and not has_git_component(rel)
    )


def prepare_worktree(wt: Path, spec: dict[str, Any]) -> list[str]:
    """Create the durable and tmp root directories the run had (TASK_SPEC workspace.root_dirs),
    empty, below the worktree without following any link (a committed symlink named like a root
    cannot redirect the mkdir). Returns those created."""
    ws = spec.get("workspace")
    roots = ws.get("root_dirs") if isinstance(ws, dict) else None
    made = []
    for rel in roots if isinstance(roots, list) else []:
        if not _safe(rel) or os.path.lexists(wt / rel):
            continue
        rfd = os.open(wt, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                os.close(open_dir_chain(rfd, rel.split("/"), create=True))
                made.append(rel)
        finally:
            os.close(rfd)
    return made


def untracked_inputs(spec: dict[str, Any]) -> list[str]:
    ws = spec.get("workspace")
    found = ws.get("untracked") if isinstance(ws, dict) else None
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


def likely_causes(spec: dict[str, Any]) -> dict[str, Any] | None:
    """For a replay that failed or drifted: what the run saw that the replay could not."""
    inputs = untracked_inputs(spec)
    if not inputs:
        return None
    return {
        "untracked_inputs": inputs,
        "note": "these untracked paths existed when the run was recorded and are not in the "
        "recorded commit, so the replay did not have them",
    }


class EnvStep:
    def __init__(
        self, repo: Repo, policy: Policy, spec: dict[str, Any], rebuild_opts: RebuildOptions | None
    ):
        self.repo = repo
        self.policy = policy
        self.spec = spec
        self.recorded = spec.get("environment")
        self.opts = rebuild_opts
        self.rebuilt: Rebuilt | None = None

    @property
    def rebuilding(self) -> bool:
        return self.opts is not None

    def build(self, checkout: Path, env: dict[str, str]) -> None:
        """Rebuilt, editable installs from `checkout`, their build code seeing only `env` (what
        the replayed command will see)."""
        assert self.opts is not None
        opts = RebuildOptions(**{**self.opts.__dict__, "checkout": checkout, "build_env": env})
        self.rebuilt = rebuild(self.recorded, opts)

    def command_env(self, env: dict[str, str]) -> dict[str, str]:
        return self.rebuilt.command_env(env) if self.rebuilt is not None else env

    def differences(self, env: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(the environment the command runs in now, its differences from the recorded one).
        The lock files a bundle names obey the path rules (ARTIFACT_MALFORMED otherwise)."""
        recorded = self.recorded
        lock_files = (
            recorded_lock_files(recorded) if isinstance(recorded, dict) else self.policy.lock_files
        )
        command = self.spec.get("command")
        current = fingerprint(
            self.repo.top,
            lock_files,
            0,
            command=command if isinstance(command, list) else [],
            env=self.command_env(env),
            cwd=self.repo.top,
            env_python=self.policy.env_python,
        )
        return current, compare(recorded, current)

    def report(self, diffs: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"differences": diffs, "strict": strict}
        if self.rebuilt is not None:
            doc["rebuilt"] = {
                **self.rebuilt.report,
                "venv": str(self.rebuilt.venv),
                "cached": self.rebuilt.cached,
            }
        return doc

    def release(self) -> None:
        if self.rebuilt is not None:
            self.rebuilt.release()


def markdown_lines(environment: dict[str, Any], causes: dict[str, Any] | None) -> list[str]:
    """The rebuilt environment's sources and the likely causes, for the Markdown report."""
    lines: list[str] = []
    rebuilt = environment.get("rebuilt")
    if isinstance(rebuilt, dict):
        py = rebuilt.get("python", {})
        lines += [
            "",
            f"Rebuilt with {rebuilt.get('installer')} on {literal(py.get('implementation'))} "
            f"{literal(py.get('version'))} (recorded {literal(py.get('recorded'))}), "
            f"{'from the cache' if rebuilt.get('cached') else 'built now'}; environment "
            f"hash `{rebuilt.get('environment_hash')}`.",
            "",
            "| package | version | source | file | sha256 | hash checked |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {literal(p['name'], in_cell=True)} | {literal(p['version'], in_cell=True)} | "
            f"{p['source']} ({literal(p['location'], in_cell=True)}) | "
            f"{literal(p['file'], in_cell=True)} | `{p['sha256']}` | "
            f"{'yes' if p['hash_checked'] else 'no'} |"
            for p in rebuilt.get("packages", [])
        ]
        lines += [
            f"- {literal(e['package'])}: {e['source']} {literal(e['event'])}"
            for e in rebuilt.get("events", [])
        ]
    if isinstance(causes, dict):
        lines += ["", "## Likely causes", "", causes.get("note", "") + ":", ""]
        lines += [f"- {literal(p)}" for p in causes.get("untracked_inputs", [])]
    return lines
