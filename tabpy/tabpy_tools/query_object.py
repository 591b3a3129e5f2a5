"""The base class of every deployable object, and how one is written to and read from disk.

Archives written by TabPy 2.16 name this module and ``QueryObject`` by import path, so both must
stay here. The on-disk form is one folder holding a ``pickle_archive`` file (a cloudpickle dump).
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
from typing import Any

import cloudpickle

__all__ = ["ARCHIVE_NAME", "DEFAULT_DOCSTRING", "QueryObject", "write_archive"]

logger = logging.getLogger(__name__)

#: The file name inside a deployed object's folder.
ARCHIVE_NAME = "pickle_archive"
#: Reported when the deployed function has no docstring (TabPy's exact text).
DEFAULT_DOCSTRING = "-- no docstring found in query function --"


class QueryObject(abc.ABC):
    """Something a server can load and call through ``/query/<name>``.

    Subclasses implement :meth:`query`; the server calls ``query(*data)`` for a JSON array and
    ``query(**data)`` for a JSON object, then encodes the result itself.
    """

    @abc.abstractmethod
    def query(self, *args: Any, **kwargs: Any) -> Any:
        """Run the object on one request's arguments and return the result."""

    def get_docstring(self) -> str:
        doc = type(self).query.__doc__
        return doc if isinstance(doc, str) and doc.strip() else DEFAULT_DOCSTRING

    def get_query_method(self) -> dict[str, str]:
        return {"method": "query"}

    def get_methods(self) -> list[dict[str, str]]:
        return [self.get_query_method()]

    def get_dependencies(self) -> list[str]:
        return []

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this object to ``<path>/pickle_archive``, replacing whatever is at ``path``."""
        write_archive(path, cloudpickle.dumps(self))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QueryObject:
        """Read the object saved in the folder ``path`` (``~`` is expanded)."""
        archive = os.path.join(os.path.abspath(os.path.expanduser(path)), ARCHIVE_NAME)
        with open(archive, "rb") as f:
            loaded = cloudpickle.load(f)
        if not isinstance(loaded, QueryObject):
            # A clear reason beats an AttributeError at the first query.
            raise TypeError(
                f"{archive} holds a {type(loaded).__name__}, not a QueryObject: "
                "deploy it again with tabpy.tabpy_tools.client.Client.deploy."
            )
        logger.info('Loaded query object "%s" successfully', type(loaded).__name__)
        return loaded


def write_archive(path: str | os.PathLike[str], data: bytes) -> None:
    """Store already pickled bytes as ``<path>/pickle_archive``, replacing whatever is at ``path``.

    The deploy flow pickles once, hashes the bytes and may need to write the same bytes to disk
    for a TabPy 2.16 server, so the write is separate from :meth:`QueryObject.save`.
    """
    folder = os.path.abspath(os.path.expanduser(path))
    if os.path.lexists(folder):
        logger.warning('Overwriting existing file "%s" when saving query object', folder)
        if os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder)
        else:
            os.remove(folder)
    os.makedirs(folder)
    with open(os.path.join(folder, ARCHIVE_NAME), "wb") as f:
        f.write(data)
