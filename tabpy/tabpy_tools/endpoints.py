"""What ``Client.get_endpoints`` returns: one dict-like object per deployed endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["AliasEndpoint", "Endpoint", "ModelEndpoint", "endpoint_from_json"]

_TIME_FIELDS = ("creation_time", "last_modified_time")


class Endpoint(dict[str, Any]):
    """An endpoint's information as the server reports it, readable as keys or attributes.

    Only the fields present in the server's reply are set. ``creation_time`` and
    ``last_modified_time`` are naive UTC ``datetime`` objects, ``version`` an ``int`` and
    ``is_public`` a ``bool``; ``schema`` keeps the JSON value the server stored (an object when
    deployed by this client, a Python-repr string when deployed by TabPy 2.16's client).
    """

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class ModelEndpoint(Endpoint):
    """An endpoint of type ``model``: a deployed Python function."""


class AliasEndpoint(Endpoint):
    """An endpoint of type ``alias``: another name for the endpoint in ``target``."""


def endpoint_from_json(name: str, info: Mapping[str, Any]) -> Endpoint:
    """Build the ``Endpoint`` subclass matching ``info["type"]`` (plain ``Endpoint`` if unknown)."""
    kinds: dict[Any, type[Endpoint]] = {"model": ModelEndpoint, "alias": AliasEndpoint}
    kind = info.get("type")
    endpoint: Endpoint = kinds.get(kind if isinstance(kind, str) else None, Endpoint)(info)
    endpoint.setdefault("name", name)
    for field in _TIME_FIELDS:
        if isinstance(endpoint.get(field), (int, float)):
            endpoint[field] = datetime.fromtimestamp(endpoint[field], timezone.utc).replace(
                tzinfo=None
            )
    if isinstance(endpoint.get("version"), float) and endpoint["version"].is_integer():
        endpoint["version"] = int(endpoint["version"])
    if "is_public" in endpoint:
        endpoint["is_public"] = bool(endpoint["is_public"])
    return endpoint
