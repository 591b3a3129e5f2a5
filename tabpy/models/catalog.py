"""The pre-built models: their endpoint names, functions and descriptions.

Names and calling conventions are TabPy's, so that workbooks written for TabPy work unchanged.
Each entry also carries a small valid call, which ``tabpy-deploy-models`` makes right after
deploying to check that the server can really run the model (its libraries are installed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tabpy.models.anova import anova
from tabpy.models.pca import pca
from tabpy.models.sentiment import sentiment_analysis
from tabpy.models.ttest import ttest

__all__ = ["MODELS", "Model", "UnknownModelError", "select"]


@dataclass(frozen=True)
class Model:
    name: str
    function: Callable[..., Any]
    description: str
    #: Positional arguments of a call that must succeed once the model is deployed.
    example: tuple[Any, ...]


MODELS: tuple[Model, ...] = (
    Model(
        "PCA",
        pca,
        "Returns the specified principal component",
        (1, [1.0, 2.0, 3.0], [2.0, 1.0, 4.0]),
    ),
    Model(
        "Sentiment Analysis",
        sentiment_analysis,
        "Returns a sentiment score between -1 and 1 for a given string",
        (["good"],),
    ),
    Model("ttest", ttest, "Returns the p-value from a t-test", ([1, 2, 3, 4], [2, 4, 5, 9])),
    Model(
        "anova",
        anova,
        "Returns the p-value from an ANOVA test",
        ([1, 2, 3, 4], [2, 4, 5, 9], [7, 8, 9, 10]),
    ),
)


class UnknownModelError(ValueError):
    """A name that is not one of :data:`MODELS`."""


def select(names: Iterable[str]) -> tuple[Model, ...]:
    """The models called ``names`` (case-insensitive), in catalogue order; all if none given."""
    wanted = {name.strip().lower(): name for name in names}
    if not wanted:
        return MODELS
    by_name = {model.name.lower(): model for model in MODELS}
    unknown = [name for key, name in wanted.items() if key not in by_name]
    if unknown:
        known = ", ".join(repr(model.name) for model in MODELS)
        raise UnknownModelError(
            f"Unknown model {', '.join(repr(name) for name in unknown)}: choose from {known}."
        )
    return tuple(model for model in MODELS if model.name.lower() in wanted)
