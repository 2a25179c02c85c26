from __future__ import annotations

import pytest

from catalytic_hooks.core.canonical import canonical_bytes, loads_strict
from catalytic_hooks.core.errors import CatalyticError, ErrorCode

GOLDEN = [
    ({"b": 1, "a": [True, False, None]}, b'{"a":[true,false,null],"b":1}'),
    ({"é": "ü", "a": "日本"}, '{"a":"日本","é":"ü"}'.encode()),
    ({"z": {"y": {"x": [1, -2, 0]}}}, b'{"z":{"y":{"x":[1,-2,0]}}}'),
    ([], b"[]"),
    ({"big": 12345678901234567890}, b'{"big":12345678901234567890}'),
    ({"quote": 'a"b\\c\n'}, b'{"quote":"a\\"b\\\\c\\n"}'),
    # code-point order: uppercase before lowercase, U+00E9 after ASCII, astral last
    ({"a": 1, "B": 2, "\u00e9": 3, "\U0001f600": 4}, '{"B":2,"a":1,"é":3,"\U0001f600":4}'.encode()),
    ({"ctrl": "\u0001"}, b'{"ctrl":"\\u0001"}'),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN, ids=[str(i) for i in range(len(GOLDEN))])
def test_golden_vectors(value: object, expected: bytes) -> None:
    assert canonical_bytes(value) == expected
    assert loads_strict(expected) == value


REJECT = {
    "duplicate-keys": b'{"a":1,"a":2}',
    "nested-duplicate": b'{"x":{"k":1,"k":1}}',
    "nan": b'{"a":NaN}',
    "infinity": b'{"a":Infinity}',
    "neg-infinity": b"[-Infinity]",
    "bom": b'\xef\xbb\xbf{"a":1}',
    "invalid-utf8": b'{"a":"\xff"}',
    "lone-surrogate": b'{"a":"\\ud800"}',
    "lone-surrogate-key": b'{"\\udc00":1}',
    "trailing-garbage": b'{"a":1} x',
    "deep": b"[" * 100000 + b"]" * 100000,
    # past the loader's own limit (MAX_DEPTH) but short of Python's recursion limit, with no
    # surrogate escape: refused by the depth check, not by a RecursionError
    "deep-500": b"[" * 500 + b"]" * 500,
    "deep-object-300": b'{"a":' * 300 + b"1" + b"}" * 300,
    "lone-surrogate-upper": b'["\\\\x", "\\uDBFF"]',
}


@pytest.mark.parametrize("data", list(REJECT.values()), ids=list(REJECT))
def test_strict_loading_rejects(data: bytes) -> None:
    with pytest.raises(CatalyticError) as err:
        loads_strict(data)
    assert err.value.code is ErrorCode.JSON_INVALID


def test_canonical_refuses_nan_and_surrogates() -> None:
    with pytest.raises(CatalyticError):
        canonical_bytes({"a": float("nan")})
    with pytest.raises(CatalyticError):
        canonical_bytes({"a": "\ud800"})
