"""The ``PCA`` model: one principal component of standardised columns.

Same calling convention as TabPy's model (``tabpy.query('PCA', 1, _arg1, _arg2, ...)``), but it
works with current scikit-learn, whose ``OneHotEncoder`` no longer takes the keyword TabPy's
model passes, and it checks its input instead of failing inside scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from tabpy.models._inputs import (
    check_no_nulls,
    column,
    is_number,
    label_column,
    load,
    number_column,
    scalar,
    short,
)
from tabpy.models.errors import ModelInputError

__all__ = ["CATEGORY_LIMIT", "pca"]

MODEL = "PCA"
#: Most distinct values a text column may have; each becomes one 0/1 column (as in TabPy).
CATEGORY_LIMIT = 25


def pca(component: Any = None, _arg1: Any = None, _arg2: Any = None, *_argN: Any) -> list[float]:
    """
    Principal component analysis of two or more columns of equal length.

    component: which principal component to return, 1 for the one that explains the
        most variance, up to the number of columns (after one-hot encoding).
    _arg1, _arg2, ...: the columns. Numeric columns (True and False count as 1 and 0)
        are used as they are; a text column becomes one 0/1 column per distinct value
        (at most 25 distinct values). Every column is standardised (mean 0, variance 1)
        before the analysis. Nulls are not allowed.

    Returns the score of every row on the chosen component, as a list of floats.
    """
    number = _component_number(component)
    arguments = [_arg1, _arg2, *_argN]
    if _arg1 is None or _arg2 is None:
        given = sum(value is not None for value in arguments)
        raise ModelInputError(
            f"{MODEL} needs the component number and then at least two columns, for example "
            f"tabpy.query('PCA', 1, _arg1, _arg2); got {given} column(s)."
        )
    names = [f"_arg{index}" for index in range(1, len(arguments) + 1)]
    columns = [column(value, name, MODEL) for value, name in zip(arguments, names, strict=True)]
    _check_lengths(columns, names)
    rows = len(columns[0])
    if rows < 2:
        raise ModelInputError(f"{MODEL} needs at least two rows; the columns have {rows}.")

    import numpy as np

    matrix = np.column_stack(
        [
            encoded
            for values, name in zip(columns, names, strict=True)
            for encoded in _encode(values, name)
        ]
    )
    limit = min(matrix.shape)
    if not 1 <= number <= limit:
        reason = (
            "the number of columns after one-hot encoding"
            if limit == matrix.shape[1]
            else "the number of rows"
        )
        raise ModelInputError(
            f"{MODEL}: the component must be between 1 and {limit} ({reason}), got {number}."
        )

    preprocessing = load("sklearn.preprocessing", model=MODEL, package="scikit-learn")
    decomposition = load("sklearn.decomposition", model=MODEL, package="scikit-learn")
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Constant columns divide by a zero variance while computing explained-variance
        # ratios; the scores themselves are still well defined (zero on that column).
        warnings.simplefilter("ignore", RuntimeWarning)
        scaled = preprocessing.StandardScaler().fit_transform(matrix)
        # "full" is LAPACK's SVD: deterministic, and the most accurate solver at the sizes
        # Tableau sends (many rows, few columns).
        scores = decomposition.PCA(svd_solver="full").fit_transform(scaled)
    result: list[float] = scores[:, number - 1].tolist()
    return result


def _component_number(value: Any) -> int:
    value = scalar(value)
    if (
        isinstance(value, bool)
        or not is_number(value)
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ModelInputError(
            f"{MODEL}: the first argument is the component number, a whole number such as 1, "
            f"then come the columns; got {short(value)}."
        )
    return int(value)


def _check_lengths(columns: list[list[Any]], names: list[str]) -> None:
    lengths = {len(values) for values in columns}
    if len(lengths) > 1:
        sizes = ", ".join(
            f"{name} has {len(values)}" for name, values in zip(names, columns, strict=True)
        )
        raise ModelInputError(f"{MODEL}: all columns must have the same length, but {sizes}.")


def _encode(values: list[Any], name: str) -> list[Any]:
    """One numeric column, or one 0/1 column per distinct label in sorted order."""
    check_no_nulls(values, name, MODEL)
    if all(is_number(value) for value in values):
        return [number_column(values, name, MODEL)]
    labels = label_column(values, name, MODEL)
    categories = sorted(set(labels))
    if len(categories) > CATEGORY_LIMIT:
        raise ModelInputError(
            f"{MODEL}: {name} is text with {len(categories)} distinct values, but a text column "
            f"may have at most {CATEGORY_LIMIT} (each becomes a 0/1 column). Group the values "
            "into fewer categories or leave the column out."
        )
    import numpy as np

    array = np.asarray(labels, dtype=object)
    return [(array == category).astype(np.float64) for category in categories]
