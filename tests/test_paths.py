from __future__ import annotations

import pytest

from catalytic_hooks.core.errors import CatalyticError, ErrorCode
from catalytic_hooks.core.paths import check_relpath, normalise_root, relpath_problem
from catalytic_hooks.core.roots import under

BAD = ["", "/a", "a//b", "a/", "./a", "a/./b", "../a", "a/..", "a\\b", "C:x", "c:/x", "a\x00b"]


@pytest.mark.parametrize("path", BAD)
def test_unsafe_relpaths_rejected(path: str) -> None:
    assert relpath_problem(path) is not None
    with pytest.raises(CatalyticError) as err:
        check_relpath(path)
    assert err.value.code is ErrorCode.PATH_INVALID


@pytest.mark.parametrize("path", ["a", "a/b.txt", "é/日本", "a..b", ".hidden/x", "x/.."[:-1] + "y"])
def test_safe_relpaths(path: str) -> None:
    assert check_relpath(path) == path


@pytest.mark.parametrize(
    ("root", "norm"),
    [("cache/", "cache"), ("./cache", "cache"), ("a//b/", "a/b"), (".", "."), ("./", ".")],
)
def test_root_normalisation(root: str, norm: str) -> None:
    assert normalise_root(root) == norm


@pytest.mark.parametrize("root", ["", "  ", "/abs", "a/../b", "..", "C:/x"])
def test_bad_roots(root: str) -> None:
    with pytest.raises(CatalyticError) as err:
        normalise_root(root)
    assert err.value.code is ErrorCode.CONFIG_INVALID


def test_whole_component_prefix() -> None:
    assert under("out/a.txt", "out")
    assert under("out", "out")
    assert not under("outputs/a", "out")
    assert under("anything", ".")
