"""The operations ``GET /openapi.json`` describes: one entry per method of each route.

Each :class:`Operation` holds what is particular to it (summary, request body, its own
replies); :mod:`tabpy.server.openapi` adds what every operation shares (authentication
refusals, 413, the HTTP edge's 408/414/431/503) and assembles the document. Bodies and
replies refer to the named schemas of :mod:`tabpy.server.openapi_schemas`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tabpy.config import Settings
from tabpy.errors import SCRIPT_ERROR
from tabpy.server.openapi_schemas import SHA256_PATTERN
from tabpy.server.responses import JSON, JSON_UTF8

__all__ = ["OPENAPI_PATH", "OPERATIONS", "PATH_PARAMETERS", "Operation", "bad_body", "error", "ref"]

#: Where the document is served (a route like any other, so it needs credentials too).
OPENAPI_PATH = "/openapi.json"

Object = dict[str, Any]

_HTML = "text/html; charset=utf-8"
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def ref(kind: str, name: str) -> Object:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: str | Object, media_type: str = JSON) -> Object:
    return {media_type: {"schema": ref("schemas", schema) if isinstance(schema, str) else schema}}


def _reply(description: str, content: Object | None = None) -> Object:
    reply: Object = {"description": description}
    if content is not None:
        reply["content"] = content
    return reply


def error(description: str, schema: str | Object = "Error") -> Object:
    return _reply(description, _json(schema))


def _body(schema: str, description: str, media_type: str = JSON) -> Object:
    return {"required": True, "description": description, "content": _json(schema, media_type)}


# --- the operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One method of one route: its own replies; the shared refusals are added by the builder.

    ``responses`` and ``request_body`` build their part for a configuration; an operation with
    a request body can also answer 400 and 413. ``cors`` routes send the configured CORS
    headers; ``probe`` routes are opened by ``TABPY_HEALTH_CHECKS_PUBLIC``.
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
    #: Its query parameters (OpenAPI parameter objects).
    query: tuple[Object, ...] = ()


def bad_body(extra: str = "") -> Object:
    return error(
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

PATH_PARAMETERS = {"{name}": _NAME, "{sha256}": _SHA256}


def _query_responses(settings: Settings) -> Object:
    return {
        "200": _reply("What the endpoint returned.", _json("QueryReply", JSON_UTF8)),
        "400": error(
            "The body is empty, not JSON, or not an object with `data` (or `method`); or "
            "`data` is neither an array nor an object.",
            {"anyOf": [ref("schemas", "Error"), ref("schemas", "QueryFailed")]},
        ),
        "404": error("No endpoint has this name (`UnknownURI`)."),
        "408": ref("responses", "ScriptTimeout"),
        "500": error(
            "The endpoint could not be loaded or raised an exception (`Error querying "
            f"function '<name>'`), or its worker died (`{SCRIPT_ERROR}`).",
            {"anyOf": [ref("schemas", "QueryFailed"), ref("schemas", "ScriptError")]},
        ),
    }


def _query_body(settings: Settings) -> Object:
    return _body("QueryRequest", "The endpoint's arguments." + _gzip_note(settings))


def _evaluate_responses(settings: Settings) -> Object:
    if not settings.evaluate_enabled:
        return {"404": error("Ad-hoc scripts are disabled on this server (TABPY_EVALUATE_ENABLE).")}
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
        "400": error(
            "`Script is empty.` (no `script` key), or `data` is not an object of `_arg1` ... "
            "`_argN`" + (", or `dataPath` is not a string." if settings.arrow_enabled else ".")
        ),
        "404": error(
            f"`{SCRIPT_ERROR}`: a `tabpy.query(...)` call inside the script found no answer."
        ),
        "408": ref("responses", "ScriptTimeout"),
        "500": error(
            f"`{SCRIPT_ERROR}`: the body is not JSON, `script` is not a string, `data` is "
            "missing, or the script raised (`info` is `<ExceptionClass> : <message>`), or its "
            "worker died or ran out of memory.",
            "ScriptError",
        ),
    }


def _evaluate_body(settings: Settings) -> Object:
    if settings.arrow_enabled:
        schema: Object = {
            "anyOf": [ref("schemas", "EvaluateRequest"), ref("schemas", "TableRequest")]
        }
        what = "A script and its arguments, or a script and the `dataPath` of a stored table."
    else:
        schema = ref("schemas", "EvaluateRequest")
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


_NOT_DEPLOYED = error("No endpoint has this name.")
_NO_ENVIRONMENTS = error(
    "The body has `requirements`, but this server cannot build environments (uv, from the envs "
    "extra, is not installed); `message` names the fix. Nothing was deployed."
)
_ADMINS_ONLY = error("The caller is not an admin (with TABPY_AUTHZ on); `message` says so.")
_NAMES: Object = {"type": "array", "items": {"type": "string"}}
_ACCESS: Object = {
    "type": "object",
    "properties": {"owners": _NAMES, "callers": _NAMES},
    "required": ["owners", "callers"],
}
_GRANTS: Object = {
    "type": "object",
    "properties": {
        "authz": {"type": "boolean"},
        "principals": {"type": "object", "additionalProperties": _NAMES},
    },
    "required": ["authz", "principals"],
}
_GRANT_REQUEST: Object = {
    "type": "object",
    "properties": {
        "principal": {"type": "string", "description": "A user name, or group:<name>."},
        "role": {"type": "string", "enum": ["admin", "deployer", "caller", "evaluator"]},
    },
    "required": ["principal", "role"],
}
_GRANT: Object = {
    "type": "object",
    "properties": {
        "principal": {"type": "string"},
        "roles": _NAMES,
        "changed": {"type": "boolean"},
    },
    "required": ["principal", "roles", "changed"],
}
_AUDIT_PAGE: Object = {
    "type": "object",
    "properties": {
        "entries": {"type": "array", "items": {"type": "object"}},
        "next": {"type": ["integer", "null"]},
    },
    "required": ["entries", "next"],
}
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
        "Load status of every endpoint (with members=1: on every member of the fleet)",
        _constant(
            {
                "200": _reply(
                    "Endpoint name to its load status here (TabPy's body); with `members=1`, "
                    "that body under `endpoints` and each live member's own load status.",
                    _json(
                        {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "additionalProperties": ref("schemas", "LoadState"),
                                },
                                ref("schemas", "FleetStatus"),
                            ]
                        }
                    ),
                )
            }
        ),
        tag="server",
        cors=True,
        query=(
            {
                "name": "members",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "examples": ["1"]},
                "description": "Any value but 0, false or no: add every live member's load "
                "status (read from the registry; 503 while it cannot be read).",
            },
        ),
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
                "400": bad_body(
                    " Also: the name is taken, invalid or too long, or the object was never "
                    "uploaded, or `src_path` is outside the upload destination."
                ),
                "501": _NO_ENVIRONMENTS,
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
                "400": bad_body(" Also: `name` is missing or not a string."),
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
                "404": error("No endpoint has this name (`Unknown endpoint`)."),
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
                "400": bad_body(
                    " Also: the object was never uploaded, or `src_path` is outside the upload "
                    "destination."
                ),
                "404": _NOT_DEPLOYED,
                "501": _NO_ENVIRONMENTS,
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
                    _json({"type": "array", "items": ref("schemas", "VersionInfo")}),
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
                "400": bad_body(" Also: `version` is missing or not an integer."),
                "404": error("No endpoint has this name, or it never had this version."),
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
                "400": error(
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
        "Readiness: a worker is ready and the endpoints are loaded (a registry outage only "
        "degrades it); 503 while draining",
        _constant(
            {
                "200": _reply("Ready, or degraded (`status` says which).", _json("Readiness")),
                "503": _reply(
                    "Not ready (`reasons` says why), or too many open connections.",
                    _json({"anyOf": [ref("schemas", "Readiness"), ref("schemas", "Error")]}),
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
        "/endpoints/{name}/access",
        "get",
        "getEndpointAccess",
        "Who owns an endpoint and who may query it (no callers: everyone may)",
        _constant(
            {
                "200": _reply("Owners and callers.", _json(_ACCESS)),
                "404": _NOT_DEPLOYED,
            }
        ),
    ),
    Operation(
        "/admin/principals",
        "get",
        "listPrincipals",
        "Role grants, and whether roles are enforced (TABPY_AUTHZ)",
        _constant({"200": _reply("The grants.", _json(_GRANTS)), "403": _ADMINS_ONLY}),
        tag="admin",
    ),
    Operation(
        "/admin/principals",
        "post",
        "grantRole",
        "Grant a role to a user or group:<name>",
        _constant(
            {"200": _reply("The principal's roles now.", _json(_GRANT)), "403": _ADMINS_ONLY}
        ),
        lambda settings: {
            "required": True,
            "description": "Who and which role.",
            "content": _json(_GRANT_REQUEST),
        },
        tag="admin",
    ),
    Operation(
        "/admin/principals",
        "delete",
        "revokeRole",
        "Revoke a role (the last admin grant cannot be revoked)",
        _constant(
            {"200": _reply("The principal's roles now.", _json(_GRANT)), "403": _ADMINS_ONLY}
        ),
        lambda settings: {
            "required": True,
            "description": "Who and which role.",
            "content": _json(_GRANT_REQUEST),
        },
        tag="admin",
    ),
    Operation(
        "/admin/audit",
        "get",
        "listAudit",
        "The audit trail, newest first (filters: principal, endpoint, action, outcome, since, "
        "until; paging: limit, before)",
        _constant(
            {
                "200": _reply(
                    "One page of entries; `next` is the `before` of the next page.",
                    _json(_AUDIT_PAGE),
                ),
                "400": error("A filter or paging value is not valid; `message` says which."),
                "403": _ADMINS_ONLY,
            }
        ),
        tag="admin",
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
