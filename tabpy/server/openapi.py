"""``GET /openapi.json``: an OpenAPI 3.1 description of this server's HTTP API, as configured.

For client generators and API gateways. The document describes the running server rather
than every possible one: the security schemes are the ones it accepts (HTTP Basic with a
password file, bearer JWTs with OAuth, none without either), ``dataPath`` appears only with
Arrow, the health probes are open only with ``TABPY_HEALTH_CHECKS_PUBLIC``, and the paths sit
under the ``Subdirectory`` of ``state.ini`` (``servers``). It is built once at start-up.

The route table (:func:`tabpy.server.app.api_routes`) and :data:`OPERATIONS` must list the same
paths and methods; ``tests/unit/test_openapi.py`` keeps them in step. Every ``GET`` also
answers ``HEAD``, which is not listed.

Content types are exact: some routes answer ``application/json`` and others
``application/json; charset=UTF-8``, as TabPy does, and clients may compare the header.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.config import Settings
from tabpy.errors import SCRIPT_ERROR
from tabpy.registry.service_info import ServiceInfo
from tabpy.security.oauth import endpoint_scope
from tabpy.server.cors import cors_headers
from tabpy.server.openapi_schemas import SHA256_PATTERN, component_schemas
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse

__all__ = ["OPENAPI_PATH", "OPERATIONS", "OpenAPI", "openapi_document"]

OPENAPI_PATH = "/openapi.json"

Object = dict[str, Any]

_HTML = "text/html; charset=utf-8"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _ref(kind: str, name: str) -> Object:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: str | Object, media_type: str = JSON) -> Object:
    return {media_type: {"schema": _ref("schemas", schema) if isinstance(schema, str) else schema}}


def _reply(description: str, content: Object | None = None) -> Object:
    reply: Object = {"description": description}
    if content is not None:
        reply["content"] = content
    return reply


def _error(description: str, schema: str | Object = "Error") -> Object:
    return _reply(description, _json(schema))


def _body(schema: str, description: str, media_type: str = JSON) -> Object:
    return {"required": True, "description": description, "content": _json(schema, media_type)}


# --- the operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One method of one route: its own replies; the shared refusals are added by the builder.

    ``body`` is a request body (``"json"`` for a JSON object route, ``"raw"`` for bytes) or
    None; it decides whether 400 and 413 can happen.
    """

    path: str
    method: str
    operation_id: str
    summary: str
    responses: Callable[[Settings], Object]
    request_body: Callable[[Settings], Object] | None = None
    tag: str = "endpoints"
    cors: bool = False
    probe: bool = False


def _bad_body(extra: str = "") -> Object:
    return _error(
        "The body is not what the route accepts (not JSON, not an object, empty, a field of "
        f"the wrong type, or corrupt gzip); `message` says which.{extra}"
    )


_NAME: Object = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The endpoint's name.",
}
_SHA256: Object = {
    "name": "sha256",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": SHA256_PATTERN},
    "description": "The SHA-256 of the body, 64 lowercase hex digits.",
}

_PATH_PARAMETERS = {"{name}": _NAME, "{sha256}": _SHA256}


def _query_responses(settings: Settings) -> Object:
    return {
        "200": _reply("What the endpoint returned.", _json("QueryReply", JSON_UTF8)),
        "400": _error(
            "The body is empty, not JSON, or not an object with `data` (or `method`); or "
            "`data` is neither an array nor an object.",
            {"anyOf": [_ref("schemas", "Error"), _ref("schemas", "QueryFailed")]},
        ),
        "404": _error("No endpoint has this name (`UnknownURI`)."),
        "408": _ref("responses", "ScriptTimeout"),
        "500": _error(
            "The endpoint could not be loaded or raised an exception (`Error querying "
            f"function '<name>'`), or its worker died (`{SCRIPT_ERROR}`).",
            {"anyOf": [_ref("schemas", "QueryFailed"), _ref("schemas", "ScriptError")]},
        ),
    }


def _query_body(settings: Settings) -> Object:
    return _body("QueryRequest", "The endpoint's arguments." + _gzip_note(settings))


def _evaluate_responses(settings: Settings) -> Object:
    if not settings.evaluate_enabled:
        return {
            "404": _error("Ad-hoc scripts are disabled on this server (TABPY_EVALUATE_ENABLE).")
        }
    return {
        "200": _reply(
            "The script's result as JSON (NaN and infinities as null)"
            + (
                ', or `{"outputDataPath": ...}` for a `dataPath` request.'
                if settings.arrow_enabled
                else "."
            ),
            _json("Any"),
        ),
        "400": _error(
            "`Script is empty.` (no `script` key), or `data` is not an object of `_arg1` ... "
            "`_argN`" + (", or `dataPath` is not a string." if settings.arrow_enabled else ".")
        ),
        "404": _error(
            f"`{SCRIPT_ERROR}`: a `tabpy.query(...)` call inside the script found no answer."
        ),
        "408": _ref("responses", "ScriptTimeout"),
        "500": _error(
            f"`{SCRIPT_ERROR}`: the body is not JSON, `script` is not a string, `data` is "
            "missing, or the script raised (`info` is `<ExceptionClass> : <message>`), or its "
            "worker died or ran out of memory.",
            "ScriptError",
        ),
    }


def _evaluate_body(settings: Settings) -> Object:
    if settings.arrow_enabled:
        schema: Object = {
            "anyOf": [_ref("schemas", "EvaluateRequest"), _ref("schemas", "TableRequest")]
        }
        what = "A script and its arguments, or a script and the `dataPath` of a stored table."
    else:
        schema = _ref("schemas", "EvaluateRequest")
        what = "A script and its arguments."
    return {
        "required": True,
        "description": what + _gzip_note(settings),
        "content": {JSON: {"schema": schema}},
    }


def _gzip_note(settings: Settings) -> str:
    if not settings.gzip_enabled:
        return ""
    return " May be sent gzip-compressed with `Content-Encoding: gzip`."


def _constant(reply: Object) -> Callable[[Settings], Object]:
    return lambda settings: reply


def _deployed(status: str, what: str) -> Object:
    return {status: _reply(what, _json("Endpoints", JSON_UTF8))}


_NOT_DEPLOYED = _error("No endpoint has this name.")
_PREFLIGHT = _reply("An empty object, with the route's CORS headers if configured.")

#: Every operation of the route table, in its order.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "/query/{name}",
        "post",
        "queryEndpoint",
        "Call a deployed endpoint",
        _query_responses,
        _query_body,
        tag="scripts",
        cors=True,
    ),
    Operation(
        "/query/{name}",
        "get",
        "queryEndpointWithGet",
        "Call a deployed endpoint (the body as with POST)",
        _query_responses,
        _query_body,
        tag="scripts",
        cors=True,
    ),
    Operation(
        "/status",
        "get",
        "getStatus",
        "Load status of every endpoint",
        _constant(
            {
                "200": _reply(
                    "Endpoint name to its load status.",
                    _json({"type": "object", "additionalProperties": _ref("schemas", "LoadState")}),
                )
            }
        ),
        tag="server",
        cors=True,
    ),
    Operation(
        "/info",
        "get",
        "getInfo",
        "What this server is and which features it has (Tableau's connection test)",
        _constant({"200": _reply("The server's description.", _json("Info"))}),
        tag="server",
        cors=True,
    ),
    Operation(
        "/endpoints",
        "get",
        "listEndpoints",
        "Every deployed endpoint",
        _constant({"200": _reply("Endpoint name to its description.", _json("Endpoints"))}),
        cors=True,
    ),
    Operation(
        "/endpoints",
        "post",
        "createEndpoint",
        "Deploy a new endpoint",
        _constant(
            {
                **_deployed("201", "Deployed; the new endpoint by its name."),
                "400": _bad_body(
                    " Also: the name is taken, invalid or too long, or the object was never "
                    "uploaded, or `src_path` is outside the upload destination."
                ),
            }
        ),
        lambda settings: _body("CreateRequest", "The new endpoint." + _gzip_note(settings)),
    ),
    Operation(
        "/endpoints",
        "delete",
        "deleteEndpointByBody",
        "Delete an endpoint named in the body (for names too long for a URL)",
        _constant(
            {
                "204": _reply("Deleted."),
                "400": _bad_body(" Also: `name` is missing or not a string."),
                "404": _NOT_DEPLOYED,
            }
        ),
        lambda settings: _body("DeleteRequest", "The endpoint to delete." + _gzip_note(settings)),
    ),
    Operation(
        "/endpoints/",
        "get",
        "listEndpointsSlash",
        "Every deployed endpoint (as `/endpoints`)",
        _constant({"200": _reply("Endpoint name to its description.", _json("Endpoints"))}),
        cors=True,
    ),
    Operation(
        "/endpoints/{name}",
        "get",
        "getEndpoint",
        "One deployed endpoint",
        _constant(
            {
                "200": _reply("The endpoint's description.", _json("EndpointInfo")),
                "404": _error("No endpoint has this name (`Unknown endpoint`)."),
            }
        ),
        cors=True,
    ),
    Operation(
        "/endpoints/{name}",
        "put",
        "updateEndpoint",
        "Change an endpoint's fields, or deploy a new version of it",
        _constant(
            {
                **_deployed("200", "Changed; the endpoint by its name."),
                "400": _bad_body(
                    " Also: the object was never uploaded, or `src_path` is outside the upload "
                    "destination."
                ),
                "404": _NOT_DEPLOYED,
            }
        ),
        lambda settings: _body("UpdateRequest", "The fields to change." + _gzip_note(settings)),
    ),
    Operation(
        "/endpoints/{name}",
        "delete",
        "deleteEndpoint",
        "Delete an endpoint and every version of it",
        _constant({"204": _reply("Deleted."), "404": _NOT_DEPLOYED}),
    ),
    Operation(
        "/endpoints/{name}/versions",
        "get",
        "listVersions",
        "Every version of an endpoint, oldest first",
        _constant(
            {
                "200": _reply(
                    "The versions; `current` marks the one served.",
                    _json({"type": "array", "items": _ref("schemas", "VersionInfo")}),
                ),
                "404": _NOT_DEPLOYED,
            }
        ),
    ),
    Operation(
        "/endpoints/{name}/rollback",
        "post",
        "rollbackEndpoint",
        "Serve an earlier version again, as a new version",
        _constant(
            {
                **_deployed("200", "Rolled back; the endpoint by its name."),
                "400": _bad_body(" Also: `version` is missing or not an integer."),
                "404": _error("No endpoint has this name, or it never had this version."),
            }
        ),
        lambda settings: _body("RollbackRequest", "The version to restore." + _gzip_note(settings)),
    ),
    Operation(
        "/evaluate",
        "post",
        "evaluate",
        "Run a Python script (what Tableau's SCRIPT_ functions call)",
        _evaluate_responses,
        _evaluate_body,
        tag="scripts",
        cors=True,
    ),
    Operation(
        "/configurations/endpoint_upload_destination",
        "get",
        "getUploadDestination",
        "The folder TabPy's client stages pickles in (`src_path`)",
        _constant(
            {"200": _reply("The folder on the server.", _json("UploadDestination", JSON_UTF8))}
        ),
    ),
    Operation(
        "/artifacts/{sha256}",
        "put",
        "uploadArtifact",
        "Upload a pickled object, named by its SHA-256, for a deploy's `artifact`",
        _constant(
            {
                "200": _reply("Already stored.", _json("Artifact", JSON_UTF8)),
                "201": _reply("Stored.", _json("Artifact", JSON_UTF8)),
                "400": _error(
                    "The path is not a SHA-256, the body's SHA-256 differs from it, or the gzip "
                    "body is corrupt."
                ),
            }
        ),
        lambda settings: {
            "required": True,
            "description": "The object's bytes." + _gzip_note(settings),
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    ),
    Operation(
        "/",
        "get",
        "getStatusPage",
        "The status page, for people",
        _constant({"200": _reply("An HTML page.", {_HTML: {"schema": {"type": "string"}}})}),
        tag="server",
    ),
    Operation(
        "/health",
        "get",
        "getHealth",
        "Liveness: the server process answers",
        _constant({"200": _reply("Alive.", _json("Health"))}),
        tag="server",
        probe=True,
    ),
    Operation(
        "/ready",
        "get",
        "getReadiness",
        "Readiness: a worker is ready and the registry answers",
        _constant(
            {
                "200": _reply("Ready.", _json("Readiness")),
                "503": _reply(
                    "Not ready (`reasons` says why), or too many open connections.",
                    _json({"anyOf": [_ref("schemas", "Readiness"), _ref("schemas", "Error")]}),
                ),
            }
        ),
        tag="server",
        probe=True,
    ),
    Operation(
        "/metrics",
        "get",
        "getMetrics",
        "Prometheus metrics (OpenMetrics when the Accept header asks for it)",
        _constant(
            {
                "200": _reply(
                    "The metrics.",
                    {
                        _PROMETHEUS: {"schema": {"type": "string"}},
                        _OPENMETRICS: {"schema": {"type": "string"}},
                    },
                )
            }
        ),
        tag="server",
    ),
    Operation(
        OPENAPI_PATH,
        "get",
        "getOpenAPI",
        "This document",
        _constant({"200": _reply("An OpenAPI 3.1 document.", _json({"type": "object"}))}),
        tag="server",
    ),
) + tuple(
    Operation(
        path,
        "options",
        f"preflight{index}",
        "CORS preflight" + ("" if path.startswith("/query/") else " (no credentials needed)"),
        _constant({"200": {**_PREFLIGHT, "content": _json("Empty", JSON_UTF8)}}),
        tag="cors",
        cors=True,
    )
    for index, path in enumerate(
        (
            "/query/{name}",
            "/status",
            "/info",
            "/endpoints",
            "/endpoints/{name}",
            "/evaluate",
            "/configurations/endpoint_upload_destination",
        ),
        start=1,
    )
)


# --- the document -----------------------------------------------------------------------------


def openapi_document(settings: Settings, service_info: ServiceInfo) -> Object:
    """The OpenAPI document of a server with these settings and ``state.ini`` values."""
    schemes = _security_schemes(settings)
    paths: dict[str, Object] = {}
    for operation in OPERATIONS:
        item = paths.setdefault(operation.path, {})
        parameters = [p for name, p in _PATH_PARAMETERS.items() if name in operation.path]
        if parameters:
            item["parameters"] = parameters
        item[operation.method] = _operation(operation, settings, service_info, schemes)
    components: Object = {
        "schemas": {**component_schemas(), "ScriptError": _script_error()},
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
        responses["400"] = _bad_body()
    if operation.request_body is not None:
        responses["413"] = _ref("responses", "PayloadTooLarge")
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
        responses["406"] = _ref("responses", "CredentialsNotExpected")
    responses.setdefault("408", _ref("responses", "HeadTimeout"))
    responses.setdefault("503", _ref("responses", "ServiceUnavailable"))
    responses["414"] = _ref("responses", "URITooLong")
    responses["431"] = _ref("responses", "HeadTooLarge")
    body: Object = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": dict(sorted(responses.items())),
    }
    if operation.request_body is not None:
        body["requestBody"] = operation.request_body(settings)
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
    refusals: Object = {"401": _ref("responses", "Unauthorized")}
    if settings.auth_max_failures > 0:
        refusals["429"] = _ref("responses", "TooManyFailures")
    if _scope(operation, settings) is not None:
        refusals["403"] = _ref("responses", "InsufficientScope")
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
        "PayloadTooLarge": _error(
            f"The body is larger than TABPY_MAX_REQUEST_SIZE_MB ({limit} bytes), before or "
            "after gzip decompression."
        ),
        "ScriptTimeout": _error(
            "The script ran longer than TABPY_EVALUATE_TIMEOUT "
            f"({settings.evaluate_timeout_text} s) and its worker was replaced; or the request "
            "head did not arrive in time."
        ),
        "HeadTimeout": _error("The request line and headers did not arrive in time."),
        "URITooLong": _error("The request line is longer than the limit (64 KiB by default)."),
        "HeadTooLarge": _error("The request line and headers are larger than the limit."),
        "ServiceUnavailable": {
            **_error(
                "The server cannot take this request now (too many open connections, or a "
                "dependency is unavailable). `Retry-After`, when sent, says when to try again."
            ),
            "headers": {"Retry-After": {**retry_after, "required": False}},
        },
        "CredentialsNotExpected": _error(
            "Basic credentials were sent, but this server has no authentication."
        ),
        "Unauthorized": {
            **_error("Credentials are missing or wrong (the same answer for every reason)."),
            "headers": {
                "WWW-Authenticate": {
                    "required": True,
                    "description": "The scheme to use, with the server's name as the realm.",
                    "schema": {"type": "string"},
                }
            },
        },
        "InsufficientScope": {
            **_error("The token lacks the operation's endpoint scope."),
            "headers": {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "insufficient_scope"},
                }
            },
        },
        "TooManyFailures": {
            **_error(
                f"{settings.auth_max_failures} failed logins as one user from this client "
                "within a minute (TABPY_AUTH_MAX_FAILURES); credentials that worked recently "
                "are still accepted."
            ),
            "headers": {"Retry-After": {**retry_after, "required": True}},
        },
    }
    return responses


def _script_error() -> Object:
    return {
        "type": "object",
        "properties": {
            "message": {"const": SCRIPT_ERROR},
            "info": {"type": ["string", "object"]},
        },
        "required": ["message", "info"],
        "additionalProperties": False,
        "description": "A failed script: `info` is `<ExceptionClass> : <message>`.",
    }


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
