"""Compact manifests (core.records) give the same bytes as the dict-based formulas they replace:
digest, count, mapping, canonical JSON, diff and the stored form, for any paths and values
(quotes, backslashes, control characters, non-ASCII, `:symlink`-looking names)."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalytic_hooks.core.canonical import canonical_bytes
from catalytic_hooks.core.digest import TreeDigest, manifest_digest
from catalytic_hooks.core.errors import CatalyticError
from catalytic_hooks.core.receipts import diff_manifests
from catalytic_hooks.core.records import Overlay, Records, diff

_CHARS = st.characters(blacklist_characters="\n\r\x00", blacklist_categories=("Cs",))
PATHS = st.text(_CHARS, min_size=1, max_size=12) | st.sampled_from(
    ["a", "a:symlink", "a:gitlink", 'q"x', "b\\c", "tab\tx", "é/ü", "z" * 3, "a/b:c"]
)
HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)
VALUES = (
    HEX
    | HEX.map(lambda h: "symlink:" + h)
    | st.binary(min_size=20, max_size=20).map(lambda b: "gitlink:" + b.hex())
)
MANIFESTS = st.dictionaries(PATHS, VALUES, max_size=25)


def _expected(base: dict[str, str], removed: list[str], added: dict[str, str]) -> dict[str, str]:
    """The dict an Overlay(base, removed, added) stands for."""
    return {**{k: v for k, v in base.items() if k not in removed}, **added}


def _cj(d: dict[str, str]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=150, deadline=None)
@given(MANIFESTS, st.lists(PATHS, max_size=6), st.dictionaries(PATHS, VALUES, max_size=6))
def test_overlay_equals_the_dict_it_stands_for(
    base: dict[str, str], removed: list[str], added: dict[str, str]
) -> None:
    expected = _expected(base, removed, added)
    o = Overlay(Records.from_values(base), frozenset(removed), added)
    assert o.digest() == manifest_digest(expected)
    assert len(o) == len(expected)
    assert o.to_dict() == expected
    assert list(o) == sorted(expected)
    assert o.json() == _cj(expected)
    assert canonical_bytes({"m": o, "x": [o]}) == canonical_bytes({"m": expected, "x": [expected]})
    for k in [*base, *removed, *added]:
        assert o.get(k) == expected.get(k)
        assert (k in o) == (k in expected)
    plain = Overlay(Records.from_values(base))
    assert diff(plain, o) == diff_manifests(base, expected)  # different bases: every path
    shared = Overlay(o.base)
    assert diff(shared, o) == diff_manifests(base, expected)  # one base: the touched paths


@settings(max_examples=100, deadline=None)
@given(MANIFESTS)
def test_stored_form_round_trips_and_rejects_any_other_bytes(values: dict[str, str]) -> None:
    r = Records.from_values(values)
    index, text = r.dump("ident-1")
    loaded = Records.load(index, text)
    assert loaded is not None and loaded[0] == "ident-1"
    back = loaded[1]
    assert back.text == r.text and back.digest == r.digest
    assert list(back.starts) == list(r.starts) and list(back.klens) == list(r.klens)
    assert Records.load(index[:-1], text) is None  # truncated
    for part in (0, 1):
        if (index, text)[part]:
            flipped = [bytearray(index), bytearray(text)]
            flipped[part][-1] ^= 1
            assert Records.load(bytes(flipped[0]), bytes(flipped[1])) is None
    other = Records.from_values({**values, "zz-extra": "0" * 64})
    assert Records.load(index, other.dump("x")[1]) is None  # records of another snapshot


@settings(max_examples=100, deadline=None)
@given(MANIFESTS, st.lists(PATHS, max_size=6), st.dictionaries(PATHS, VALUES, max_size=6))
def test_materialized_overlay_is_the_records_of_its_dict(
    base: dict[str, str], removed: list[str], added: dict[str, str]
) -> None:
    expected = _expected(base, removed, added)
    got = Overlay(Records.from_values(base), frozenset(removed), added).materialize()
    want = Records.from_values(expected)
    assert (got.text, got.digest) == (want.text, want.digest)
    assert list(got.starts) == list(want.starts) and list(got.klens) == list(want.klens)


@settings(max_examples=100, deadline=None)
@given(MANIFESTS, st.integers(min_value=1, max_value=5))
def test_concatenated_chunks_are_the_records_of_the_whole(values: dict[str, str], n: int) -> None:
    keys = sorted(values, key=lambda k: k.encode())
    parts = [Records.from_values({k: values[k] for k in keys[i::n]}) for i in range(n)]  # unordered
    ordered = [
        Records.from_values(
            {k: values[k] for k in keys[i * len(keys) // n : (i + 1) * len(keys) // n]}
        )
        for i in range(n)
    ]
    want = Records.from_values(values)
    for got in (Records.concat(parts), Records.concat(ordered)):
        assert (got.text, got.digest, list(got.starts), list(got.klens)) == (
            want.text,
            want.digest,
            list(want.starts),
            list(want.klens),
        )


def test_digest_is_the_formula_on_a_realistic_manifest() -> None:
    values = {
        f"d{i % 7}/f{i}.txt": hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)
    }
    td = TreeDigest.of(values)
    assert td.digest == manifest_digest(values)
    assert td.manifest == values and td.file_count == 5000
    text = "".join(f"{k}:{values[k]}\n" for k in sorted(values)).encode()
    assert td.digest == hashlib.sha256(text).hexdigest()


def test_a_name_that_is_not_utf8_fails_closed() -> None:
    with pytest.raises(CatalyticError) as exc:
        Records.from_values({"bad\udcff": "0" * 64})
    assert exc.value.code.value == "DIGEST_COMPUTATION_FAILED"
