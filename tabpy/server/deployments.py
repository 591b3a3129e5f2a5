"""Turning a deploy request body into registry changes (SPEC 3.7 and 3.8).

Kept apart from the HTTP handlers: these are the validation rules, in TabPy's
order and with its messages, and they need nothing but the body.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabpy.errors import InvalidRequest
from tabpy.registry.endpoint import DEFAULT_DOCSTRING, Endpoint, check_name, check_sha256

PICKLE_FILE = "pickle_archive"


@dataclass(frozen=True)
class Source:
    """Where a new version's object comes from: an upload or a staging folder."""

    artifact: str | None = None
    src_path: Path | None = None


def check_fields(body: dict[str, Any]) -> None:
    """Type rules shared by create and update (TabPy's "state validation")."""
    if "docstring" in body and not isinstance(body["docstring"], str):
        raise InvalidRequest("docstring must be a string.")
    if "description" in body and not isinstance(body["description"], str):
        raise InvalidRequest("Error when changing TabPy state: description must be a string.")
    if "type" in body and (not isinstance(body["type"], str) or not body["type"]):
        raise InvalidRequest("Error when changing TabPy state: endpoint type must be a string.")
    if "dependencies" in body and not isinstance(body["dependencies"], list):
        raise InvalidRequest("Error when changing TabPy state: dependencies must be a list.")
    if body.get("target") is not None and not isinstance(body["target"], str):
        raise InvalidRequest("Error when changing TabPy state: target must be a string.")
    if "is_public" in body and not isinstance(body["is_public"], bool):
        raise InvalidRequest("is_public must be true or false.")


def source_of(body: dict[str, Any], name: str, staging: Path) -> Source | None:
    """The new object's source, or None when the body names none."""
    if body.get("artifact") is not None:
        return Source(artifact=check_sha256(body["artifact"]))
    if body.get("src_path") is None:
        return None
    src_path = body["src_path"]
    if not isinstance(src_path, str):
        raise InvalidRequest("src_path must be a string.")
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


def read_staged(src_path: Path) -> tuple[str, bytes]:
    """The SHA-256 and bytes of a pickle staged by TabPy's client (runs in a thread)."""
    try:
        data = (src_path / PICKLE_FILE).read_bytes()
    except OSError as exc:
        raise InvalidRequest("error adding endpoint", f"{type(exc).__name__} : {exc}") from None
    return hashlib.sha256(data).hexdigest(), data


def new_endpoint(body: dict[str, Any], name: str) -> Endpoint:
    now = int(time.time())
    endpoint_type = body.get("type", "model")
    if endpoint_type == "alias" and not body.get("target"):
        raise InvalidRequest("Target is required for alias endpoint.")
    return Endpoint(
        name=name,
        type=endpoint_type,
        version=1,
        description=body.get("description", ""),
        docstring=body.get("docstring") or DEFAULT_DOCSTRING,
        schema=body.get("schema"),
        is_public=body.get("is_public", False),
        dependencies=body.get("dependencies", []),
        target=body.get("target"),
        creation_time=now,
        last_modified_time=now,
    )


def changed_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields a PUT changes: only those it sends (TabPy resets the others)."""
    changes: dict[str, Any] = {}
    for field in ("description", "docstring", "type", "target"):
        if body.get(field):  # TabPy keeps the old value for an empty one
            changes[field] = body[field]
    for field in ("schema", "is_public", "dependencies"):
        if field in body:
            changes[field] = body[field]
    return changes


def require_name(body: dict[str, Any]) -> str:
    if "name" not in body:
        raise InvalidRequest("name is required to add an endpoint.")
    return check_name(body["name"])
