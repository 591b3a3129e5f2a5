"""The wrapper that ``Client.deploy`` pickles around a user's function.

Pickles written by TabPy 2.16's client name ``tabpy.tabpy_tools.custom_query_object``
``CustomQueryObject`` by import path and restore the instance ``__dict__``
``{"description": ..., "custom_query": ...}`` directly, without calling ``__init__``. The module
path, the class name and those two attribute names are therefore a compatibility contract; the
class must not grow other instance state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tabpy.tabpy_tools.query_object import DEFAULT_DOCSTRING, QueryObject

__all__ = ["CustomQueryObject"]


class CustomQueryObject(QueryObject):
    """A deployed Python function with its description."""

    def __init__(self, query: Callable[..., Any], description: str = "") -> None:
        if not callable(query):
            raise TypeError(f"query must be a function, got {type(query).__name__}")
        self.description = description
        self.custom_query = query

    def query(self, *args: Any, **kwargs: Any) -> Any:
        # The result is returned as is: the server encodes it, with its own rules for NaN,
        # numpy and pandas values, so checking json.dumps here would reject valid results.
        return self.custom_query(*args, **kwargs)

    def get_docstring(self) -> str:
        doc = getattr(self.custom_query, "__doc__", None)
        return doc if isinstance(doc, str) and doc.strip() else DEFAULT_DOCSTRING

    def __repr__(self) -> str:
        name = getattr(self.custom_query, "__qualname__", repr(self.custom_query))
        return f"<CustomQueryObject {name} description={self.description!r}>"
