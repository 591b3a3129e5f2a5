"""What an endpoint is, and the rules for its names: pure data, no storage.

The field names and their order are TabPy's (``GET /endpoints`` shows them in
this order and clients read them by name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tabpy.errors import InvalidRequest

DEFAULT_DOCSTRING = "-- no docstring found in query function --"
_NAME = re.compile(r"^[a-zA-Z0-9-_\s]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Endpoint:
    name: str
    type: str
    version: int
    description: str
    docstring: str
    schema: Any
    is_public: Any
    dependencies: list[Any]
    target: str | None
    creation_time: int
    last_modified_time: int
    #: SHA-256 of the current version's object. Versions restart at 1 when a
    #: name is deleted and deployed again, so caches key loaded objects by this.
    artifact: str | None = None

    def info(self) -> dict[str, Any]:
        """The object ``GET /endpoints/<name>`` returns, keys in TabPy's order."""
        return {
            "description": self.description,
            "type": self.type,
            "version": self.version,
            "dependencies": self.dependencies,
            "target": self.target,
            "creation_time": self.creation_time,
            "last_modified_time": self.last_modified_time,
            "schema": self.schema,
            "is_public": self.is_public,
            "docstring": self.docstring,
        }


@dataclass(frozen=True)
class Version:
    """One deployed version of an endpoint and the artifact it runs."""

    name: str
    version: int
    artifact: str
    size: int
    created_at: int


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidRequest("endpoint name must be a string.")
    if not _NAME.match(name):
        raise InvalidRequest(
            "endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces."
        )
    return name


def check_sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidRequest(
            "artifact must be the SHA-256 of an uploaded object: 64 lowercase hex digits."
        )
    return value
