"""A generated history for range checks (tests and bench/range_bench.py): thousands of commits
written with `git fast-import`, with topic branches merged cleanly and with conflicts,
hand-resolved conflicts, evil merges, renames and directory renames, octopus merges, a subtree
merge of an unrelated history and so a root commit inside the range.

The policy protects everything but `outputs/`; the generator records which commits it meant to
be violations, but tests compare against `oracle()`, computed with git alone.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

POLICY = 'durable_roots = ["outputs"]\n'
ENV_GIT = ["git", "-c", "user.name=gen", "-c", "user.email=gen@example.invalid"]


@dataclass
class Gen:
    rng: random.Random
    lines: list[str] = field(default_factory=list)
    marks: int = 0
    time: int = 1_700_000_000
    planted: dict[str, int] = field(default_factory=dict)  # what was generated, by kind

    def commit(
        self,
        ref: str,
        parents: list[int | str],
        before: dict[str, str],
        after: dict[str, str],
        message: str,
    ) -> int:
        self.marks += 1
        self.time += 1
        out = [
            f"commit {ref}",
            f"mark :{self.marks}",
            f"committer gen <gen@example.invalid> {self.time} +0000",
            f"data {len(message.encode())}",
            message,
        ]
        for i, p in enumerate(parents):
            ref_p = f":{p}" if isinstance(p, int) else p
            out.append(f"{'from' if i == 0 else 'merge'} {ref_p}")
        for path in sorted(before.keys() - after.keys()):
            out.append(f"D {path}")
        for path, text in sorted(after.items()):
            if before.get(path) != text:
                data = text.encode()
                out += [f"M 100644 inline {path}", f"data {len(data)}", text]
        self.lines.append("\n".join(out) + "\n")
        return self.marks

    def count(self, kind: str) -> None:
        self.planted[kind] = self.planted.get(kind, 0) + 1


def _touch(state: dict[str, str], path: str, n: int) -> dict[str, str]:
    return {**state, path: f"{path} v{n}\n"}


def _topic(g: Gen, main: dict[str, str], base: int, k: int, n: int) -> tuple[int, dict[str, str]]:
    """A topic branch of k commits on durable files (sometimes a rename, or a whole directory
    renamed), from `base`; returns its tip and state."""
    state, tip = dict(main), base
    for j in range(k):
        r = g.rng.random()
        movable = [p for p in state if p.startswith("outputs/t") and p.count("/") == 2]
        if r < 0.1 and movable:
            old_dir = movable[0].rsplit("/", 1)[0]
            new_dir = f"outputs/moved{n}{j}"
            moved = {
                p: p.replace(old_dir, new_dir, 1) for p in state if p.startswith(old_dir + "/")
            }
            new = {moved.get(p, p): t for p, t in state.items()}
            g.count("directory-rename")
        elif r < 0.2 and movable:
            src = movable[-1]
            new = {(f"outputs/renamed{n}{j}.txt" if p == src else p): t for p, t in state.items()}
            g.count("rename")
        else:
            path = f"outputs/t{n}/f{j}.txt"
            new = _touch(state, path, j)
        tip = g.commit(f"refs/heads/topic{n}", [tip], state, new, f"topic {n} commit {j}")
        state = new
    return tip, state


def generate(repo: Path, commits: int, seed: int = 7) -> dict[str, int]:
    """Write a history of about `commits` commits into a new repository at `repo`; returns the
    planted counts. refs: `main` (the tip), `root` (the first commit)."""
    g = Gen(random.Random(seed))
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    main = {
        ".catalytic.toml": POLICY,
        **{f"data/d{i}.csv": f"data {i}\n" for i in range(40)},
        **{f"src/s{i}.py": f"s{i} = 1\n" for i in range(20)},
        "outputs/k.txt": "k\n",
    }
    tip = g.commit("refs/heads/main", [], {}, main, "root")
    g.lines.append(f"reset refs/heads/root\nfrom :{tip}\n")
    n = 0
    while g.marks < commits:
        n += 1
        r = g.rng.random()
        if r < 0.45:  # a linear commit on main, sometimes a violation
            path = (
                f"data/d{g.rng.randrange(40)}.csv" if g.rng.random() < 0.05 else f"outputs/m{n}.txt"
            )
            new = _touch(main, path, n)
            g.count("violation" if path.startswith("data/") else "clean-commit")
            tip, main = g.commit("refs/heads/main", [tip], main, new, f"main {n}"), new
        elif r < 0.97:
            tip, main = _merge(g, main, tip, n)
        else:
            tip, main = _subtree_or_octopus(g, main, tip, n)
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=repo, check=True, input="".join(g.lines).encode()
    )
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=repo, check=True)
    return g.planted


def _merge(g: Gen, main: dict[str, str], tip: int, n: int) -> tuple[int, dict[str, str]]:
    base, base_state = tip, main
    ttip, tstate = _topic(g, base_state, base, g.rng.randint(1, 4), n)
    # main moves on meanwhile, on other files
    mpath = f"outputs/side{n}.txt"
    mstate = _touch(base_state, mpath, n)
    tip = g.commit("refs/heads/main", [tip], base_state, mstate, f"main side {n}")
    merged = {**mstate}
    for p in set(base_state) | set(tstate):
        if tstate.get(p) != base_state.get(p):
            if p in tstate:
                merged[p] = tstate[p]
            else:
                merged.pop(p, None)
    r = g.rng.random()
    if r < 0.08:  # both sides changed the same protected file: a conflict, resolved by hand
        path = f"data/d{g.rng.randrange(40)}.csv"
        ours = _touch(mstate, path, n * 10)
        tip = g.commit("refs/heads/main", [tip], mstate, ours, f"main edits {path}")
        theirs = _touch(tstate, path, n * 10 + 1)
        ttip = g.commit(f"refs/heads/topic{n}", [ttip], tstate, theirs, f"topic edits {path}")
        merged = {**merged, path: f"{path} resolved {n}\n"}
        mstate = ours
        g.count("protected-conflict")
    elif r < 0.16:  # an evil merge: the merge itself changes a protected file
        merged = _touch(merged, f"src/s{g.rng.randrange(20)}.py", n)
        g.count("evil-merge")
    elif r < 0.24:  # a conflict in a durable file, resolved by hand: no finding
        ours = _touch(mstate, "outputs/k.txt", n * 10)
        tip = g.commit("refs/heads/main", [tip], mstate, ours, "main edits k")
        theirs = _touch(tstate, "outputs/k.txt", n * 10 + 1)
        ttip = g.commit(f"refs/heads/topic{n}", [ttip], tstate, theirs, "topic edits k")
        merged = {**merged, "outputs/k.txt": f"k resolved {n}\n"}
        mstate = ours
        g.count("durable-conflict")
    else:
        g.count("clean-merge")
    tip = g.commit("refs/heads/main", [tip, ttip], mstate, merged, f"merge topic {n}")
    return tip, merged


def _subtree_or_octopus(
    g: Gen, main: dict[str, str], tip: int, n: int
) -> tuple[int, dict[str, str]]:
    if g.rng.random() < 0.5:
        a, astate = _topic(g, main, tip, 1, n * 100)
        b, bstate = _topic(g, main, tip, 1, n * 100 + 1)
        merged = {**astate, **{p: t for p, t in bstate.items() if p not in main}}
        g.count("octopus")
        return g.commit("refs/heads/main", [tip, a, b], main, merged, f"octopus {n}"), merged
    # An unrelated history (a root commit inside the range) merged as a subtree under vendor/.
    lib = {"lib.py": f"lib {n}\n", "README": "vendored\n"}
    root = g.commit(f"refs/heads/vendor{n}", [], {}, lib, f"vendor root {n}")
    merged = {**main, **{f"vendor/v{n}/{p}": t for p, t in lib.items()}}
    g.count("subtree-merge")
    return g.commit("refs/heads/main", [tip, root], main, merged, f"subtree {n}"), merged


def oracle(repo: Path, frm: str, to: str) -> set[tuple[str, str]]:
    """(commit, path) of every protected path a commit changed, with git alone: a commit vs its
    parent (a root vs the empty tree), a merge vs `git merge-tree --write-tree` of its parents
    (conflicted protected paths included), an octopus merge vs each of its parents."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout

    def protected(path: str) -> bool:
        return not (path == "outputs" or path.startswith("outputs/"))

    found = set()
    for line in git("rev-list", "--parents", to, f"^{frm}").splitlines():
        oid, *parents = line.split()
        conflicted: set[str] = set()
        if len(parents) == 2:
            out = subprocess.run(
                [
                    "git",
                    "merge-tree",
                    "--write-tree",
                    "--name-only",
                    "--no-messages",
                    "--allow-unrelated-histories",
                    *parents,
                ],
                cwd=repo,
                capture_output=True,
                text=True,
            ).stdout.split("\n")
            against, conflicted = out[0], {p for p in out[1:] if p}
            diff = git("diff-tree", "-r", "--no-renames", "--name-only", against, oid)
        elif not parents:
            diff = git("diff-tree", "-r", "--no-renames", "--name-only", "--root", oid)
            diff = "\n".join(diff.splitlines()[1:])
        else:  # one parent, or an octopus against each of its parents
            diff = "\n".join(
                git("diff-tree", "-r", "--no-renames", "--name-only", p, oid) for p in parents
            )
        for path in {p for p in diff.splitlines() if p} | conflicted:
            if protected(path):
                found.add((oid, path))
    return found
