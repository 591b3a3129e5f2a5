"""The pre-built models that ``tabpy-deploy-models`` deploys: PCA, Sentiment Analysis, ttest
and anova.

Each model is a plain function in its own module (``tabpy.models.pca.pca``,
``tabpy.models.sentiment.sentiment_analysis``, ``tabpy.models.ttest.ttest``,
``tabpy.models.anova.anova``); :mod:`tabpy.models.catalog` gives their endpoint names and
:mod:`tabpy.models.deploy` deploys them. Their libraries (scikit-learn, scipy, vaderSentiment,
textblob) come with the ``models`` extra and are imported only when a model is called, so this
package is cheap to import, to deploy and to unpickle in a worker.
"""

from __future__ import annotations

from tabpy.models.catalog import MODELS, Model, select
from tabpy.models.errors import (
    INSTALL_COMMAND,
    MissingDependencyError,
    ModelError,
    ModelInputError,
)

__all__ = [
    "INSTALL_COMMAND",
    "MODELS",
    "MissingDependencyError",
    "Model",
    "ModelError",
    "ModelInputError",
    "select",
]
