from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def _spec_safe(path: str) -> bool:
    """docs/FORMATS.md §0 restated here, apart from the code (which decides most paths with
    one pattern match first)."""
    return not (
        path == ""
        or "\x00" in path
        or "\\" in path
        or path.startswith("/")
        or re.match(r"[A-Za-z]:", path) is not None
        or any(part in ("", ".", "..") for part in path.split("/"))
    )


@given(st.text(alphabet="aZ9_.-+/:\\\x00é", max_size=12))
def test_the_quick_decision_agrees_with_the_rules(path: str) -> None:
    assert (relpath_problem(path) is None) == _spec_safe(path)


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
