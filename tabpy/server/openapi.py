"""``GET /openapi.json``: an OpenAPI 3.1 description of this server's HTTP API, as configured.

For client generators and API gateways. The document describes the running server rather
than every possible one: the security schemes are the ones it accepts (HTTP Basic with a
password file, bearer JWTs with OAuth, none without either), ``dataPath`` appears only with
Arrow, the health probes are open only with ``TABPY_HEALTH_CHECKS_PUBLIC``, and the paths sit
under the ``Subdirectory`` of ``state.ini`` (``servers``). It is built once at start-up.

The route table (:func:`tabpy.server.app.api_routes`) and the operations of
:mod:`tabpy.server.openapi_operations` must list the same paths and methods;
``tests/unit/test_openapi.py`` keeps them in step. Every ``GET`` also answers ``HEAD``, which
is not listed.

Content types are exact: some routes answer ``application/json`` and others
``application/json; charset=UTF-8``, as TabPy does, and clients may compare the header.
"""

from __future__ import annotations

import copy
import json

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.config import Settings
from tabpy.registry.service_info import ServiceInfo
from tabpy.security.oauth import endpoint_scope
from tabpy.server.cors import cors_headers
from tabpy.server.openapi_operations import (
    OPENAPI_PATH,
    OPERATIONS,
    PATH_PARAMETERS,
    Object,
    Operation,
    bad_body,
    error,
    ref,
)
from tabpy.server.openapi_schemas import component_schemas
from tabpy.server.responses import JSON, RawResponse

__all__ = ["OPENAPI_PATH", "OpenAPI", "openapi_document"]


# --- the document -----------------------------------------------------------------------------


def openapi_document(settings: Settings, service_info: ServiceInfo) -> Object:
    """The OpenAPI document of a server with these settings and ``state.ini`` values."""
    schemes = _security_schemes(settings)
    paths: dict[str, Object] = {}
    for operation in OPERATIONS:
        item = paths.setdefault(operation.path, {})
        parameters = [p for name, p in PATH_PARAMETERS.items() if name in operation.path]
        if parameters:
            item["parameters"] = parameters
        item[operation.method] = _operation(operation, settings, service_info, schemes)
    components: Object = {
        "schemas": component_schemas(),
        "responses": _shared_responses(settings),
    }
    if schemes:
        components["securitySchemes"] = schemes
    document: Object = {
        "openapi": "3.1.0",
        "info": {
            "title": service_info.name or "TabPy Server",
            "version": __version__,
            "description": _description(settings),
        },
        "servers": [{"url": _server_url(service_info)}],
        "tags": [
            {"name": "scripts", "description": "Running scripts and deployed endpoints."},
            {"name": "endpoints", "description": "Deploying and managing endpoints."},
            {"name": "server", "description": "The server itself."},
            {"name": "cors", "description": "CORS preflights."},
        ],
        "paths": paths,
        "components": components,
    }
    if schemes:
        document["security"] = [{name: []} for name in schemes]
    return document


def _operation(
    operation: Operation, settings: Settings, info: ServiceInfo, schemes: Object
) -> Object:
    # A copy: the tables above are shared by every document built.
    responses = copy.deepcopy(operation.responses(settings))
    if operation.request_body is not None and "400" not in responses:
        responses["400"] = bad_body()
    if operation.request_body is not None:
        responses["413"] = ref("responses", "PayloadTooLarge")
    cors = cors_headers(info) if operation.cors else {}
    if cors:
        headers = {name: {"schema": {"const": value}} for name, value in cors.items()}
        for status, reply in responses.items():
            if status.startswith("2") and "$ref" not in reply:
                reply["headers"] = headers
    checked = _checked(operation, settings)
    protected = checked and bool(schemes)
    if protected:
        responses.update(_refusals(operation, settings))
    elif checked:
        responses["406"] = ref("responses", "CredentialsNotExpected")
    responses.setdefault("408", ref("responses", "HeadTimeout"))
    responses.setdefault("503", ref("responses", "ServiceUnavailable"))
    responses["414"] = ref("responses", "URITooLong")
    responses["431"] = ref("responses", "HeadTooLarge")
    body: Object = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": dict(sorted(responses.items())),
    }
    if operation.request_body is not None:
        body["requestBody"] = operation.request_body(settings)
    if operation.query:
        body["parameters"] = list(operation.query)
    if schemes and not protected:
        body["security"] = []
    elif protected and "bearerAuth" in schemes:
        scope = _scope(operation, settings)
        if scope is not None:
            body["security"] = [{name: [scope] if name == "bearerAuth" else []} for name in schemes]
    return body


def _checked(operation: Operation, settings: Settings) -> bool:
    """Whether the authenticator sees the operation's requests (``AuthMiddleware``)."""
    if operation.method == "options":
        return operation.path.startswith("/query/")
    return not (operation.probe and settings.health_checks_public)


def _scope(operation: Operation, settings: Settings) -> str | None:
    if not (settings.oauth_enabled and settings.oauth_enforce_endpoint_scopes):
        return None
    return endpoint_scope(operation.path, operation.method, settings)


def _refusals(operation: Operation, settings: Settings) -> Object:
    refusals: Object = {"401": ref("responses", "Unauthorized")}
    if settings.auth_max_failures > 0:
        refusals["429"] = ref("responses", "TooManyFailures")
    if _scope(operation, settings) is not None:
        refusals["403"] = ref("responses", "InsufficientScope")
    return refusals


def _security_schemes(settings: Settings) -> Object:
    schemes: Object = {}
    if settings.pwd_file is not None:
        schemes["basicAuth"] = {
            "type": "http",
            "scheme": "basic",
            "description": "A user of the password file (TABPY_PWD_FILE).",
        }
    if settings.oauth_enabled:
        scopes = ""
        if settings.oauth_enforce_endpoint_scopes:
            scopes = (
                " Each operation names the endpoint scope the token needs: "
                f"`{settings.oauth_query_scope}`, `{settings.oauth_evaluate_scope}` or "
                f"`{settings.oauth_deploy_scope}`."
            )
        schemes["bearerAuth"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT from the configured issuer (TABPY_OAUTH_ISSUER)." + scopes,
        }
    return schemes


def _shared_responses(settings: Settings) -> Object:
    limit = settings.max_request_size_bytes
    retry_after = {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
    responses: Object = {
        "PayloadTooLarge": error(
            f"The body is larger than TABPY_MAX_REQUEST_SIZE_MB ({limit} bytes), before or "
            "after gzip decompression."
        ),
        "ScriptTimeout": error(
            "The script ran longer than TABPY_EVALUATE_TIMEOUT "
            f"({settings.evaluate_timeout_text} s) and its worker was replaced; or the request "
            "head did not arrive in time."
        ),
        "HeadTimeout": error("The request line and headers did not arrive in time."),
        "URITooLong": error("The request line is longer than the limit (64 KiB by default)."),
        "HeadTooLarge": error("The request line and headers are larger than the limit."),
        "ServiceUnavailable": {
            **error(
                "The server cannot take this request now (too many open connections, or a "
                "dependency is unavailable). `Retry-After`, when sent, says when to try again."
            ),
            "headers": {"Retry-After": {**retry_after, "required": False}},
        },
        "CredentialsNotExpected": error(
            "Basic credentials were sent, but this server has no authentication."
        ),
        "Unauthorized": {
            **error("Credentials are missing or wrong (the same answer for every reason)."),
            "headers": {
                "WWW-Authenticate": {
                    "required": True,
                    "description": "The scheme to use, with the server's name as the realm.",
                    "schema": {"type": "string"},
                }
            },
        },
        "InsufficientScope": {
            **error("The token lacks the operation's endpoint scope."),
            "headers": {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "insufficient_scope"},
                }
            },
        },
        "TooManyFailures": {
            **error(
                f"Too many failed logins from this client within a minute "
                f"({settings.auth_max_failures} per user name, TABPY_AUTH_MAX_FAILURES); "
                "credentials that worked recently are still accepted."
            ),
            "headers": {"Retry-After": {**retry_after, "required": True}},
        },
    }
    return responses


def _server_url(info: ServiceInfo) -> str:
    prefix = info.subdirectory.strip("/")
    return f"/{prefix}" if prefix else "/"


def _description(settings: Settings) -> str:
    parts = [
        "The HTTP API of this analytics-extension server, compatible with TabPy 2.16. Every "
        'error is a JSON envelope `{"message": ..., "info": ...}`; unknown paths and '
        "methods get TabPy's small HTML page (404, 405). Every GET also answers HEAD.",
    ]
    if settings.pwd_file is None and not settings.oauth_enabled:
        parts.append("This server has no authentication.")
    return " ".join(parts)


class OpenAPI:
    """The route: the document, encoded once (settings do not change while the server runs)."""

    def __init__(self, settings: Settings, service_info: ServiceInfo) -> None:
        self.body = json.dumps(openapi_document(settings, service_info)).encode("ascii")

    async def handle(self, request: Request) -> Response:
        return RawResponse(self.body, 200, JSON)
