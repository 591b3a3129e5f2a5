"""``GET /openapi.json``: in step with the route table, and true to the server's configuration.

The live checks (every response of a running server matches the document) are the fuzz test,
``tests/integration/test_openapi_fuzz.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from tabpy.config import Settings, load_settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.security.authenticator import build_authenticator
from tabpy.server.app import api_routes, create_app
from tabpy.server.context import ServerContext
from tabpy.server.openapi import OPENAPI_PATH, openapi_document

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
INFO = ServiceInfo("TabPy Server", "", "0", "", "", "", "")


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    return dataclasses.replace(settings, **changes)


def context_for(settings: Settings, info: ServiceInfo = INFO) -> ServerContext:
    # The route table needs no pool or catalog until a request reaches them.
    return ServerContext(
        settings, info, pool=None, catalog=None, auth=build_authenticator(settings)
    )  # type: ignore[arg-type]


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def routed(context: ServerContext) -> set[tuple[str, str]]:
    """(path, method) of every Route; HEAD only where Starlette adds it to a GET."""
    found = set()
    for route in api_routes(context):
        if isinstance(route, Route):
            methods = set(route.methods or ())
            if "GET" in methods:
                methods.discard("HEAD")
            found |= {(route.path, method) for method in methods}
    return found


@pytest.mark.parametrize(
    "changes",
    [{}, {"arrow_enabled": True}, {"evaluate_enabled": False}, {"health_checks_public": True}],
)
def test_every_route_is_documented_with_its_methods_and_nothing_else(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    context = context_for(settings_for(tmp_path, **changes))
    document = openapi_document(context.settings, context.service_info)
    routes = routed(context)
    assert ("/openapi.json", "GET") in routes and ("/query/{name}", "OPTIONS") in routes
    assert documented(document) == routes


def test_the_route_serves_the_document_of_the_running_configuration(tmp_path: Path) -> None:
    context = context_for(settings_for(tmp_path))
    client = TestClient(create_app(context))
    response = client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(
        json.dumps(openapi_document(context.settings, context.service_info))
    )
    assert response.json()["openapi"] == "3.1.0"


def test_every_reference_resolves(tmp_path: Path) -> None:
    document = openapi_document(settings_for(tmp_path, pwd_file=tmp_path), INFO)
    references = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                references.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert len(references) > 50
    for reference in set(references):
        node: Any = document
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, reference
            node = node[part]


def test_operation_ids_are_unique(tmp_path: Path) -> None:
    document = openapi_document(settings_for(tmp_path), INFO)
    ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids)) == len(documented(document))


# --- security, as configured ---------------------------------------------------------------------


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_without_authentication_credentials_get_406(tmp_path: Path) -> None:
    document = openapi_document(settings_for(tmp_path), INFO)
    assert "securitySchemes" not in document["components"]
    assert "security" not in document
    ops = operations(document)
    assert "406" in ops["/evaluate", "post"]["responses"]
    assert "401" not in ops["/evaluate", "post"]["responses"]
    # Preflights never look at credentials.
    assert "406" not in ops["/evaluate", "options"]["responses"]
    assert "406" in ops["/query/{name}", "options"]["responses"]


def test_a_password_file_means_basic_on_every_route_but_preflights(tmp_path: Path) -> None:
    document = openapi_document(settings_for(tmp_path, pwd_file=tmp_path / "pwd"), INFO)
    assert document["components"]["securitySchemes"] == {
        "basicAuth": {
            "type": "http",
            "scheme": "basic",
            "description": "A user of the password file (TABPY_PWD_FILE).",
        }
    }
    assert document["security"] == [{"basicAuth": []}]
    for (path, method), operation in operations(document).items():
        responses = operation["responses"]
        if method == "options" and path != "/query/{name}":
            assert operation["security"] == [], path
            assert "401" not in responses
        else:
            assert "security" not in operation, (path, method)
            assert responses["401"] == {"$ref": "#/components/responses/Unauthorized"}
            assert responses["429"] == {"$ref": "#/components/responses/TooManyFailures"}
            assert "406" not in responses
    throttled = document["components"]["responses"]["TooManyFailures"]
    assert throttled["headers"]["Retry-After"]["required"] is True
    unavailable = document["components"]["responses"]["ServiceUnavailable"]
    assert unavailable["headers"]["Retry-After"]["required"] is False


def test_no_429_without_a_failure_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, pwd_file=tmp_path / "pwd", auth_max_failures=0)
    for operation in operations(openapi_document(settings, INFO)).values():
        assert "429" not in operation["responses"]


def test_public_probes_need_no_credentials(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, pwd_file=tmp_path / "pwd", health_checks_public=True)
    ops = operations(openapi_document(settings, INFO))
    for path in ("/health", "/ready"):
        assert ops[path, "get"]["security"] == []
        assert "401" not in ops[path, "get"]["responses"]
    assert "security" not in ops["/metrics", "get"]


def test_oauth_with_endpoint_scopes_names_each_operations_scope(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        pwd_file=tmp_path / "pwd",
        oauth_enabled=True,
        oauth_enforce_endpoint_scopes=True,
    )
    document = openapi_document(settings, INFO)
    assert document["components"]["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"
    assert document["security"] == [{"basicAuth": []}, {"bearerAuth": []}]
    ops = operations(document)
    evaluate = ops["/evaluate", "post"]
    assert evaluate["security"] == [
        {"basicAuth": []},
        {"bearerAuth": [settings.oauth_evaluate_scope]},
    ]
    assert evaluate["responses"]["403"] == {"$ref": "#/components/responses/InsufficientScope"}
    assert ops["/endpoints", "post"]["security"][1] == {"bearerAuth": [settings.oauth_deploy_scope]}
    assert ops["/query/{name}", "post"]["security"][1] == {
        "bearerAuth": [settings.oauth_query_scope]
    }
    # Reading the endpoint list needs no endpoint scope.
    assert "security" not in ops["/endpoints", "get"]
    assert "403" not in ops["/endpoints", "get"]["responses"]


# --- bodies and content types --------------------------------------------------------------------


def test_content_types_are_the_ones_each_route_sends(tmp_path: Path) -> None:
    ops = operations(openapi_document(settings_for(tmp_path), INFO))

    def success_types(path: str, method: str) -> set[str]:
        responses = ops[path, method]["responses"]
        return {
            t for status, r in responses.items() if status < "300" for t in r.get("content", {})
        }

    utf8 = "application/json; charset=UTF-8"
    assert success_types("/query/{name}", "post") == {utf8}
    assert success_types("/endpoints", "post") == {utf8}
    assert success_types("/endpoints/{name}", "put") == {utf8}
    assert success_types("/configurations/endpoint_upload_destination", "get") == {utf8}
    assert success_types("/evaluate", "options") == {utf8}
    assert success_types("/evaluate", "post") == {"application/json"}
    assert success_types("/endpoints", "get") == {"application/json"}
    assert success_types("/info", "get") == {"application/json"}
    assert success_types("/", "get") == {"text/html; charset=utf-8"}
    # Errors are always plain application/json.
    for (path, method), operation in ops.items():
        for status, reply in operation["responses"].items():
            if status >= "400" and "content" in reply:
                assert set(reply["content"]) == {"application/json"}, (path, method, status)


def test_evaluate_body_follows_the_configuration(tmp_path: Path) -> None:
    plain = openapi_document(settings_for(tmp_path), INFO)
    body = plain["paths"]["/evaluate"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EvaluateRequest"}
    request = plain["components"]["schemas"]["EvaluateRequest"]
    assert request["required"] == ["script", "data"]
    assert request["properties"]["data"]["propertyNames"] == {"pattern": "^_arg[1-9][0-9]*$"}

    arrow = openapi_document(settings_for(tmp_path, arrow_enabled=True), INFO)
    body = arrow["paths"]["/evaluate"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/TableRequest"} in body["schema"]["anyOf"]
    assert arrow["components"]["schemas"]["TableRequest"]["required"] == ["script", "dataPath"]

    disabled = openapi_document(settings_for(tmp_path, evaluate_enabled=False), INFO)
    responses = disabled["paths"]["/evaluate"]["post"]["responses"]
    assert "200" not in responses and "404" in responses


def test_size_and_timeout_limits_are_stated(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    document = openapi_document(settings, INFO)
    shared = document["components"]["responses"]
    assert str(settings.max_request_size_bytes) in shared["PayloadTooLarge"]["description"]
    assert f"({settings.evaluate_timeout_text} s)" in shared["ScriptTimeout"]["description"]
    ops = operations(document)
    assert ops["/evaluate", "post"]["responses"]["408"] == {
        "$ref": "#/components/responses/ScriptTimeout"
    }
    for (path, method), operation in ops.items():
        has_body = "requestBody" in operation
        assert ("413" in operation["responses"]) == has_body, (path, method)


def test_the_subdirectory_is_the_server_url(tmp_path: Path) -> None:
    info = dataclasses.replace(INFO, subdirectory="analytics.v1")
    document = openapi_document(settings_for(tmp_path), info)
    assert document["servers"] == [{"url": "/analytics.v1"}]
    assert openapi_document(settings_for(tmp_path), INFO)["servers"] == [{"url": "/"}]


def test_cors_headers_are_documented_on_cors_routes(tmp_path: Path) -> None:
    info = dataclasses.replace(INFO, cors_allow_origin="https://tableau.example.com")
    ops = operations(openapi_document(settings_for(tmp_path), info))
    expected = {"Access-Control-Allow-Origin": {"schema": {"const": "https://tableau.example.com"}}}
    assert ops["/info", "get"]["responses"]["200"]["headers"] == expected
    assert ops["/evaluate", "options"]["responses"]["200"]["headers"] == expected
    assert "headers" not in ops["/endpoints", "post"]["responses"]["201"]
