"""The layering of docs/ARCHITECTURE.md, enforced from the imports: no upward import, no cycle,
pygit2 and the git CLI only in `git/` (a git command line is built only by git/invoke.py, and
composed only in `git/`), Typer and rich only in `cli/`; and the hook entry point stays light."""

from __future__ import annotations

import ast
from pathlib import Path

from .helpers import DEFAULT_POLICY, ROOT, imported_by

PACKAGE = ROOT / "catalytic_hooks"
NAME = "catalytic_hooks"

# Lower rank = lower layer. A module may import its own layer or a strictly lower one; layers of
# equal rank (replay, enforce) are siblings and may not import each other.
LAYERS = {
    "core": 0,
    "fs": 1,
    "git": 2,
    "provenance": 3,
    "bundle": 4,
    "archive": 5,
    "run": 5,
    "environment": 6,
    "registry": 6,
    "report": 6,
    "restore": 6,
    "replay": 7,
    "enforce": 7,
    "cli": 9,
}
ENTRY_RANK = 10  # catalytic_hooks/__init__.py and __main__.py sit above everything
ONLY_IN = {"pygit2": "git", "typer": "cli", "rich": "cli", "click": "cli"}
# The demo plays a user at a terminal: the git commands it runs are the user's, shown on screen,
# not the tool's own access to a repository.
GIT_CLI_EXEMPT = {"cli/demo_cmd.py"}
# The one module that turns git arguments into a command line (replacement, grafts and hooks off).
GIT_ARGV_HOME = "git/invoke.py"
# What runs a git command line its caller composes (git.repo.Repo's methods, git.earlyspawn's
# spawner): called only inside git/, where each command has a name every other layer calls.
GIT_RUNNERS = frozenset(
    {"git", "git_ok", "git_proc", "run_env", "start_env", "spawn_git", "Spawned"}
)
# Spellings of a setting forced on git (hooks off, replacement off, a configuration override):
# each is defined once, in GIT_ARGV_HOME, and every other module names it from there.
GIT_OVERRIDE_WORDS = ("hooksPath", "GIT_NO_REPLACE_OBJECTS", "GIT_CONFIG_")


def module_name(pkg_dir: Path, path: Path) -> str:
    rel = path.relative_to(pkg_dir).with_suffix("")
    parts = [pkg_dir.name, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(pkg_dir: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import, lazy ones inside functions included."""
    tree = ast.parse(path.read_text())
    here = module_name(pkg_dir, path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
            # `from pkg import submodule` imports the submodule too
            found += [
                (node.lineno, f"{mod}.{a.name}")
                for a in node.names
                if (pkg_dir.parent / (mod + "." + a.name).replace(".", "/"))
                .with_suffix(".py")
                .exists()
            ]
    return found


def layer_of(pkg_dir: Path, module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def runs_git(path: Path) -> list[int]:
    """Lines where a list or tuple literal starts with the string "git" (a git command line)."""
    tree = ast.parse(path.read_text())
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.List | ast.Tuple)
        and n.elts
        and isinstance(n.elts[0], ast.Constant)
        and n.elts[0].value == "git"
    ]


def composes_git(path: Path) -> list[int]:
    """Lines that call a git runner (GIT_RUNNERS, or `.start(...)` given git arguments: a string
    literal or a starred list first)."""
    tree = ast.parse(path.read_text())
    found = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        first = n.args[0] if n.args else None
        gitlike = isinstance(first, ast.Starred) or (
            isinstance(first, ast.Constant) and isinstance(first.value, str)
        )
        if name in GIT_RUNNERS or (name == "start" and gitlike):
            found.append(n.lineno)
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may name a setting; code may not spell one)."""
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = n.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def overrides_git(path: Path) -> list[int]:
    """Lines that spell a setting forced on git: a string holding one of GIT_OVERRIDE_WORDS, or a
    `-c` argument to a git runner or in a git command line."""
    tree = ast.parse(path.read_text())
    prose = _docstrings(tree)
    found = set()
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and id(n) not in prose
            and any(w in n.value for w in GIT_OVERRIDE_WORDS)
        ):
            found.add(n.lineno)
        args: list[ast.expr] = []
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            args = n.args if name in GIT_RUNNERS else []
        elif isinstance(n, ast.List | ast.Tuple) and n.elts:
            first = n.elts[0]
            args = n.elts if isinstance(first, ast.Constant) and first.value == "git" else []
        found |= {a.lineno for a in args if isinstance(a, ast.Constant) and a.value == "-c"}
    return sorted(found)


def violations(pkg_dir: Path) -> list[str]:
    name = pkg_dir.name
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        rel = path.relative_to(pkg_dir).as_posix()
        me = module_name(pkg_dir, path)
        my_layer = layer_of(pkg_dir, me)
        my_rank = LAYERS.get(my_layer or "", ENTRY_RANK)
        graph[me] = set()
        for line, mod in imports_of(pkg_dir, path):
            top = mod.split(".")[0]
            if top in ONLY_IN and my_layer != ONLY_IN[top]:
                problems.append(f"{rel}:{line}: imports {top} outside {ONLY_IN[top]}/")
            if top != name:
                continue
            graph[me].add(mod)
            other = layer_of(pkg_dir, mod)
            if other is None or other == my_layer:
                continue
            if LAYERS[other] >= my_rank:
                problems.append(
                    f"{rel}:{line}: {my_layer or 'entry'} imports {mod} "
                    f"({other} is not below {my_layer or 'entry'})"
                )
        if rel not in GIT_CLI_EXEMPT and rel != GIT_ARGV_HOME:
            where = "outside git/" if my_layer != "git" else f"outside {GIT_ARGV_HOME}"
            problems += [f"{rel}:{line}: runs the git CLI {where}" for line in runs_git(path)]
        if my_layer != "git" and rel not in GIT_CLI_EXEMPT:
            problems += [
                f"{rel}:{line}: composes a git command outside git/ (name it in git/)"
                for line in composes_git(path)
            ]
        if rel not in GIT_CLI_EXEMPT and rel != GIT_ARGV_HOME:
            problems += [
                f"{rel}:{line}: forces a git setting outside {GIT_ARGV_HOME} (define it there)"
                for line in overrides_git(path)
            ]
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module that can reach itself through imports, with one such path."""
    edges = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    found: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    for start in sorted(edges):
        stack = [(start, [start])]
        visited: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges[node]):
                if nxt == start:
                    key = frozenset(path)
                    if key not in seen_cycles:
                        seen_cycles.add(key)
                        found.append([*path, start])
                elif nxt not in visited:
                    visited.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_the_package_obeys_its_layering() -> None:
    assert violations(PACKAGE) == []


def test_every_package_directory_is_a_known_layer() -> None:
    dirs = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert dirs == set(LAYERS)


def _synthetic(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / NAME
    for rel, text in {"__init__.py": "", **files}.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return pkg


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/policy.py": "from catalytic_hooks.cli.output import say\n",
            "cli/__init__.py": "",
            "cli/output.py": "def say(): ...\n",
        },
    )
    assert violations(pkg) == [
        "core/policy.py:1: core imports catalytic_hooks.cli.output (cli is not below core)"
    ]


def test_a_lazy_relative_upward_import_is_caught(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "fs/__init__.py": "",
            "fs/files.py": "def f():\n    from ..bundle import run\n",
            "bundle/__init__.py": "",
            "bundle/run.py": "",
        },
    )
    assert violations(pkg) == [
        "fs/files.py:2: fs imports catalytic_hooks.bundle (bundle is not below fs)",
        "fs/files.py:2: fs imports catalytic_hooks.bundle.run (bundle is not below fs)",
    ]


def test_sibling_layers_may_not_import_each_other(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "replay/__init__.py": "",
            "replay/runner.py": "import catalytic_hooks.enforce.checks\n",
            "enforce/__init__.py": "",
            "enforce/checks.py": "",
        },
    )
    assert violations(pkg) == [
        "replay/runner.py:1: replay imports "
        "catalytic_hooks.enforce.checks (enforce is not below replay)"
    ]


def test_a_cycle_inside_a_layer_is_caught(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "restore/__init__.py": "",
            "restore/engine.py": "from catalytic_hooks.restore.transaction import x\n",
            "restore/transaction.py": "def x():\n    from catalytic_hooks.restore import chain\n",
            "restore/chain.py": "from catalytic_hooks.restore.engine import y\n",
        },
    )
    assert violations(pkg) == [
        "import cycle: catalytic_hooks.restore.chain -> "
        "catalytic_hooks.restore.engine -> "
        "catalytic_hooks.restore.transaction -> "
        "catalytic_hooks.restore.chain"
    ]


def test_pygit2_typer_and_the_git_cli_stay_in_their_layers(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "bundle/__init__.py": "",
            "bundle/run.py": "import pygit2\nimport rich.console\n"
            "def f(sp):\n    sp.run(['git', 'status'])\n",
            "git/__init__.py": "",
            "git/repo.py": "import pygit2\n",
            "git/invoke.py": "def argv(args):\n    return ['git', *args]\n",
        },
    )
    assert violations(pkg) == [
        "bundle/run.py:1: imports pygit2 outside git/",
        "bundle/run.py:2: imports rich outside cli/",
        "bundle/run.py:4: runs the git CLI outside git/",
    ]


def test_a_git_command_line_is_built_only_by_the_invocation_home(tmp_path: Path) -> None:
    # Inside git/ too: a module starting git on its own would skip replacement, grafts and hooks.
    pkg = _synthetic(
        tmp_path,
        {
            "git/__init__.py": "",
            "git/invoke.py": "def argv(args):\n    return ['git', *args]\n",
            "git/rangediff.py": "import subprocess\n"
            "def f():\n    subprocess.run(['git', 'diff-tree', '--stdin'])\n",
        },
    )
    assert violations(pkg) == ["git/rangediff.py:3: runs the git CLI outside git/invoke.py"]


def test_a_git_command_composed_outside_git_is_caught(tmp_path: Path) -> None:
    pkg = _synthetic(
        tmp_path,
        {
            "git/__init__.py": "",
            "git/invoke.py": "",
            "git/refs.py": (
                "def has_refs(repo):\n    return repo.git('for-each-ref', '--count=1')\n"
            ),
            "enforce/__init__.py": "",
            "enforce/server.py": "from catalytic_hooks.git.refs import has_refs\n"
            "def a(repo):\n    return repo.git('for-each-ref', '--count=1')\n"
            "def b(repo, args):\n    return repo.git_ok(*args)\n"
            "def c(repo):\n    return repo.start('status', '-z')\n"
            "def d(repo):\n    return repo.run_env({}, 'write-tree')\n"
            "def e(bar):\n    bar.start()\n    return has_refs(bar)\n",
            "enforce/quick.py": "from catalytic_hooks.git.early import spawn_git\n"
            "def f():\n    return spawn_git('rev-parse', 'HEAD')\n",
        },
    )
    assert violations(pkg) == [
        "enforce/quick.py:3: composes a git command outside git/ (name it in git/)",
        "enforce/server.py:3: composes a git command outside git/ (name it in git/)",
        "enforce/server.py:5: composes a git command outside git/ (name it in git/)",
        "enforce/server.py:7: composes a git command outside git/ (name it in git/)",
        "enforce/server.py:9: composes a git command outside git/ (name it in git/)",
    ]


def test_a_git_setting_forced_outside_the_invocation_home_is_caught(tmp_path: Path) -> None:
    # Hooks off, replacement off and every `-c` override live in git/invoke.py, so a git quirk
    # is handled in one place; a second spelling elsewhere would drift from it.
    pkg = _synthetic(
        tmp_path,
        {
            "git/__init__.py": "",
            "git/invoke.py": "NO_HOOKS = ('-c', 'core.hooksPath=/dev/null')\n"
            "ENV = {'GIT_NO_REPLACE_OBJECTS': '1'}\n",
            "git/worktree.py": '"""Runs with core.hooksPath off (prose may say so)."""\n'
            "def add(repo):\n"
            "    return repo.git('-c', 'core.hooksPath=/dev/null', 'worktree', 'add')\n",
            "git/pack.py": "def env(e):\n    return {**e, 'GIT_NO_REPLACE_OBJECTS': '1'}\n",
            "git/runstate.py": "def pin(e):\n    e['GIT_CONFIG_COUNT'] = '1'\n",
            "git/history.py": "def log(r):\n    return r.git('-c', 'gpg.format=ssh', 'log')\n",
            "enforce/__init__.py": "",
            "enforce/ci.py": "HOOKS = 'core.hooksPath'\n",
        },
    )
    assert violations(pkg) == [
        "enforce/ci.py:1: forces a git setting outside git/invoke.py (define it there)",
        "git/history.py:2: forces a git setting outside git/invoke.py (define it there)",
        "git/pack.py:2: forces a git setting outside git/invoke.py (define it there)",
        "git/runstate.py:2: forces a git setting outside git/invoke.py (define it there)",
        "git/worktree.py:3: forces a git setting outside git/invoke.py (define it there)",
    ]


def test_hook_entry_point_imports_no_heavy_modules(make_repo) -> None:
    repo = make_repo({"a.txt": "a"}, policy=DEFAULT_POLICY)
    loaded = imported_by("hook", "pre-commit", cwd=repo)
    for heavy in ("typer", "rich", "pygit2", "click", "pydantic", "cryptography"):
        assert heavy not in loaded, heavy


def _modules_section() -> str:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    return doc.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]


def test_every_module_is_named_in_architecture_md() -> None:
    import re

    named = set(re.findall(r"^- `([\w/]+\.py)`:", _modules_section(), re.M))
    actual = {
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
    }
    assert sorted(actual - named) == [], "modules missing from docs/ARCHITECTURE.md ## Modules"
    assert sorted(named - actual) == [], "docs/ARCHITECTURE.md names modules that do not exist"


def test_every_error_code_is_documented_with_its_exit_class() -> None:
    import re

    from catalytic_hooks.core.errors import ErrorCode, exit_code_for
    from catalytic_hooks.core.outcomes import SuccessCode, Verdict, VerdictCode

    table = (ROOT / "docs" / "CODES.md").read_text()
    found = re.findall(r"^\| `([A-Z_]+)` \| (\d) \|", table, re.M)
    rows = {m[0]: int(m[1]) for m in found}
    assert len(rows) == len(found), "a code documented twice"
    codes = {c.value: exit_code_for(c) for c in ErrorCode}
    # The codes of a command that raised nothing: successes exit 0, verdicts that say no exit 1.
    assert not set(codes) & {*SuccessCode, *VerdictCode}, "a success or verdict code is an error"
    codes |= {c.value: 0 for c in SuccessCode} | {c.value: 1 for c in VerdictCode}
    assert {v.code: int(not v.passing) for v in Verdict}.items() <= codes.items()
    assert sorted(set(codes) - set(rows)) == [], "codes missing from docs/CODES.md"
    assert sorted(set(rows) - set(codes)) == [], "docs/CODES.md documents unknown codes"
    assert {c: rows[c] for c in codes if rows[c] != codes[c]} == {}, "wrong exit class"
