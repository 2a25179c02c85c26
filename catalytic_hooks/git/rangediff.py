"""What every commit of a range changed, at git's speed (README: "Performance").

One `rev-list` lists the range; git's automatic merge of every two-parent merge comes from one
`git merge-tree --stdin --write-tree` process (its trees go to a scratch object directory, so a
check writes nothing into the repository it judges); the tree diffs are computed in-process by
libgit2 (pygit2), which only descends into subtrees whose ids differ: no process per commit.
Diffs are produced one commit at a time and never kept.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.git.repo import RawChange, Repo

MERGE_AGAINST = " (vs git's merge of the parents)"
OCTOPUS_AGAINST = " (octopus merge, vs its first parent)"


def range_commits(repo: Repo, tip: str, exclude: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(commit, parents), parents before children."""
    out = repo.git("rev-list", "--parents", "--topo-order", "--reverse", tip, "--not", *exclude,
                   "--").decode()
    result = []
    for line in out.splitlines():
        oids = line.split()
        result.append((oids[0], oids[1:]))
    return result


class RangeDiffer:
    """Use as a context manager: owns the scratch object directory for merge trees."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._odb: Any = None
        self.merged: dict[str, tuple[str, frozenset[str]]] = {}

    def __enter__(self) -> RangeDiffer:
        self._scratch = tempfile.TemporaryDirectory(prefix="catalytic-merge-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()

    def _view_env(self) -> dict[str, str]:
        assert self._scratch is not None
        env = self.repo.env
        alternates = [p for p in (env.get("GIT_OBJECT_DIRECTORY") or
                                  str(self.repo.common_dir / "objects"),
                                  env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES")) if p]
        return {**env, "GIT_OBJECT_DIRECTORY": self._scratch.name,
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.pathsep.join(alternates)}

    def merge_all(self, merges: Sequence[tuple[str, str, str]]) -> None:
        """git's merge of each (merge commit, first parent, second parent), in one process."""
        if not merges:
            return
        lines = "".join(f"{p1} {p2}\n" for _, p1, p2 in merges).encode()
        proc = subprocess.run(["git", "merge-tree", "--write-tree", "--stdin", "--name-only",
                               "--no-messages", "--allow-unrelated-histories"],
                              input=lines, capture_output=True, cwd=self.repo.top,
                              env=self._view_env())
        if proc.returncode not in (0, 1):
            raise CatalyticError(ErrorCode.GIT_FAILED, "git merge-tree --stdin failed: "
                                 f"{proc.stderr.decode(errors='replace').strip()}")
        fields = proc.stdout.split(b"\0")
        i = 0
        for oid, _, _ in merges:
            # <clean: 1|0> NUL <tree> NUL (<conflicted path> NUL)* NUL
            if i + 1 >= len(fields):
                raise CatalyticError(ErrorCode.GIT_FAILED, "git merge-tree --stdin: short output")
            tree = fields[i + 1].decode()
            i += 2
            conflicted = set()
            while i < len(fields) and fields[i]:
                conflicted.add(os.fsdecode(fields[i]))
                i += 1
            i += 1
            self.merged[oid] = (tree, frozenset(conflicted))

    def _repo2(self) -> Any:
        if self._odb is None:
            repo2 = self.repo.pygit2_repository()
            assert self._scratch is not None
            repo2.odb.add_disk_alternate(self._scratch.name)
            quarantine = self.repo.env.get("GIT_OBJECT_DIRECTORY")
            for extra in [quarantine, *(self.repo.env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES")
                                         or "").split(os.pathsep)]:
                if extra and os.path.isdir(extra):
                    repo2.odb.add_disk_alternate(extra)
            self._odb = repo2
        return self._odb

    def changes(self, oid: str, parents: list[str]
                ) -> tuple[list[RawChange], frozenset[str], str]:
        """What the commit itself changed and against what: a commit against its parent (a
        root against the empty tree), a two-parent merge against git's merge of the parents
        (with the paths that conflicted there), an octopus merge against its first parent."""
        if self.repo.object_format != "sha1":
            return self._changes_by_git(oid, parents)
        import pygit2

        repo2 = self._repo2()
        new = repo2[oid].peel(pygit2.Tree)
        if len(parents) == 2:
            tree, conflicted = self.merged[oid]
            return _diff(repo2, repo2[tree], new), conflicted, MERGE_AGAINST
        if not parents:
            return _diff(repo2, None, new), frozenset(), ""
        old = repo2[parents[0]].peel(pygit2.Tree)
        return _diff(repo2, old, new), frozenset(), OCTOPUS_AGAINST if len(parents) > 2 else ""


    def entry(self, commit: str, path: str) -> tuple[str, str] | None:
        """(mode, id) of `path` in `commit`'s tree, None when absent."""
        if self.repo.object_format != "sha1":
            out = self.repo.git("ls-tree", "-z", "--full-tree", commit, "--",
                                f":(literal){path}").decode("utf-8", "surrogateescape")
            meta = out.split("\t", 1)[0].split() if out else []
            return (meta[0], meta[2]) if len(meta) == 3 else None
        import pygit2

        try:
            obj = self._repo2()[commit].peel(pygit2.Tree)[path]
        except KeyError:
            return None
        return f"{obj.filemode:06o}", str(obj.id)

    def _changes_by_git(self, oid: str, parents: list[str]
                        ) -> tuple[list[RawChange], frozenset[str], str]:
        """libgit2 cannot read SHA-256 repositories: one git process per commit there."""
        view = Repo(self.repo.top, self.repo.git_dir, self.repo.common_dir, self._view_env())
        if len(parents) == 2:
            tree, conflicted = self.merged[oid]
            return view.diff_raw(tree, oid), conflicted, MERGE_AGAINST
        old = parents[0] if parents else self.repo.empty_tree()
        return view.diff_raw(old, oid), frozenset(), OCTOPUS_AGAINST if len(parents) > 2 \
            else ""


def _diff(repo2: Any, old: Any, new: Any) -> list[RawChange]:
    import pygit2

    flags = pygit2.enums.DiffOption.INCLUDE_TYPECHANGE
    diff = new.diff_to_tree(flags=flags, swap=True) if old is None else \
        repo2.diff(old, new, flags=flags)
    out = []
    for d in diff.deltas:
        status = d.status_char()
        side = d.old_file if status == "D" else d.new_file
        out.append(RawChange(status, f"{d.old_file.mode:06o}", f"{d.new_file.mode:06o}",
                             str(d.old_file.id), str(d.new_file.id), os.fsdecode(side.raw_path)))
    return out


def iter_changes(differ: RangeDiffer, commits: Sequence[tuple[str, list[str]]]
                 ) -> Iterator[tuple[str, list[str], list[RawChange], frozenset[str], str]]:
    differ.merge_all([(oid, ps[0], ps[1]) for oid, ps in commits if len(ps) == 2])
    for oid, parents in commits:
        yield (oid, parents, *differ.changes(oid, parents))
