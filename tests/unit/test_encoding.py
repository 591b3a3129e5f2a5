from __future__ import annotations

import decimal
import json
import math

import numpy as np
import pandas as pd
import pytest

from tabpy.runtime.encoding import NotSerializable, encode_result


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"null"),
        (42, b"42"),
        ([42, 3.1415926], b"[42, 3.1415926]"),
        ([1.0, float("nan"), 2.0], b"[1.0, null, 2.0]"),
        ([1.0, math.nan, math.inf, -math.inf], b"[1.0, null, null, null]"),
        ("h\u00e9llo", b'"h\\u00e9llo"'),
        ((1, 2), b"[1, 2]"),
        ([True, False, None], b"[true, false, null]"),
        ({"a": 1, "b": [1, 2]}, b'{"a": 1, "b": [1, 2]}'),
    ],
)
def test_matches_tabpy_bytes(value: object, expected: bytes) -> None:
    assert encode_result(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        [1e-05, 1e-07, 0.0001, 1e16, 1e22, 1.5e300, 5e-324, 123456789.125],
        [30.00001, -1230.00004, 5e-05],  # "0.0000" inside a larger number, then a small one
        [30.00001, -1230.00004, 2.5],
        [0.1 * i for i in range(50)],
        ["a, b: c", {"k,": "v:"}],
        {"nested": {"x": [1.0, "\u2603", None]}},
    ],
)
def test_identical_to_python_json(value: object) -> None:
    """Whatever path the encoder takes, the bytes equal Python's json.dumps."""
    assert encode_result(value) == json.dumps(value).encode()


def test_dataframe_becomes_dict_of_columns() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [None, 3.0]})
    assert encode_result(frame) == b'{"a": [1, 2], "b": [null, 3.0]}'


def test_dataframe_with_text_and_dates() -> None:
    frame = pd.DataFrame({"s": ["x", "y"], "d": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    decoded = json.loads(encode_result(frame))
    assert decoded == {"s": ["x", "y"], "d": ["2020-01-01T00:00:00", "2020-01-02T00:00:00"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.array([1, 2, 3]), b"[1, 2, 3]"),
        (np.array([1.5, np.nan]), b"[1.5, null]"),
        (np.int64(7), b"7"),
        (np.float32(0.5), b"0.5"),
        (np.bool_(True), b"true"),
        (pd.Series([1.5, None]), b"[1.5, null]"),
        (pd.Series(["a", None]), b'["a", null]'),
        (decimal.Decimal("2.5"), b"2.5"),
        ({3}, b"[3]"),
        ([pd.NA, 1], b"[null, 1]"),
    ],
)
def test_numpy_and_pandas_values_serialise(value: object, expected: bytes) -> None:
    assert encode_result(value) == expected


def test_lone_surrogates_are_escaped() -> None:
    assert encode_result("a\ud800") == b'"a\\ud800"'


def test_unserialisable_value_has_tabpy_message() -> None:
    with pytest.raises(NotSerializable, match="Object of type object is not JSON serializable"):
        encode_result([object()])
