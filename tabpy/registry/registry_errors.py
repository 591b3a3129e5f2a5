"""Errors of the endpoint registry, in TabPy's words.

Hierarchy (under :mod:`tabpy.errors`)::

    InvalidRequest
    ├── EndpointExists       deploying a name that is already deployed
    └── UnknownArtifact      a deploy names an object that was never uploaded
    NotFound
    ├── UnknownEndpoint      updating or deleting a name that is not deployed
    ├── UnknownVersion       rolling back to a version the endpoint never had
    ├── EndpointNotFound     describing a name that is not deployed
    └── UnknownURI           querying a name that is not deployed

The three "not deployed" errors differ only in wording: TabPy words each route's reply
differently, and clients match those words.
"""

from __future__ import annotations

from tabpy.errors import InvalidRequest, NotFound


class EndpointExists(InvalidRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name} already exists.")


class UnknownArtifact(InvalidRequest):
    def __init__(self, sha256: str) -> None:
        super().__init__(
            f"artifact {sha256} has not been uploaded.",
            "Upload the pickled object with PUT /artifacts/<sha256> first.",
        )


class UnknownEndpoint(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name} does not exist.")


class UnknownVersion(NotFound):
    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"endpoint {name} has no version {version}.")


class EndpointNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__("Unknown endpoint", f"Endpoint {name} is not found")


class UnknownURI(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__("UnknownURI", f"Endpoint '{name}' does not exist")
