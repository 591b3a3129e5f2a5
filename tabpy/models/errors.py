"""The errors the pre-built models raise on purpose.

Hierarchy (under :class:`tabpy.errors.TabPyError`)::

    ModelError
    ├── ModelInputError         an argument the model cannot use (also a ValueError)
    └── MissingDependencyError  a library of the ``models`` extra is not installed
                                where the model runs (also an ImportError)

The server reports an exception raised by a deployed function as
``<ExceptionClass> : <message>`` in the ``info.error`` field of its ``QueryFailed`` reply, so the
class name and the message are all a Tableau user sees: each message names the model, the
argument and what to change.
"""

from __future__ import annotations

from tabpy import DISTRIBUTION_NAME
from tabpy.errors import TabPyError

__all__ = ["INSTALL_COMMAND", "MissingDependencyError", "ModelError", "ModelInputError"]

#: The command that installs every library the models use. It works where the server was
#: installed with pip (from a checkout too): pip then takes the extra's list from the installed
#: package's metadata and only fetches the libraries.
INSTALL_COMMAND = f"pip install '{DISTRIBUTION_NAME}[models]'"


class ModelError(TabPyError):
    """Base class of every error a pre-built model raises on purpose."""


class ModelInputError(ModelError, ValueError):
    """An argument the model cannot use; the message says which one and what to change."""


class MissingDependencyError(ModelError, ImportError):
    """A library the model needs is not installed in the Python environment that runs it."""
