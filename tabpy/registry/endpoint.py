"""What an endpoint is, and the rules for its names: pure data, no storage.

The field names and their order are TabPy's (``GET /endpoints`` shows them in
this order and clients read them by name).

Lengths are checked here rather than left to the database: SQLite ignores the
length of a ``VARCHAR``, PostgreSQL refuses what does not fit, and the same
request must get the same answer from both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tabpy.environments.spec import EnvironmentSpec
from tabpy.errors import InvalidRequest

DEFAULT_DOCSTRING = "-- no docstring found in query function --"
#: Longest endpoint name a deploy may create. The name travels in URL paths
#: (``/query/<name>``), percent-encoded at up to 3 bytes a character, and this keeps
#: such a URL far below the request-line limits of servers and proxies.
MAX_NAME_LENGTH = 1024
#: Longest endpoint type (TabPy's are ``model`` and ``alias``).
MAX_TYPE_LENGTH = 64
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
    #: The environment the current version runs in; None: the server's default one.
    environment: EnvironmentSpec | None = None

    def info(self) -> dict[str, Any]:
        """The object ``GET /endpoints/<name>`` returns, keys in TabPy's order.

        ``requirements`` is added only for a version with its own environment, so an
        endpoint deployed as TabPy deploys reads exactly as TabPy shows it.
        """
        info = {
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
        if self.environment is not None:
            info["requirements"] = self.environment.as_json()
        return info


@dataclass(frozen=True)
class Version:
    """One deployed version of an endpoint: the artifact it runs and what it said of itself.

    ``description``, ``docstring`` and ``schema`` are None when unknown (the version was
    recorded by a server that did not keep them); ``current`` marks the version served now.
    """

    name: str
    version: int
    artifact: str
    size: int
    created_at: int
    description: str | None = None
    docstring: str | None = None
    schema: Any = None
    current: bool = False
    environment: EnvironmentSpec | None = None

    def info(self) -> dict[str, Any]:
        """The object ``GET /endpoints/<name>/versions`` lists for this version."""
        return {
            "version": self.version,
            "artifact": self.artifact,
            "size": self.size,
            "created_at": self.created_at,
            "description": self.description,
            "docstring": self.docstring,
            "schema": self.schema,
            "current": self.current,
            "requirements": None if self.environment is None else self.environment.as_json(),
        }


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidRequest("endpoint name must be a string.")
    if not _NAME.match(name):
        raise InvalidRequest(
            "endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces."
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"endpoint name is {len(name)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}. Choose a shorter name."
        )
    return name


def check_sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidRequest(
            "artifact must be the SHA-256 of an uploaded object: 64 lowercase hex digits."
        )
    return value
