"""DeployRequest: the rules of a deploy body, their order and their words, without a server."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tabpy.errors import InvalidRequest, NotFound
from tabpy.registry.deploy_request import (
    PICKLE_FILE,
    DeployRequest,
    Source,
    parse_rollback,
    read_staged,
)
from tabpy.registry.endpoint import DEFAULT_DOCSTRING, MAX_NAME_LENGTH, MAX_TYPE_LENGTH
from tabpy.registry.registry_errors import EndpointExists, UnknownEndpoint

SHA = "ab" * 32
DEPLOYED = frozenset({"add"})


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    (path / "endpoints" / "fresh" / "1").mkdir(parents=True)
    return path


def create(body: dict[str, Any], staging: Path) -> DeployRequest:
    return DeployRequest.to_create(body, DEPLOYED, staging)


def refusal(body: dict[str, Any], staging: Path) -> str:
    with pytest.raises(InvalidRequest) as caught:
        create(body, staging)
    return caught.value.message


# --- creating --------------------------------------------------------------------------------


def test_a_minimal_create_gets_tabpys_defaults(staging: Path) -> None:
    request = create({"name": "fresh", "artifact": SHA}, staging)
    assert (request.name, request.creates, request.new_version) == ("fresh", True, True)
    assert request.source == Source(artifact=SHA)
    assert request.fields == {
        "type": "model",
        "description": "",
        "docstring": DEFAULT_DOCSTRING,
        "schema": None,
        "is_public": False,
        "dependencies": [],
        "target": None,
    }


def test_a_full_create_keeps_every_field(staging: Path) -> None:
    body = {
        "name": "fresh",
        "artifact": SHA,
        "description": "d",
        "docstring": "doc",
        "schema": {"input": {}},
        "is_public": True,
        "dependencies": ["x"],
        "type": "model",
        "methods": [{"method": "query"}],  # TabPy's client sends these; they are ignored
    }
    fields = create(body, staging).fields
    assert (fields["description"], fields["docstring"]) == ("d", "doc")
    assert (fields["schema"], fields["is_public"], fields["dependencies"]) == (
        {"input": {}},
        True,
        ["x"],
    )


def test_an_empty_docstring_becomes_the_default(staging: Path) -> None:
    request = create({"name": "fresh", "artifact": SHA, "docstring": ""}, staging)
    assert request.fields["docstring"] == DEFAULT_DOCSTRING


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name is required to add an endpoint."),
        ({"name": 5}, "endpoint name must be a string."),
        (
            {"name": "b@d"},
            "endpoint name can only contain: a-z, A-Z, 0-9, underscore, hyphens and spaces.",
        ),
        ({"name": "fresh", "docstring": 1}, "docstring must be a string."),
        (
            {"name": "fresh", "description": []},
            "Error when changing TabPy state: description must be a string.",
        ),
        (
            {"name": "fresh", "type": ""},
            "Error when changing TabPy state: endpoint type must be a string.",
        ),
        (
            {"name": "fresh", "dependencies": "x"},
            "Error when changing TabPy state: dependencies must be a list.",
        ),
        (
            {"name": "fresh", "target": 3},
            "Error when changing TabPy state: target must be a string.",
        ),
        ({"name": "fresh", "is_public": "yes"}, "is_public must be true or false."),
        ({"name": "fresh"}, "src_path is required to add/update an endpoint."),
        ({"name": "fresh", "src_path": 5}, "src_path must be a string."),
        ({"name": "fresh", "src_path": "/etc"}, "Invalid source path for endpoint fresh"),
        ({"name": "fresh", "type": "alias"}, "Target is required for alias endpoint."),
    ],
)
def test_create_refusals_in_tabpys_words(staging: Path, body: dict[str, Any], message: str) -> None:
    assert refusal(body, staging) == message


def test_the_name_is_checked_first_then_whether_it_is_deployed_then_the_fields(
    staging: Path,
) -> None:
    bad_everything = {"description": 1, "src_path": "/etc", "artifact": "x"}
    assert refusal({**bad_everything, "name": "b@d"}, staging).startswith("endpoint name")
    with pytest.raises(EndpointExists, match="endpoint add already exists."):
        create({**bad_everything, "name": "add"}, staging)
    assert refusal({**bad_everything, "name": "fresh"}, staging).endswith(
        "description must be a string."
    )


def test_names_up_to_the_limit_are_accepted(staging: Path) -> None:
    name = "n" * MAX_NAME_LENGTH
    assert create({"name": name, "artifact": SHA}, staging).name == name


def test_a_longer_name_is_refused_saying_by_how_much(staging: Path) -> None:
    message = refusal({"name": "n" * 100_000, "artifact": SHA}, staging)
    assert message == (
        f"endpoint name is 100000 characters long; the limit is {MAX_NAME_LENGTH}. "
        "Choose a shorter name."
    )


def test_a_type_longer_than_the_column_is_refused(staging: Path) -> None:
    ok = create({"name": "fresh", "artifact": SHA, "type": "t" * MAX_TYPE_LENGTH}, staging)
    assert ok.fields["type"] == "t" * MAX_TYPE_LENGTH
    message = refusal({"name": "fresh", "artifact": SHA, "type": "t" * 65}, staging)
    assert "endpoint type is 65 characters long" in message


@pytest.mark.parametrize("field", ["description", "docstring", "target", "src_path"])
def test_nul_characters_are_refused_as_postgresql_would(staging: Path, field: str) -> None:
    body = {"name": "fresh", "artifact": SHA, field: "a\x00b"}
    if field == "src_path":
        body.pop("artifact")
    assert refusal(body, staging) == f"{field} must not contain the NUL character (\\u0000)."


def test_an_artifact_must_be_a_sha256(staging: Path) -> None:
    assert refusal({"name": "fresh", "artifact": "XYZ"}, staging).startswith(
        "artifact must be the SHA-256"
    )


def test_an_artifact_wins_over_src_path(staging: Path) -> None:
    request = create({"name": "fresh", "artifact": SHA, "src_path": "/etc"}, staging)
    assert request.source == Source(artifact=SHA)


def test_src_path_must_resolve_inside_the_staging_folder(staging: Path) -> None:
    inside = staging / "endpoints" / "fresh" / "1"
    request = create({"name": "fresh", "src_path": str(inside)}, staging)
    assert request.source == Source(src_path=inside.resolve())
    escape = str(staging / "endpoints" / ".." / "..")
    with pytest.raises(InvalidRequest) as caught:
        create({"name": "fresh", "src_path": escape}, staging)
    assert "must be inside the upload destination" in caught.value.info
    (staging / "link").symlink_to("/etc")
    with pytest.raises(InvalidRequest):
        create({"name": "fresh", "src_path": str(staging / "link")}, staging)


def test_an_alias_needs_a_target_but_no_object(staging: Path) -> None:
    request = create({"name": "fresh", "type": "alias", "target": "add"}, staging)
    assert request.source is None and request.new_version
    assert (request.fields["type"], request.fields["target"]) == ("alias", "add")


# --- updating --------------------------------------------------------------------------------


def update(name: str, body: dict[str, Any], staging: Path) -> DeployRequest:
    return DeployRequest.to_update(name, body, DEPLOYED, staging)


def test_an_unknown_name_is_404_before_any_field_check(staging: Path) -> None:
    with pytest.raises(UnknownEndpoint, match="endpoint ghost does not exist.") as caught:
        update("ghost", {"description": 5}, staging)
    assert isinstance(caught.value, NotFound)


def test_an_update_holds_only_what_it_changes(staging: Path) -> None:
    request = update("add", {"description": "new", "schema": None}, staging)
    assert (request.creates, request.new_version, request.source) == (False, False, None)
    assert request.fields == {"description": "new", "schema": None}


def test_empty_strings_keep_the_old_values_as_in_tabpy(staging: Path) -> None:
    body = {"description": "", "docstring": "", "type": "", "target": ""}
    with pytest.raises(InvalidRequest, match="endpoint type must be a string"):
        update("add", body, staging)
    body.pop("type")
    assert update("add", body, staging).fields == {}


def test_is_public_and_dependencies_change_when_sent(staging: Path) -> None:
    fields = update("add", {"is_public": False, "dependencies": []}, staging).fields
    assert fields == {"is_public": False, "dependencies": []}


def test_a_new_version_needs_an_object(staging: Path) -> None:
    with pytest.raises(InvalidRequest, match="src_path is required"):
        update("add", {"should_update_version": True}, staging)
    request = update("add", {"should_update_version": True, "artifact": SHA}, staging)
    assert request.new_version and request.source == Source(artifact=SHA)


def test_without_a_new_version_src_path_is_not_read(staging: Path) -> None:
    # TabPy's client sends the current version's folder on every PUT.
    request = update("add", {"should_update_version": False, "src_path": "/anywhere"}, staging)
    assert request.source is None


def test_updates_check_the_same_field_rules(staging: Path) -> None:
    with pytest.raises(InvalidRequest, match="is_public must be true or false."):
        update("add", {"is_public": 1}, staging)
    with pytest.raises(InvalidRequest, match="must not contain the NUL"):
        update("add", {"docstring": "\x00"}, staging)


# --- rollback and staged pickles -------------------------------------------------------------


def test_rollback_takes_a_whole_number() -> None:
    assert parse_rollback({"version": 2}) == 2
    for body in ({}, {"version": "2"}, {"version": True}, {"version": 1.0}, {"v": 1}):
        with pytest.raises(InvalidRequest, match="Send"):
            parse_rollback(body)


def test_read_staged_hashes_the_pickle(tmp_path: Path) -> None:
    (tmp_path / PICKLE_FILE).write_bytes(b"pickled")
    assert read_staged(tmp_path) == (hashlib.sha256(b"pickled").hexdigest(), b"pickled")
    with pytest.raises(InvalidRequest, match="error adding endpoint") as caught:
        read_staged(tmp_path / "missing")
    assert caught.value.info.startswith("FileNotFoundError : ")
