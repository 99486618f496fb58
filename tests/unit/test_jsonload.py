"""`proxy.jsonload.loads` accepts what `json.loads` accepts, with the same result (the two
differences its docstring names are pinned here too)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import jsonload
from proxy.jsonload import loads

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def test_orjson_is_what_runs() -> None:
    assert jsonload.orjson is not None, "orjson is a dependency: install the project"


@given(JSON_VALUES)
def test_any_json_value_parses_as_json_parses_it(value: Any) -> None:
    for encoded in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert loads(encoded) == json.loads(encoded)


@pytest.mark.parametrize("raw", [
    b'{"a": NaN, "b": Infinity, "c": -Infinity}',  # json's extension, refused by orjson
    b'{"s": "\\ud800"}',  # a lone surrogate
    '{"k": "v\u00e9"}'.encode("utf-16"),  # json.loads detects UTF-16 and UTF-32 bytes
    '{"k": 1}'.encode("utf-32-le"),
    b'{"a": 1, "a": 2}',  # the last duplicate wins in both
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark: json skips it
])
def test_what_orjson_refuses_falls_back_to_json(raw: bytes) -> None:
    got, want = loads(raw), json.loads(raw)
    assert repr(got) == repr(want)
    if "a" in want and isinstance(want["a"], float):
        assert math.isnan(got["a"])


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":1}x', b"\xff{}", b"[" * 2000])
def test_what_json_refuses_raises_as_json_does(raw: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as ours:
        loads(raw)
    with pytest.raises((ValueError, RecursionError)) as theirs:
        json.loads(raw)
    assert isinstance(ours.value, RecursionError) == isinstance(theirs.value, RecursionError)


def test_an_integer_beyond_64_bits_is_no_count() -> None:
    """The one value orjson reads differently: a float, which no reader takes for a count."""
    big = loads(b'{"usage": {"prompt_tokens": 123456789012345678901234567890}}')
    assert isinstance(big["usage"]["prompt_tokens"], float)
    assert loads(b"18446744073709551615") == 2**64 - 1  # the largest that stays an int


def test_nesting_deeper_than_json_allows_still_reads() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    with pytest.raises(RecursionError):
        json.loads(deep)
    assert loads(deep) is not None
