"""Errors of the endpoint registry, in TabPy's words.

Hierarchy (under :mod:`tabpy.errors`)::

    InvalidRequest
    ├── EndpointExists       deploying a name that is already deployed
    ├── UnknownArtifact      a deploy names an object that was never uploaded
    └── LastAdmin            revoking the only admin grant over HTTP
    Conflict
    └── DeployRaced          another deploy of the same name committed first
    ServiceUnavailable
    └── RegistryUnavailable  the registry database cannot be reached (never names its host)
    NotFound
    ├── UnknownEndpoint      updating or deleting a name that is not deployed
    ├── UnknownVersion       rolling back to a version the endpoint never had
    ├── EndpointNotFound     describing a name that is not deployed
    └── UnknownURI           querying a name that is not deployed

The three "not deployed" errors differ only in wording: TabPy words each route's reply
differently, and clients match those words.

A registry the server cannot use stops start-up instead (``tabpy.config.ConfigError``)::

    ConfigError
    ├── RegistryTooNew         its schema revision is newer than this server knows
    └── UnrecognisedRegistry   some of the registry's tables exist, but not all
"""

from __future__ import annotations

from tabpy.config import ConfigError
from tabpy.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable

#: What a refused write tells the client to wait before trying again, in seconds.
RETRY_AFTER_SECONDS = 5


class EndpointExists(InvalidRequest):
    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name} already exists.")


class DeployRaced(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"endpoint {name} was changed by another deploy at the same time.",
            "Nothing was changed by this request. Read the endpoint again and retry; "
            'send "override": true to deploy it as the next version whatever happened.',
        )


class RegistryUnavailable(ServiceUnavailable):
    """The database is down or unreachable; the words never say where it is."""

    def __init__(self) -> None:
        super().__init__(
            "The endpoint registry is unavailable right now; nothing was changed.",
            f"Retry in {RETRY_AFTER_SECONDS} seconds. Queries and evaluations keep working "
            "meanwhile.",
            retry_after=RETRY_AFTER_SECONDS,
        )


class UnknownArtifact(InvalidRequest):
    def __init__(self, sha256: str) -> None:
        super().__init__(
            f"artifact {sha256} has not been uploaded.",
            "Upload the pickled object with PUT /artifacts/<sha256> first.",
        )


class LastAdmin(InvalidRequest):
    def __init__(self, principal: str) -> None:
        super().__init__(
            f"{principal} holds the only admin grant; revoking it would leave nobody able to "
            "manage roles.",
            "Grant admin to someone else first (or use tabpy-user revoke on the server).",
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


class RegistryTooNew(ConfigError):
    def __init__(self, found: str, newest: str) -> None:
        super().__init__(
            f"TABPY_REGISTRY_URL: the registry's schema is at revision {found}, newer than this "
            f"server understands (its newest is {newest}); a newer version of the server "
            "upgraded it. Run that version (or newer), or point TABPY_REGISTRY_URL at another "
            "registry."
        )


class UnrecognisedRegistry(ConfigError):
    def __init__(self, present: list[str], missing: list[str]) -> None:
        super().__init__(
            f"TABPY_REGISTRY_URL: the database has the registry tables {', '.join(present)} "
            f"but not {', '.join(missing)}, and no schema revision, so it is not a registry "
            "this server made. Point TABPY_REGISTRY_URL at a registry or an empty database."
        )
