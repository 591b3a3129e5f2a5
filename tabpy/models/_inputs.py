"""Argument checks shared by the models, and the lazy import of their libraries.

Tableau sends every argument of a ``SCRIPT_*`` call as a list (one value per row, ``null`` for a
missing value), so the checks here turn such lists into numbers or labels and, when they cannot,
raise :class:`~tabpy.models.errors.ModelInputError` with a message that names the model, the
argument (``_arg1``, ``_arg2``, ...), the 1-based position of the offending value and the fix.

numpy and the ``models`` extra are imported inside the functions: importing a model module (to
deploy it, or to unpickle it in a worker) must stay cheap, and the heavy libraries are loaded only
by the first call that needs them.
"""

from __future__ import annotations

import importlib
import math
import numbers
import reprlib
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from tabpy.models.errors import INSTALL_COMMAND, MissingDependencyError, ModelInputError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "check_no_nulls",
    "column",
    "is_null",
    "is_number",
    "label_column",
    "load",
    "null_error",
    "number_column",
    "once",
    "scalar",
    "short",
]

T = TypeVar("T")

# Exact-type test first: it is several times faster than an isinstance check against the
# numbers ABCs, and JSON input only ever holds these types.
_PLAIN_NUMBERS = (int, float, bool)
_short_repr = reprlib.Repr()
_short_repr.maxstring = 40
_short_repr.maxother = 40
# Per-process objects that are slow to build (an analyser and its lexicon). They live here, not
# in the model modules, because a model module may be pickled by value when it is deployed, and
# its globals with it: a cache there would ship whatever it held to the server.
_built: dict[str, Any] = {}


def load(module: str, *, model: str, package: str) -> ModuleType:
    """Import ``module`` for ``model``; if it is missing, say which command installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{model} needs {package}, which is not installed in the Python environment that "
            f"runs TabPy ({exc}). Install the models extra there: {INSTALL_COMMAND}"
        ) from None


def once(key: str, build: Callable[[], T]) -> T:
    """``build()``, called only the first time this process asks for ``key``."""
    if key not in _built:
        _built[key] = build()
    value: T = _built[key]
    return value


def scalar(value: Any) -> Any:
    """A column that repeats one value stands for that value.

    Tableau sends every argument of a ``SCRIPT_*`` call as a column, so a constant such as a
    component number or a library name arrives as ``[1, 1, 1]``.
    """
    if isinstance(value, (list, tuple)) and value and all(item == value[0] for item in value):
        return value[0]
    return value


def short(value: Any) -> str:
    """A value for an error message, cut short so that one huge value cannot flood it."""
    return _short_repr.repr(value)


def is_null(value: Any) -> bool:
    """True for Tableau's missing value (``None``) and for NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_number(value: Any) -> bool:
    """True for ints, floats and bools (True is 1, as in TabPy), numpy scalars included."""
    return type(value) in _PLAIN_NUMBERS or (
        isinstance(value, numbers.Real) and not isinstance(value, str)
    )


def column(value: Any, name: str, model: str, *, allow_empty: bool = False) -> list[Any]:
    """``value`` as a list of values, or a ``ModelInputError`` saying why it is not a column."""
    if value is None:
        raise ModelInputError(f"{model}: {name} is missing; pass a list of values.")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ModelInputError(
            f"{model}: {name} must be a list of values (one column), not {short(value)}."
        )
    values = list(value)
    if not values and not allow_empty:
        raise ModelInputError(f"{model}: {name} is empty; it needs at least one value.")
    return values


def null_error(model: str, name: str, position: int) -> ModelInputError:
    return ModelInputError(
        f"{model}: {name} has a null at position {position}. Tableau sends null for missing "
        "values: filter them out, or replace them (for example with ZN() or IFNULL())."
    )


def check_no_nulls(values: list[Any], name: str, model: str) -> None:
    for position, value in enumerate(values, 1):
        if is_null(value):
            raise null_error(model, name, position)


def number_column(values: list[Any], name: str, model: str, what: str = "numbers") -> np.ndarray:
    """The values as a float array; nulls, text and infinities raise ``ModelInputError``."""
    for position, value in enumerate(values, 1):
        if type(value) in _PLAIN_NUMBERS:
            continue
        if is_null(value):
            raise null_error(model, name, position)
        if not is_number(value):
            raise ModelInputError(
                f"{model}: {name} must contain only {what}, but position {position} holds "
                f"{short(value)}."
            )
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    invalid = ~np.isfinite(array)
    if invalid.any():
        position = int(np.argmax(invalid))
        if math.isnan(array[position]):
            raise null_error(model, name, position + 1)
        raise ModelInputError(
            f"{model}: {name} holds {short(values[position])} at position {position + 1}; "
            "only finite numbers can be used."
        )
    return array


def label_column(values: list[Any], name: str, model: str) -> list[str]:
    """Text values (category labels); nulls and other types raise ``ModelInputError``."""
    for position, value in enumerate(values, 1):
        if isinstance(value, str):
            continue
        if is_null(value):
            raise null_error(model, name, position)
        raise ModelInputError(
            f"{model}: {name} mixes text and other values: position {position} holds "
            f"{short(value)}. A column must hold only numbers or only text."
        )
    return values
