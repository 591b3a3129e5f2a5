"""What a deploy asks for, parsed and validated once, with nothing but the body.

``POST /endpoints`` creates an endpoint and ``PUT /endpoints/<name>`` changes one; the
checks, their order and their messages are TabPy's, because clients (TabPy's own among
them) match the messages. The order matters when a body breaks several rules: the name
comes first, then whether it is deployed, then the fields, then the new object's source.
Lengths and characters that one database would store and another refuse are refused
here, so SQLite and PostgreSQL answer alike.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from tabpy.environments.spec import EnvironmentSpec, parse_spec
from tabpy.errors import InvalidRequest
from tabpy.registry.endpoint import (
    DEFAULT_DOCSTRING,
    MAX_TYPE_LENGTH,
    check_name,
    check_sha256,
)
from tabpy.registry.registry_errors import EndpointExists, UnknownEndpoint

__all__ = [
    "PICKLE_FILE",
    "DeployRequest",
    "EndpointFields",
    "Source",
    "parse_rollback",
    "read_staged",
]

#: The file TabPy's client writes into ``src_path``.
PICKLE_FILE = "pickle_archive"

_STATE_ERROR = "Error when changing TabPy state: "
_LARGEST_VERSION = 2**63 - 1
_SOURCE_REQUIRED = "src_path is required to add/update an endpoint."


class EndpointFields(TypedDict, total=False):
    """Endpoint fields a deploy sets; an update holds only those it changes."""

    type: str
    description: str
    docstring: str
    schema: Any
    is_public: bool
    dependencies: list[Any]
    target: str | None


@dataclass(frozen=True)
class Source:
    """Where a new version's object comes from: an uploaded artifact or a staged folder."""

    artifact: str | None = None
    src_path: Path | None = None


@dataclass(frozen=True)
class DeployRequest:
    """A valid deploy: which endpoint, which fields, and the new version's object if any.

    ``source`` is None when no new version is made (an update of fields only) or when the
    new endpoint is an alias, which runs no object of its own. ``override`` (a create only)
    makes the deploy the next version if the database already has the name, which this
    instance's possibly stale view may not know yet. ``environment`` is the new version's
    own environment (``requirements`` in the body); None runs it in the default one.
    """

    name: str
    creates: bool
    fields: EndpointFields
    source: Source | None = None
    override: bool = False
    environment: EnvironmentSpec | None = None

    @property
    def new_version(self) -> bool:
        return self.creates or self.source is not None

    @classmethod
    def to_create(
        cls, body: Mapping[str, Any], deployed: Container[str], staging: Path
    ) -> DeployRequest:
        """``POST /endpoints``; ``deployed`` holds the names in use (read from the database),
        ``staging`` is the folder ``src_path`` must be inside. ``"override": true`` in the
        body deploys over an existing name as its next version."""
        if "name" not in body:
            raise InvalidRequest("name is required to add an endpoint.")
        name = check_name(body["name"])
        override = body.get("override", False)
        if not isinstance(override, bool):
            raise InvalidRequest("override must be true or false.")
        if name in deployed and not override:
            raise EndpointExists(name)
        _check_fields(body)
        source = _source(body, name, staging)
        endpoint_type = body.get("type", "model")
        if source is None and endpoint_type != "alias":
            raise InvalidRequest(_SOURCE_REQUIRED)
        if endpoint_type == "alias" and not body.get("target"):
            raise InvalidRequest("Target is required for alias endpoint.")
        fields = EndpointFields(
            type=endpoint_type,
            description=body.get("description", ""),
            docstring=body.get("docstring") or DEFAULT_DOCSTRING,
            schema=body.get("schema"),
            is_public=body.get("is_public", False),
            dependencies=body.get("dependencies", []),
            target=body.get("target"),
        )
        environment = _environment(body)
        if environment is not None and endpoint_type == "alias":
            raise InvalidRequest(
                "An alias runs its target's code; deploy requirements with the target instead."
            )
        return cls(name, True, fields, source, override, environment)

    @classmethod
    def to_update(
        cls, name: str, body: Mapping[str, Any], deployed: Container[str], staging: Path
    ) -> DeployRequest:
        """``PUT /endpoints/<name>``: only the fields sent change (TabPy resets the others);
        ``should_update_version`` makes a new version from ``artifact`` or ``src_path``."""
        if name not in deployed:
            raise UnknownEndpoint(name)
        _check_fields(body)
        source = None
        if body.get("should_update_version"):
            source = _source(body, name, staging)
            if source is None:
                raise InvalidRequest(_SOURCE_REQUIRED)
        environment = _environment(body)
        if environment is not None and source is None:
            raise InvalidRequest(
                "requirements belong to a new version: send them with "
                '"should_update_version": true and the new object.'
            )
        fields = EndpointFields()
        # TabPy keeps the old value when one of these is sent empty.
        if body.get("description"):
            fields["description"] = body["description"]
        if body.get("docstring"):
            fields["docstring"] = body["docstring"]
        if body.get("type"):
            fields["type"] = body["type"]
        if body.get("target"):
            fields["target"] = body["target"]
        if "schema" in body:
            fields["schema"] = body["schema"]
        if "is_public" in body:
            fields["is_public"] = body["is_public"]
        if "dependencies" in body:
            fields["dependencies"] = body["dependencies"]
        return cls(name, False, fields, source, environment=environment)


def parse_rollback(body: Mapping[str, Any]) -> int:
    """The version ``POST /endpoints/<name>/rollback`` restores."""
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidRequest('Send {"version": <number>} with the version to restore.')
    if abs(version) > _LARGEST_VERSION:  # the databases store 64-bit integers
        raise InvalidRequest(
            f"version {version} is out of range; send one that "
            "GET /endpoints/<name>/versions lists."
        )
    return version


def read_staged(src_path: Path) -> tuple[str, bytes]:
    """The SHA-256 and bytes of a pickle staged by TabPy's client (blocking file I/O)."""
    try:
        data = (src_path / PICKLE_FILE).read_bytes()
    except OSError as exc:
        raise InvalidRequest("error adding endpoint", f"{type(exc).__name__} : {exc}") from None
    return hashlib.sha256(data).hexdigest(), data


def _environment(body: Mapping[str, Any]) -> EnvironmentSpec | None:
    """The body's ``requirements``; absent or null is the default environment."""
    value = body.get("requirements")
    return None if value is None else parse_spec(value)


def _check_fields(body: Mapping[str, Any]) -> None:
    """Type rules shared by create and update (TabPy's "state validation")."""
    if "docstring" in body and not isinstance(body["docstring"], str):
        raise InvalidRequest("docstring must be a string.")
    if "description" in body and not isinstance(body["description"], str):
        raise InvalidRequest(_STATE_ERROR + "description must be a string.")
    if "type" in body and (not isinstance(body["type"], str) or not body["type"]):
        raise InvalidRequest(_STATE_ERROR + "endpoint type must be a string.")
    if "dependencies" in body and not isinstance(body["dependencies"], list):
        raise InvalidRequest(_STATE_ERROR + "dependencies must be a list.")
    if body.get("target") is not None and not isinstance(body["target"], str):
        raise InvalidRequest(_STATE_ERROR + "target must be a string.")
    if "is_public" in body and not isinstance(body["is_public"], bool):
        raise InvalidRequest("is_public must be true or false.")
    if len(body.get("type") or "") > MAX_TYPE_LENGTH:
        raise InvalidRequest(
            f"{_STATE_ERROR}endpoint type is {len(body['type'])} characters long; "
            f"the limit is {MAX_TYPE_LENGTH}."
        )
    for field in ("description", "docstring", "type", "target"):
        _check_storable(field, body.get(field))


def _check_storable(field: str, value: object) -> None:
    # PostgreSQL refuses text containing NUL, which SQLite would store.
    if isinstance(value, str) and "\x00" in value:
        raise InvalidRequest(f"{field} must not contain the NUL character (\\u0000).")


def _source(body: Mapping[str, Any], name: str, staging: Path) -> Source | None:
    """The new object's source, or None when the body names none."""
    if body.get("artifact") is not None:
        return Source(artifact=check_sha256(body["artifact"]))
    if body.get("src_path") is None:
        return None
    src_path = body["src_path"]
    if not isinstance(src_path, str):
        raise InvalidRequest("src_path must be a string.")
    _check_storable("src_path", src_path)
    # TabPy copies any server-local folder it is pointed at; we only read the
    # staging area its client writes to.
    resolved = Path(os.path.realpath(src_path))
    root = Path(os.path.realpath(staging))
    if not resolved.is_relative_to(root):
        raise InvalidRequest(
            f"Invalid source path for endpoint {name}",
            f"src_path must be inside the upload destination {root} "
            "(GET /configurations/endpoint_upload_destination), or upload the object "
            "with PUT /artifacts/<sha256>.",
        )
    return Source(src_path=resolved)
