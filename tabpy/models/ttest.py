"""The ``ttest`` model: the two-sided p-value of a t-test, in TabPy's three forms."""

from __future__ import annotations

import warnings
from typing import Any

from tabpy.models._inputs import (
    check_no_nulls,
    column,
    is_number,
    load,
    number_column,
    short,
)
from tabpy.models.errors import ModelInputError

__all__ = ["ttest"]

MODEL = "ttest"


def ttest(_arg1: Any = None, _arg2: Any = None) -> float:
    """
    Two-sided t-test; returns its p-value.

    _arg1: the sample, a list of numbers.
    _arg2: one of
      - a single number (or a list of one number, or a column repeating one
        number): the population mean, for a one-sample test;
      - a column with exactly two distinct values, one per value of _arg1:
        the group of each value, for Welch's two-sample test between the groups;
      - any other list of numbers: a second sample, for Welch's two-sample test
        (the variances are not assumed equal).
    Nulls are not allowed.
    """
    sample = number_column(column(_arg1, "_arg1", MODEL), "_arg1", MODEL)
    if is_number(_arg2):
        return _one_sample(sample, number_column([_arg2], "_arg2", MODEL)[0])
    second = column(_arg2, "_arg2", MODEL)
    check_no_nulls(second, "_arg2", MODEL)
    numeric = all(is_number(value) for value in second)
    try:
        distinct = set(second)
    except TypeError:  # unhashable items, such as nested lists
        raise ModelInputError(
            f"{MODEL}: _arg2 must hold numbers or group labels, not {short(second)}."
        ) from None
    if numeric and len(distinct) == 1:
        return _one_sample(sample, number_column(second[:1], "_arg2", MODEL)[0])
    if len(distinct) == 2:
        return _two_groups(sample, second, distinct)
    if not numeric:
        labels = ", ".join(short(value) for value in sorted(map(str, distinct))[:5])
        raise ModelInputError(
            f"{MODEL}: _arg2 holds text, so it must be a factor with exactly two distinct "
            f"values (the group of each value of _arg1), but it has {len(distinct)}: {labels}"
            f"{', ...' if len(distinct) > 5 else ''}."
        )
    other = number_column(second, "_arg2", MODEL)
    _check_size(sample, "_arg1")
    _check_size(other, "_arg2")
    return _welch(sample, other)


def _one_sample(sample: Any, mean: float) -> float:
    _check_size(sample, "_arg1")
    stats = load("scipy.stats", model=MODEL, package="scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant sample gives NaN
        return float(stats.ttest_1samp(sample, mean).pvalue)


def _two_groups(sample: Any, labels: list[Any], distinct: set[Any]) -> float:
    if len(labels) != len(sample):
        raise ModelInputError(
            f"{MODEL}: _arg2 has two distinct values, so it is read as the group of each value "
            f"of _arg1 and needs one label per value, but _arg1 has {len(sample)} values and "
            f"_arg2 has {len(labels)}. To compare two samples, give a second sample with more "
            "than two distinct values."
        )
    import numpy as np

    first_label, second_label = sorted(distinct, key=str)
    in_first = np.fromiter((label == first_label for label in labels), bool, len(labels))
    first, second = sample[in_first], sample[~in_first]
    _check_size(first, f"group {short(first_label)} of _arg1")
    _check_size(second, f"group {short(second_label)} of _arg1")
    return _welch(first, second)


def _welch(first: Any, second: Any) -> float:
    stats = load("scipy.stats", model=MODEL, package="scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # two constant samples give NaN
        return float(stats.ttest_ind(first, second, equal_var=False).pvalue)


def _check_size(values: Any, name: str) -> None:
    if len(values) < 2:
        raise ModelInputError(
            f"{MODEL}: {name} has {len(values)} value(s); a t-test needs at least two to "
            "estimate a variance."
        )
