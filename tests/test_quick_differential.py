"""The quick paths against the full checks over generated repositories and changes (issue 26,
"Must show"; docs/ARCHITECTURE.md, "Mirrors"): small trees with files and symlinks, random
policies, staged and unstaged edits, deletes, mode and type changes, renames into and out of
roots, policy edits and tmp residue. Wherever a quick path answers, the full path agrees:

- enforce.quickaccept.quick_accept → enforce.checks.check_staged finds nothing blocking;
- enforce.quickaccept.quick_push → enforce.checks.check_push finds nothing blocking;
- git.quickdigest.quick_digest → the full `catalytic digest` prints the same line.

Real git, real files, the full paths in this process. A few derandomized examples by default;
`pytest -m slow` runs many more.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from catalytic_hooks.cli.fastpath import fast
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.enforce.bundles import check_bundles
from catalytic_hooks.enforce.checks import check_push, check_staged, parse_push_lines
from catalytic_hooks.enforce.quickaccept import quick_accept, quick_push
from catalytic_hooks.git import quickdigest
from catalytic_hooks.git.earlyspawn import early_status, early_where
from catalytic_hooks.git.repo import Repo

from .helpers import git, settle_index

# Files live only at these paths (no path is a directory of another); roots come from ROOTS.
PATHS = ["f", "g", "a/f", "a/g", "a/x/f", "b/f", "b/h.txt", "out/f", "tmp/f", "v/f", "_runs/r/f"]
BASE_PATHS = [p for p in PATHS if not p.startswith("tmp/")]  # no tmp residue to begin with
ROOTS = ["a", "a/x", "b", "out", "v", "b/h.txt"]

root_lists = st.lists(st.sampled_from(ROOTS), max_size=2, unique=True)


@st.composite
def policies(draw: st.DrawFn) -> str:
    lines = []
    for key in ("durable_roots", "exclusions"):
        roots = draw(root_lists)
        if roots:
            lines.append(f"{key} = {roots!r}")
    if draw(st.booleans()):
        lines.append('tmp_roots = ["tmp"]')
    if draw(st.booleans()):
        protected = draw(st.lists(st.sampled_from(ROOTS), min_size=1, max_size=3, unique=True))
        lines.append(f"protected_roots = {protected!r}")
    return "\n".join(lines).replace("'", '"') + "\n"


contents = st.sampled_from(["0\n", "1\n", "two\n", ""])
targets = st.sampled_from(["f", "../f", "a/f", "missing"])


@st.composite
def operations(draw: st.DrawFn) -> tuple[str, str, str | None]:
    """An operation on the working tree: (kind, path, argument); edits most often."""
    kind = draw(
        st.sampled_from(
            ["write"] * 4 + ["delete"] * 2 + ["rename"] * 2 + ["chmod", "symlink", "policy"]
        )
    )
    path = draw(st.sampled_from(PATHS))
    if kind == "write":
        return kind, path, draw(contents)
    if kind == "symlink":
        return kind, path, draw(targets)
    if kind == "rename":
        return kind, path, draw(st.sampled_from(PATHS))
    if kind == "policy":
        return kind, ".catalytic.toml", draw(policies())
    return kind, path, None


@dataclass
class Case:
    files: dict[str, str]
    links: dict[str, str]
    policy: str
    staged: list[tuple[tuple[str, str, str | None], bool]]  # (operation, stage it)
    unstaged: list[tuple[str, str, str | None]]


cases = st.builds(
    Case,
    files=st.dictionaries(st.sampled_from(BASE_PATHS), contents, min_size=1, max_size=6),
    links=st.dictionaries(st.sampled_from(BASE_PATHS), targets, max_size=2),
    policy=policies(),
    staged=st.lists(
        st.tuples(operations(), st.sampled_from([True, True, False])), min_size=1, max_size=3
    ),
    unstaged=st.lists(operations(), max_size=3),
)


def _apply(top: Path, op: tuple[str, str, str | None]) -> list[str]:
    """Do `op` in the working tree; the paths it touched."""
    kind, path, arg = op
    p = top / path
    if kind == "write" or kind == "policy":
        if p.is_symlink():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(arg))
    elif kind == "delete":
        if p.is_symlink() or p.exists():
            p.unlink()
    elif kind == "chmod":
        if p.exists() and not p.is_symlink():
            p.chmod(p.stat().st_mode ^ 0o100)
    elif kind == "symlink":
        if p.is_symlink() or p.exists():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(str(arg))
    elif kind == "rename":
        dst = top / str(arg)
        if (p.is_symlink() or p.exists()) and p != dst:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            p.rename(dst)
        return [path, str(arg)]
    return [path]


@contextlib.contextmanager
def _inside(top: Path) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(top)
    try:
        yield
    finally:
        os.chdir(cwd)


def _blocking(found: list[object]) -> list[str]:
    return [f"{f.kind}:{f.path}" for f in found if f.blocking]  # type: ignore[attr-defined]


def _full_digest(view: str) -> str:
    """The full path's line: the command's implementation without the quick path (and without
    Typer's start-up, a second per call)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = fast("digest", [view], None)
    assert code is not None
    return out.getvalue().rstrip("\n") if code == 0 else f"exit {code}"


@dataclass
class Tally:
    """How often each quick path answered: the property holds vacuously otherwise."""

    seen: dict[str, int] = field(default_factory=dict)

    def add(self, name: str) -> None:
        self.seen[name] = self.seen.get(name, 0) + 1


def _check(case: Case, tally: Tally) -> None:
    with tempfile.TemporaryDirectory(prefix="catalytic-diff-") as tmp:
        top = Path(tmp) / "repo"
        top.mkdir()
        git(top, "init", "-q", "-b", "main")
        (top / ".catalytic.toml").write_text(case.policy)
        for path, text in case.files.items():
            _apply(top, ("write", path, text))
        for path, target in case.links.items():
            _apply(top, ("symlink", path, target))
        git(top, "add", "-A")
        git(top, "commit", "-q", "-m", "base")
        old = git(top, "rev-parse", "HEAD").stdout.strip()
        with _inside(top):
            check_staged(Repo.discover(top))  # the full check records the base's roots
            for op, stage in case.staged:
                touched = _apply(top, op)
                for path in touched if stage else []:
                    # one at a time: a path neither on disk nor in the index stages nothing
                    git(top, "add", "-A", "--", path, check=False)
            quick = quick_accept()
            if quick:
                tally.add("commit")
                assert _blocking(check_staged(Repo.discover(top))) == [], case
            _full_digest("--worktree")  # records the snapshot of this index, and the roots
            for op in case.unstaged:
                _apply(top, op)
            settle_index(top)
            for view in ("--worktree", "--index"):
                answer = quickdigest.quick_digest([view], early_status([view]), early_where([view]))
                if answer is not None:
                    tally.add(f"digest {view}")
                    assert answer == _full_digest(view), case
            git(top, "commit", "-q", "--no-verify", "--allow-empty", "-m", "change")
            new = git(top, "rev-parse", "HEAD").stdout.strip()
            line = f"refs/heads/main {new} refs/heads/main {old}\n"
            if quick_push(line.encode(), "origin"):
                tally.add("push")
                try:
                    found = check_push(
                        Repo.discover(top), parse_push_lines(line), None, check_bundles
                    )
                except CatalyticError as exc:  # the quick path accepted what the full refuses
                    raise AssertionError(f"{case}: {exc.message}") from exc
                assert _blocking(found) == [], case


def _run(examples: int) -> Tally:
    tally = Tally()

    # No shrinking: each example is a repository and a dozen git commands, and the case that
    # failed is printed whole.
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(cases)
    def check(case: Case) -> None:
        _check(case, tally)

    check()
    return tally


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PRE_COMMIT", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_the_quick_paths_agree_with_the_full_checks(plain_env: None) -> None:
    tally = _run(12)
    # Not vacuous: every quick path answered some of the generated cases.
    assert set(tally.seen) == {"commit", "push", "digest --worktree", "digest --index"}, tally


@pytest.mark.slow
def test_the_quick_paths_agree_with_the_full_checks_many_cases(plain_env: None) -> None:
    tally = _run(400)
    assert all(n >= 20 for n in tally.seen.values()), tally
