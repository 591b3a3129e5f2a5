"""Result encoding: a script's return value to the exact bytes TabPy would send.

TabPy writes results with Python's ``json`` defaults (", " and ": " separators,
ASCII escaping, NaN and infinities as ``null``), and Tableau tooling and TabPy's
tests compare those bytes.  We encode with orjson, which is an order of
magnitude faster, then bring the output to the same bytes:

* all-numeric output (the common case: a column of numbers) only needs its
  separators widened, which is one ``bytes.replace``;
* output that contains strings, or small floats that orjson formats
  differently from ``repr``, is re-encoded with the standard library so the
  bytes stay identical.

Unlike TabPy, numpy arrays and scalars, pandas Series, sets and Decimals are
serialised instead of failing.
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any

import orjson

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_stdlib_encoder = json.JSONEncoder()
_NUMBER_STARTS = b"[,-"


class NotSerializable(TypeError):
    """The script returned something that has no JSON form."""


def encode_result(value: Any) -> bytes:
    """Encode a script result; raises ``NotSerializable`` with TabPy's message."""
    if value is None:
        return b"null"
    try:
        raw = orjson.dumps(_to_plain(value), default=_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, NotSerializable):
            raise exc.__cause__ from None
        # Strings orjson refuses (lone surrogates) still have a standard form.
        return _stdlib_encoder.encode(_nan_to_none(_to_plain(value))).encode("ascii")
    return _widen(raw)


def _widen(raw: bytes) -> bytes:
    if b'"' not in raw and not _formats_differ(raw):
        # No strings and no object keys (keys are always strings), so the only
        # separators are commas; every float is formatted exactly like repr().
        return raw.replace(b",", b", ")
    # Round-tripping through orjson turns numpy values into plain Python ones
    # and NaN into None already, so the standard encoder sees plain JSON data.
    return _stdlib_encoder.encode(orjson.loads(raw)).encode("ascii")


def _formats_differ(raw: bytes) -> bool:
    """True if orjson wrote a float that ``repr`` writes differently.

    That happens only below 1e-4 in magnitude: orjson writes ``0.00001`` and
    ``1e-7`` where ``repr`` writes ``1e-05`` and ``1e-07``.  In compact output
    such a number starts right after ``[``, ``,`` or ``-``.  The checks are
    ordered so that a column of ordinary numbers costs two fast scans.
    """
    if b"e" in raw and b"e-" in raw:  # one-byte search first: it is memchr-fast
        return True
    # "0.0000" also occurs inside larger numbers (30.00001); look only at its few
    # occurrences instead of running a regular expression over the whole output.
    start = raw.find(b"0.0000")
    while start != -1:
        if start == 0 or raw[start - 1] in _NUMBER_STARTS:
            return True
        start = raw.find(b"0.0000", start + 1)
    return False


def _to_plain(value: Any) -> Any:
    """Turn a DataFrame into TabPy's ``{column: [values]}`` form."""
    to_dict = getattr(value, "to_dict", None)
    if to_dict is not None and hasattr(value, "columns"):
        return {column: _column(value[column]) for column in value.columns}
    return value


def _column(series: Any) -> Any:
    array = series.to_numpy()
    return array if array.dtype.kind in "biuf" else series.tolist()


def _default(value: Any) -> Any:
    """Types orjson does not know natively."""
    if hasattr(value, "columns") and hasattr(value, "to_dict"):
        return _to_plain(value)
    if hasattr(value, "to_numpy") and hasattr(value, "dtype"):  # pandas Series / Index
        return _column(value)
    if hasattr(value, "tolist"):  # numpy arrays of object/datetime dtype, numpy scalars
        return value.tolist()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if value is _pandas_na():
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise NotSerializable(f"Object of type {type(value).__name__} is not JSON serializable")


def _pandas_na() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        return object()
    return pandas.NA


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
