"""Registry errors, each already the HTTP answer TabPy gives for it."""

from __future__ import annotations

from tabpy.errors import BadRequest, HTTPError


class EndpointExists(BadRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name} already exists.")


class UnknownEndpoint(HTTPError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name} does not exist.")


class UnknownVersion(HTTPError):
    status_code = 404

    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"endpoint {name} has no version {version}.")


class UnknownArtifact(BadRequest):
    def __init__(self, sha256: str) -> None:
        super().__init__(
            f"artifact {sha256} has not been uploaded.",
            "Upload the pickled object with PUT /artifacts/<sha256> first.",
        )


class EndpointNotFound(HTTPError):
    """``GET /endpoints/<name>`` for a name that is not deployed."""

    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__("Unknown endpoint", f"Endpoint {name} is not found")


class UnknownURI(HTTPError):
    """``/query/<name>`` for a name that is not deployed."""

    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__("UnknownURI", f"Endpoint '{name}' does not exist")
