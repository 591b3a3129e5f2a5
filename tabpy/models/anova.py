"""The ``anova`` model: the p-value of a one-way analysis of variance."""

from __future__ import annotations

import warnings
from typing import Any

from tabpy.models._inputs import column, load, number_column
from tabpy.models.errors import ModelInputError

__all__ = ["anova"]

MODEL = "anova"


def anova(_arg1: Any = None, _arg2: Any = None, *_argN: Any) -> float:
    """
    One-way ANOVA: do two or more groups of numbers share the same mean?

    _arg1, _arg2, ...: the groups, each a list of numbers (they may differ in
        length). Nulls are not allowed.

    Returns the p-value of the F test.
    """
    arguments = [_arg1, _arg2, *_argN]
    if _arg1 is None or _arg2 is None:
        given = sum(value is not None for value in arguments)
        raise ModelInputError(
            f"{MODEL} needs at least two groups of numbers, for example "
            f"tabpy.query('anova', _arg1, _arg2); got {given}."
        )
    groups = []
    for index, value in enumerate(arguments, 1):
        name = f"_arg{index}"
        groups.append(number_column(column(value, name, MODEL), name, MODEL))
    total = sum(len(group) for group in groups)
    if total <= len(groups):
        raise ModelInputError(
            f"{MODEL}: the {len(groups)} groups hold {total} values in all; an analysis of "
            "variance needs more values than groups (at least one group with two values)."
        )
    stats = load("scipy.stats", model=MODEL, package="scipy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant groups give NaN or 0
        return float(stats.f_oneway(*groups).pvalue)
