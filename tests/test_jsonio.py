"""remote_kernel.jsonio: orjson where it can, the standard library where orjson refuses, so the
wire format accepted and sent is exactly the standard library's."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remote_kernel import jsonio

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_round_trip_equals_the_standard_library(value):
    assert jsonio.loads(jsonio.dumps(value)) == json.loads(json.dumps(value))
    assert jsonio.loads(json.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("value", [
    {"big": 2**70},  # beyond orjson's 64 bits
    {1: "integer key"},  # json turns keys into strings
    {"text": "line\nwith \u2603 and \ud83d\ude00"},
])
def test_what_orjson_refuses_or_treats_differently_still_encodes(value):
    assert jsonio.loads(jsonio.dumps(value)) == json.loads(json.dumps(value))


def test_nan_and_infinity_from_a_lenient_server_are_read():
    assert jsonio.loads(b'{"x": NaN, "y": Infinity}')["y"] == float("inf")


@pytest.mark.parametrize("raw", [b"", b"{", b"<html>", b"\xff\xfe", b'{"a": 1} trailing'])
def test_not_json_is_a_value_error(raw):
    with pytest.raises(ValueError):
        jsonio.loads(raw)
