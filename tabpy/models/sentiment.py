"""The ``Sentiment Analysis`` model: a polarity score in [-1, 1] for each text.

Both analysers are rule-based and read a lexicon that ships inside their PyPI package, so
nothing is downloaded, at install time or when the model runs:

* ``vader`` (the default): the VADER ``compound`` score, from the ``vaderSentiment`` package
  (``vader_lexicon.txt`` is part of the package). TabPy computed the same score with NLTK, which
  needs its ``vader_lexicon`` data downloaded first; ``nltk`` is accepted as another name for it.
* ``textblob``: TextBlob's pattern-based ``polarity`` (``en-sentiment.xml`` is part of the
  ``textblob`` package).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tabpy.models._inputs import column, is_null, load, once, scalar, short
from tabpy.models.errors import ModelInputError

__all__ = ["DEFAULT_LIBRARY", "LIBRARIES", "sentiment_analysis"]

MODEL = "Sentiment Analysis"
DEFAULT_LIBRARY = "vader"
#: Accepted values of ``library`` (case-insensitive); ``nltk`` is TabPy's name for VADER.
LIBRARIES = ("vader", "nltk", "textblob")

Scorer = Callable[[str], float]


def sentiment_analysis(_arg1: Any = None, library: Any = DEFAULT_LIBRARY) -> Any:
    """
    Sentiment polarity of each text, from -1 (most negative) to 1 (most positive).

    _arg1: a list of texts (a single text also works and gives a single score).
        A null text gets a null score.
    library: "vader" (the default; "nltk" is the same analyser under TabPy's
        name) or "textblob". From Tableau, pass it as the second argument:
        tabpy.query('Sentiment Analysis', _arg1, 'textblob').

    Returns a list of floats, one per text.
    """
    scorer = _scorer(_library(library))
    if isinstance(_arg1, str):
        return scorer(_arg1)
    texts = column(_arg1, "_arg1", MODEL, allow_empty=True)
    scores: list[float | None] = []
    for position, text in enumerate(texts, 1):
        if isinstance(text, str):
            scores.append(scorer(text))
        elif is_null(text):
            scores.append(None)
        else:
            raise ModelInputError(
                f"{MODEL}: _arg1 must contain text, but position {position} holds "
                f"{short(text)}. Convert the field to a string (STR()) in Tableau."
            )
    return scores


def _library(value: Any) -> str:
    value = scalar(value)
    name = value.strip().lower() if isinstance(value, str) else None
    if name not in LIBRARIES:
        raise ModelInputError(
            f"{MODEL}: library must be one of {', '.join(repr(n) for n in LIBRARIES)}, "
            f"got {short(value)}."
        )
    return "vader" if name == "nltk" else name


def _scorer(library: str) -> Scorer:
    build = _vader if library == "vader" else _textblob
    return once(f"sentiment.{library}", build)


def _vader() -> Scorer:
    module = load("vaderSentiment.vaderSentiment", model=MODEL, package="vaderSentiment")
    analyzer = module.SentimentIntensityAnalyzer()

    def score(text: str) -> float:
        return float(analyzer.polarity_scores(text)["compound"])

    return score


def _textblob() -> Scorer:
    textblob = load("textblob", model=f"{MODEL} with library='textblob'", package="textblob")

    def score(text: str) -> float:
        return float(textblob.TextBlob(text).sentiment.polarity)

    return score
