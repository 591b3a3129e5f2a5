"""The pre-built models against scipy / scikit-learn reference computations, and their errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tabpy.models import INSTALL_COMMAND, MODELS, MissingDependencyError, ModelInputError, _inputs
from tabpy.models.anova import anova
from tabpy.models.pca import pca
from tabpy.models.sentiment import sentiment_analysis
from tabpy.models.ttest import ttest
from tests.components import MODELS as MODELS_EXTRA
from tests.components import require_module

pytestmark = pytest.mark.models
stats = require_module("scipy.stats", MODELS_EXTRA)
sklearn_decomposition = require_module("sklearn.decomposition", MODELS_EXTRA)
sklearn_preprocessing = require_module("sklearn.preprocessing", MODELS_EXTRA)
vader = require_module("vaderSentiment.vaderSentiment", MODELS_EXTRA)
textblob = require_module("textblob", MODELS_EXTRA)

TOLERANCE = 1e-9
RNG = np.random.default_rng(20240611)
TEXTS = [
    "happy",
    "sad",
    "neutral",
    "This is not very good at all!",
    "The food was GREAT!!! but the service was slow.",
    "I don't hate it",
    "Never been so disappointed :(",
    "Absolutely fantastic, would buy again",
    "",
]


# --- PCA -----------------------------------------------------------------------------------------


def reference_pca(component: int, *columns: list[Any]) -> np.ndarray:
    """scikit-learn's pipeline as TabPy meant it: one-hot text, standardise, PCA."""
    parts = []
    for values in columns:
        if isinstance(values[0], str):
            encoder = sklearn_preprocessing.OneHotEncoder(sparse_output=False)
            parts.append(encoder.fit_transform(np.array(values).reshape(-1, 1)))
        else:
            parts.append(np.asarray(values, dtype=float).reshape(-1, 1))
    scaled = sklearn_preprocessing.StandardScaler().fit_transform(np.hstack(parts))
    scores = sklearn_decomposition.PCA(svd_solver="full").fit_transform(scaled)
    return np.asarray(scores[:, component - 1])


def numpy_pca(*columns: list[float]) -> np.ndarray:
    """Every component's scores from numpy's SVD alone (signs are arbitrary here)."""
    matrix = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    matrix = (matrix - matrix.mean(axis=0)) / matrix.std(axis=0)
    u, s, _ = np.linalg.svd(matrix, full_matrices=False)
    return np.asarray(u * s)


NUMERIC = [RNG.normal(size=200).tolist() for _ in range(3)]
NUMERIC[1] = [a * 0.8 + b * 0.2 for a, b in zip(NUMERIC[0], NUMERIC[1], strict=True)]  # correlated
CATEGORIES = RNG.choice(["east", "west", "north", "south"], size=200).tolist()


@pytest.mark.parametrize("component", [1, 2, 3])
def test_pca_numeric_matches_scikit_learn(component: int) -> None:
    result = pca(component, *NUMERIC)
    assert isinstance(result, list) and len(result) == 200
    np.testing.assert_allclose(result, reference_pca(component, *NUMERIC), rtol=0, atol=TOLERANCE)
    # Independent check: the same scores as a plain SVD, up to each component's sign.
    np.testing.assert_allclose(
        np.abs(result), np.abs(numpy_pca(*NUMERIC)[:, component - 1]), rtol=0, atol=TOLERANCE
    )


@pytest.mark.parametrize("component", [1, 4, 7])
def test_pca_one_hot_encodes_text_columns(component: int) -> None:
    columns = [NUMERIC[0], CATEGORIES, NUMERIC[2], [value > 0 for value in NUMERIC[1]]]
    result = pca(component, *columns)
    expected = reference_pca(component, *columns[:3], [float(v) for v in columns[3]])
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)


def test_pca_accepts_the_component_as_a_repeated_column_and_keywords() -> None:
    expected = pca(2, NUMERIC[0], NUMERIC[1])
    assert pca([2] * 200, NUMERIC[0], NUMERIC[1]) == expected
    assert pca(2.0, NUMERIC[0], NUMERIC[1]) == expected
    assert pca(component=2, _arg1=NUMERIC[0], _arg2=NUMERIC[1]) == expected


def test_pca_constant_column_scores_are_finite() -> None:
    result = pca(1, [1, 2, 3, 4], [5, 5, 5, 5])
    assert all(math.isfinite(value) for value in result)


# --- ttest ---------------------------------------------------------------------------------------


def test_ttest_values_observed_with_tabpy() -> None:
    assert ttest([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(0.1928929642906987, abs=1e-15)
    assert ttest([1, 2, 3, 4], [2]) == pytest.approx(0.4950253460597111, abs=1e-15)
    assert ttest([1, 2, 3, 4], ["m", "f", "m", "f"]) == pytest.approx(0.5527864045000421, abs=1e-15)


def test_ttest_two_samples_is_welch() -> None:
    first, second = RNG.normal(0, 1, 40).tolist(), RNG.normal(0.5, 2, 25).tolist()
    expected = stats.ttest_ind(first, second, equal_var=False).pvalue
    assert ttest(first, second) == pytest.approx(expected, abs=TOLERANCE)


def test_ttest_one_sample_forms() -> None:
    sample = RNG.normal(3, 1, 30).tolist()
    expected = stats.ttest_1samp(sample, 3.2).pvalue
    for mean in (3.2, [3.2], [3.2] * 30):  # a number, a list of one, Tableau's constant column
        assert ttest(sample, mean) == pytest.approx(expected, abs=TOLERANCE)


def test_ttest_binary_factor_splits_the_sample() -> None:
    sample = RNG.normal(size=50).tolist()
    labels = RNG.choice(["treated", "control"], size=50).tolist()
    treated = [v for v, label in zip(sample, labels, strict=True) if label == "treated"]
    control = [v for v, label in zip(sample, labels, strict=True) if label == "control"]
    expected = stats.ttest_ind(treated, control, equal_var=False).pvalue
    assert ttest(sample, labels) == pytest.approx(expected, abs=TOLERANCE)
    flags = [label == "treated" for label in labels]  # booleans and 0/1 work the same
    assert ttest(sample, flags) == pytest.approx(expected, abs=TOLERANCE)
    assert ttest(sample, [int(flag) for flag in flags]) == pytest.approx(expected, abs=TOLERANCE)


# --- anova ---------------------------------------------------------------------------------------


def test_anova_value_observed_with_tabpy() -> None:
    result = anova([1, 2, 3, 4], [2, 4, 5, 9], [7, 8, 9, 10])
    assert result == pytest.approx(0.006933103752640097, abs=1e-15)


def test_anova_matches_scipy_with_unequal_groups() -> None:
    groups = [RNG.normal(mean, 1, size).tolist() for mean, size in ((0, 10), (0.3, 17), (1, 8))]
    expected = stats.f_oneway(*groups).pvalue
    assert anova(*groups) == pytest.approx(expected, abs=TOLERANCE)
    assert anova(groups[0], groups[1]) == pytest.approx(
        stats.f_oneway(groups[0], groups[1]).pvalue, abs=TOLERANCE
    )


# --- Sentiment Analysis --------------------------------------------------------------------------


def test_sentiment_vader_is_the_compound_score() -> None:
    analyzer = vader.SentimentIntensityAnalyzer()
    expected = [analyzer.polarity_scores(text)["compound"] for text in TEXTS]
    assert sentiment_analysis(TEXTS) == expected
    assert sentiment_analysis(TEXTS, "VADER") == expected
    assert sentiment_analysis(["happy", "sad", "neutral"]) == [0.5719, -0.4767, 0.0]


def test_sentiment_nltk_name_gives_nltks_vader_scores(tmp_path: Path) -> None:
    """TabPy's default, NLTK's VADER, fed the lexicon vaderSentiment ships, scores the same."""
    nltk = require_module("nltk", MODELS_EXTRA)
    from nltk.sentiment.vader import SentimentIntensityAnalyzer

    lexicon = Path(vader.__file__).with_name("vader_lexicon.txt")
    (tmp_path / "sentiment").mkdir()
    with zipfile.ZipFile(tmp_path / "sentiment" / "vader_lexicon.zip", "w") as archive:
        archive.write(lexicon, "vader_lexicon/vader_lexicon.txt")
    nltk.data.path.insert(0, str(tmp_path))
    try:
        analyzer = SentimentIntensityAnalyzer()
    finally:
        nltk.data.path.remove(str(tmp_path))
    expected = [analyzer.polarity_scores(text)["compound"] for text in TEXTS]
    assert sentiment_analysis(TEXTS, library="nltk") == expected


def test_sentiment_textblob_is_the_polarity() -> None:
    expected = [textblob.TextBlob(text).sentiment.polarity for text in TEXTS]
    assert sentiment_analysis(TEXTS, library="textblob") == expected
    assert sentiment_analysis(["happy", "sad", "neutral"], "textblob") == [0.8, -0.5, 0.0]


@pytest.mark.parametrize("library", ["vader", "textblob"])
def test_sentiment_scores_are_polarities(library: str) -> None:
    scores = sentiment_analysis(TEXTS * 3, library)
    assert all(-1.0 <= score <= 1.0 for score in scores)


def test_sentiment_nulls_empty_lists_single_texts_and_tableau_constants() -> None:
    assert sentiment_analysis(["happy", None, "sad"]) == [0.5719, None, -0.4767]
    assert sentiment_analysis([]) == []
    assert sentiment_analysis("happy") == 0.5719
    assert sentiment_analysis(["happy"], ["textblob"]) == [0.8]


def test_sentiment_works_without_network_or_nltk_data(tmp_path: Path) -> None:
    """Both lexicons ship in their packages: no socket and no NLTK data directory needed."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("networking is disabled in this test")

        class NoNetwork(socket.socket):
            def __init__(self, *args, **kwargs):
                refuse()

        socket.socket = NoNetwork
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from tabpy.models.sentiment import sentiment_analysis

        texts = ["happy", "sad", "neutral", "not bad at all"]
        print(sentiment_analysis(texts), sentiment_analysis(texts, "textblob"))
        """
    )
    environment = {
        **os.environ,
        "HOME": str(tmp_path),  # no ~/nltk_data
        "NLTK_DATA": str(tmp_path / "no-nltk-data"),
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    command = [sys.executable, "-c", script]
    if _can_unshare_network():
        command = ["unshare", "--net", "--map-root-user", *command]
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == "[0.5719, -0.4767, 0.0, 0.431] [0.8, -0.5, 0.0, 0.3499999999999999]"
    )


def _can_unshare_network() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "--net", "--map-root-user", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


# --- bad input -----------------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Any, tuple[Any, ...], dict[str, Any], str]] = [
    # (id, function, args, kwargs, text the message must contain)
    ("pca-one-column", pca, (1, [1, 2, 3]), {}, "at least two columns"),
    ("pca-no-columns", pca, (1,), {}, "got 0 column(s)"),
    ("pca-component-too-big", pca, (3, [1, 2, 3], [2, 1, 4]), {}, "between 1 and 2"),
    ("pca-component-zero", pca, (0, [1, 2, 3], [2, 1, 4]), {}, "between 1 and 2"),
    ("pca-component-vs-rows", pca, (3, [1, 2], [2, 1], [0, 5]), {}, "(the number of rows)"),
    ("pca-component-text", pca, ("first", [1, 2], [2, 1]), {}, "the component number"),
    ("pca-component-fraction", pca, (1.5, [1, 2], [2, 1]), {}, "a whole number"),
    ("pca-column-first", pca, ([1, 2, 3], [2, 1, 4]), {}, "the component number"),
    ("pca-empty", pca, (1, [], []), {}, "_arg1 is empty"),
    ("pca-null", pca, (1, [1, 2, 3], [2, None, 4]), {}, "_arg2 has a null at position 2"),
    ("pca-null-text", pca, (1, [1, 2, 3], ["a", None, "b"]), {}, "null at position 2"),
    ("pca-nan", pca, (1, [1, 2, math.nan], [2, 1, 4]), {}, "_arg1 has a null at position 3"),
    ("pca-infinite", pca, (1, [1, 2, math.inf], [2, 1, 4]), {}, "only finite numbers"),
    ("pca-lengths", pca, (1, [1, 2, 3], [2, 1]), {}, "_arg1 has 3, _arg2 has 2"),
    ("pca-one-row", pca, (1, [1], [2]), {}, "at least two rows"),
    ("pca-mixed", pca, (1, [1, 2, 3], ["a", 2, "b"]), {}, "mixes text"),
    ("pca-scalar-column", pca, (1, 5, [1, 2]), {}, "must be a list of values"),
    (
        "pca-26-categories",
        pca,
        (1, list(range(26)), [chr(ord("a") + i) for i in range(26)]),
        {},
        "26 distinct values, but a text column may have at most 25",
    ),
    ("ttest-missing", ttest, ([1, 2, 3],), {}, "_arg2 is missing"),
    ("ttest-empty", ttest, ([], [1, 2]), {}, "_arg1 is empty"),
    ("ttest-empty-second", ttest, ([1, 2], []), {}, "_arg2 is empty"),
    ("ttest-null", ttest, ([1, None, 3], [1, 2, 5]), {}, "_arg1 has a null at position 2"),
    ("ttest-null-second", ttest, ([1, 2, 3], [1, 2, None]), {}, "_arg2 has a null"),
    ("ttest-text-sample", ttest, (["a", "b"], [1, 2, 3]), {}, "must contain only numbers"),
    (
        "ttest-non-binary-factor",
        ttest,
        ([1, 2, 3, 4], ["a", "b", "c", "a"]),
        {},
        "exactly two distinct values",
    ),
    ("ttest-one-level-factor", ttest, ([1, 2, 3], ["a", "a", "a"]), {}, "but it has 1: 'a'"),
    ("ttest-factor-length", ttest, ([1, 2, 3, 4, 5], ["m", "f", "m"]), {}, "one label per value"),
    ("ttest-small-group", ttest, ([1, 2, 3], ["m", "f", "f"]), {}, "group 'm' of _arg1 has 1"),
    ("ttest-one-value", ttest, ([1], [2]), {}, "at least two"),
    ("anova-one-group", anova, ([1, 2, 3],), {}, "at least two groups"),
    ("anova-empty", anova, ([1, 2], []), {}, "_arg2 is empty"),
    ("anova-null", anova, ([1, 2], [3, None], [1, 5]), {}, "_arg2 has a null at position 2"),
    ("anova-text", anova, ([1, 2], ["x", "y"]), {}, "_arg2 must contain only numbers"),
    ("anova-too-few-values", anova, ([1], [2]), {}, "more values than groups"),
    ("sentiment-missing", sentiment_analysis, (), {}, "_arg1 is missing"),
    ("sentiment-number", sentiment_analysis, ([1, 2],), {}, "position 1 holds 1"),
    ("sentiment-library", sentiment_analysis, (["hi"], "spacy"), {}, "'vader', 'nltk'"),
    ("sentiment-dict", sentiment_analysis, ({"a": "b"},), {}, "must be a list of values"),
]


@pytest.mark.parametrize(
    ("function", "args", "kwargs", "expected"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_a_clear_model_input_error(
    function: Any, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ModelInputError) as caught:
        function(*args, **kwargs)
    message = str(caught.value)
    assert expected in message
    assert isinstance(caught.value, ValueError)  # what TabPy's models raised
    assert "\n" not in message and len(message) < 400


def test_error_messages_name_the_model() -> None:
    for name, function, args, kwargs, _ in BAD_INPUTS:
        with pytest.raises(ModelInputError) as caught:
            function(*args, **kwargs)
        model = {"pca": "PCA", "ttest": "ttest", "anova": "anova"}.get(
            name.split("-")[0], "Sentiment Analysis"
        )
        assert str(caught.value).startswith(model), name


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(ModelInputError) as caught:
        ttest(["x" * 10_000, "y"], [1, 2])
    assert len(str(caught.value)) < 300


# --- missing libraries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "call", "package"),
    [
        ("sklearn.decomposition", lambda: pca(1, [1, 2, 3], [2, 1, 4]), "scikit-learn"),
        ("scipy.stats", lambda: ttest([1, 2, 3], [2, 3, 5]), "scipy"),
        ("scipy.stats", lambda: anova([1, 2, 3], [2, 3, 5]), "scipy"),
        ("vaderSentiment.vaderSentiment", lambda: sentiment_analysis(["hi"]), "vaderSentiment"),
        ("textblob", lambda: sentiment_analysis(["hi"], "textblob"), "textblob"),
    ],
)
def test_a_missing_library_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, module: str, call: Any, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    monkeypatch.setattr(_inputs, "_built", {})
    with pytest.raises(MissingDependencyError) as caught:
        call()
    message = str(caught.value)
    assert f"needs {package}, which is not installed" in message
    assert message.endswith(INSTALL_COMMAND)
    assert isinstance(caught.value, ImportError)


def test_importing_and_pickling_the_models_loads_no_heavy_library() -> None:
    """The server, the workers that unpickle a model and the deploy command stay lean."""
    script = textwrap.dedent(
        """
        import sys
        import cloudpickle
        import tabpy.models, tabpy.models.deploy, tabpy.cli.deploy_models
        import tabpy.server.app, tabpy.runtime.worker
        from tabpy.models import MODELS
        from tabpy.tabpy_tools._deploy import pack

        for model in MODELS:
            cloudpickle.loads(pack(model.function, model.description).data)
        heavy = ("scipy", "sklearn", "vaderSentiment", "textblob", "nltk")
        print(sorted(name for name in sys.modules if name.split(".")[0] in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("by_value", [False, True], ids=["by-reference", "by-value"])
def test_models_work_when_unpickled_in_a_fresh_interpreter(by_value: bool) -> None:
    """Installed, tabpy's models pickle by reference; from a source checkout, by value."""
    import cloudpickle

    from tabpy.tabpy_tools.custom_query_object import CustomQueryObject

    model = next(model for model in MODELS if model.name == "ttest")
    module = sys.modules[model.function.__module__]
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        data = cloudpickle.dumps(CustomQueryObject(model.function, model.description))
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    script = textwrap.dedent(
        """
        import sys
        import cloudpickle
        obj = cloudpickle.loads(sys.stdin.buffer.read())
        print(obj.query([1, 2, 3, 4], [2, 4, 5, 9]))
        try:
            obj.query([1, 2, 3], ["a", "b", "c"])
        except ValueError as error:
            print(type(error).__name__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    p_value, error = done.stdout.decode().split()
    assert float(p_value) == pytest.approx(0.1928929642906987, rel=1e-12)  # scipy versions differ
    assert error == "ModelInputError"
