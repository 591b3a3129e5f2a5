"""The JSON Schemas of the bodies in ``GET /openapi.json`` (OpenAPI 3.1, JSON Schema 2020-12).

Plain data, kept next to the rules they describe: the endpoint name and SHA-256 patterns and
lengths are the registry's own (:mod:`tabpy.registry.endpoint`), and the key order of each
reply is the order the server writes. Which of these a running server shows (``dataPath`` only
with Arrow, for example) is decided by :mod:`tabpy.server.openapi`.
"""

from __future__ import annotations

from typing import Any

from tabpy.environments.spec import (
    LOCK_FORMATS,
    MAX_REQUIREMENT_CHARS,
    MAX_REQUIREMENTS,
    MAX_TEXT_CHARS,
)
from tabpy.errors import SCRIPT_ERROR
from tabpy.registry.endpoint import MAX_NAME_LENGTH, MAX_TYPE_LENGTH

__all__ = ["ARG_NAME_PATTERN", "NAME_PATTERN", "SHA256_PATTERN", "component_schemas"]

#: ECMAScript forms of the registry's patterns (``-`` escaped: it is literal there).
NAME_PATTERN = r"^[a-zA-Z0-9\-_\s]+$"
SHA256_PATTERN = "^[0-9a-f]{64}$"
ARG_NAME_PATTERN = "^_arg[1-9][0-9]*$"

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string"}
_INTEGER: Schema = {"type": "integer"}
_ANY: Schema = {}


def _object(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object with exactly ``properties`` (all required unless ``required`` says)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _error() -> Schema:
    return {
        **_object(
            {
                "message": {"type": "string", "description": "What went wrong."},
                "info": {
                    "type": ["string", "object"],
                    "description": "What to change, or details (`{}` when there are none).",
                },
            }
        ),
        "description": "TabPy's error envelope, the body of every JSON error reply.",
    }


def _query_failed() -> Schema:
    return {
        **_object(
            {
                "message": {"type": "string", "pattern": "^Error querying function '"},
                "info": _object(
                    {
                        "uri": {"type": "string", "description": "The endpoint's name."},
                        "error": {
                            "type": "string",
                            "description": "`<ExceptionClass> : <message>` of the failure.",
                        },
                        "type": {"const": "QueryFailed"},
                    }
                ),
            }
        ),
        "description": "The error envelope of an endpoint that could not be loaded or called.",
    }


def _script_error() -> Schema:
    return {
        **_object({"message": {"const": SCRIPT_ERROR}, "info": {"type": ["string", "object"]}}),
        "description": "A failed script: `info` is `<ExceptionClass> : <message>`.",
    }


def _endpoint_info() -> Schema:
    return {
        **_object(
            {
                "description": _TEXT,
                "type": {"type": "string", "description": "`model`, `alias`, or another type."},
                "version": {**_INTEGER, "minimum": 1},
                "dependencies": {"type": "array"},
                "target": {"type": ["string", "null"], "description": "An alias's endpoint."},
                "creation_time": {**_INTEGER, "description": "Unix time, in seconds."},
                "last_modified_time": {**_INTEGER, "description": "Unix time, in seconds."},
                "schema": {"description": "The endpoint's argument and result schema, as sent."},
                "is_public": {"description": "As sent (`true` or `false` for new endpoints)."},
                "docstring": _TEXT,
                "requirements": _ref("Requirements"),
                "members_not_loaded": {
                    "type": "array",
                    "items": _TEXT,
                    "description": "Only in a deploy's, update's or rollback's answer, and only "
                    "when other instances share the registry: those that had not loaded this "
                    "version when the wait (TABPY_DEPLOY_WAIT_SECONDS) ended. Empty: all had.",
                },
            },
            required=[
                "description",
                "type",
                "version",
                "dependencies",
                "target",
                "creation_time",
                "last_modified_time",
                "schema",
                "is_public",
                "docstring",
            ],
        ),
        "description": "One deployed endpoint, as its last deploy described it. "
        "`requirements` is present only when the current version has its own environment.",
    }


def _requirements() -> Schema:
    return {
        "oneOf": [
            {
                "type": "array",
                "items": {
                    "type": "string",
                    "maxLength": MAX_REQUIREMENT_CHARS,
                    "pattern": "^[A-Za-z0-9][^\\n\\r\\u0000]*$",
                },
                "minItems": 1,
                "maxItems": MAX_REQUIREMENTS,
                "description": "Requirement strings, as pip and uv take them.",
            },
            _object(
                {
                    "lock": {
                        "type": "string",
                        "maxLength": MAX_TEXT_CHARS,
                        "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$",
                    },
                    "format": {"enum": list(LOCK_FORMATS)},
                }
            ),
        ],
        "description": "The version's own Python environment, built by the server with uv: "
        "requirement strings, or the text of a lock file and its format. Absent or null: "
        "the server's default environment.",
        "examples": [["scikit-learn==1.5.2", "numpy<2"]],
    }


def _environment_state() -> Schema:
    return _object(
        {
            "requirements": _ref("Requirements"),
            "phase": {
                "type": "string",
                "description": "`queued`, a build phase (`resolving requirements`, "
                "`creating the virtualenv`, `installing packages`, `installing the worker "
                "runtime`), `ready` or `failed`.",
            },
            "message": {"type": "string", "description": "While building: phase and time."},
            "key": {"type": "string", "description": "The built environment's content key."},
            "size_bytes": _INTEGER,
            "elapsed_seconds": {"type": "number"},
        },
        required=["requirements", "phase"],
    )


def _fleet_status() -> Schema:
    member = _object(
        {
            "instance_id": _TEXT,
            "http_url": _TEXT,
            "flight_url": {"type": ["string", "null"]},
            "version": _TEXT,
            "started_at": {"type": "number", "description": "Unix time, in seconds."},
            "heartbeat_age_seconds": {"type": "number", "minimum": 0},
            "catalog_revision": _INTEGER,
            "endpoints": {
                "type": "object",
                "additionalProperties": _object(
                    {
                        "version": _INTEGER,
                        "status": {"enum": ["LoadSuccessful", "LoadFailed", "LoadInProgress"]},
                    }
                ),
            },
        }
    )
    return {
        **_object(
            {
                "instance_id": {**_TEXT, "description": "The instance that answered."},
                "endpoints": {"type": "object", "additionalProperties": _ref("LoadState")},
                "members": {"type": "array", "items": member},
            }
        ),
        "description": "`GET /status?members=1`: the fleet's live members and what each loaded.",
    }


def _version_info() -> Schema:
    unknown_when_null = "Null when the version was recorded without it."
    return _object(
        {
            "version": {**_INTEGER, "minimum": 1},
            "artifact": {"type": "string", "description": "SHA-256 of the object (or empty)."},
            "size": {**_INTEGER, "minimum": 0, "description": "Bytes of the object."},
            "created_at": {**_INTEGER, "description": "Unix time, in seconds."},
            "description": {"type": ["string", "null"], "description": unknown_when_null},
            "docstring": {"type": ["string", "null"], "description": unknown_when_null},
            "schema": {"description": unknown_when_null},
            "current": {"type": "boolean", "description": "True for the version served now."},
            "requirements": {
                "oneOf": [_ref("Requirements"), {"type": "null"}],
                "description": "The version's own environment; null: the default one.",
            },
        }
    )


def _load_state() -> Schema:
    return _object(
        {
            "version": _INTEGER,
            "type": _TEXT,
            "status": {"enum": ["LoadSuccessful", "LoadFailed", "LoadInProgress"]},
            "last_error": {"type": ["string", "null"]},
            "environment": _ref("EnvironmentState"),
        },
        required=["version", "type", "status", "last_error"],
    )


def _deploy_fields() -> dict[str, Schema]:
    """The fields ``POST /endpoints`` and ``PUT /endpoints/<name>`` share."""
    no_nul = "[^\\u0000]*"
    return {
        "type": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TYPE_LENGTH,
            "pattern": f"^{no_nul}$",
            "description": "`model` (the default) or `alias`.",
        },
        "description": {"type": "string", "pattern": f"^{no_nul}$"},
        "docstring": {"type": "string", "pattern": f"^{no_nul}$"},
        "schema": {"description": "Stored and shown as sent."},
        "is_public": {"type": "boolean"},
        "dependencies": {"type": "array"},
        "target": {
            "type": ["string", "null"],
            "pattern": f"^{no_nul}$",
            "description": "The endpoint an `alias` calls.",
        },
        "artifact": {
            "type": ["string", "null"],
            "pattern": SHA256_PATTERN,
            "description": "The SHA-256 of an object uploaded with `PUT /artifacts/{sha256}`.",
        },
        "src_path": {
            "type": ["string", "null"],
            "pattern": f"^{no_nul}$",
            "description": "A folder holding `pickle_archive`, inside the upload destination "
            "(`GET /configurations/endpoint_upload_destination`): TabPy's client's way.",
        },
        "requirements": {
            "oneOf": [_ref("Requirements"), {"type": "null"}],
            "description": "The new version's own environment (not for an alias; on an update "
            "only with `should_update_version`).",
        },
    }


def _create_request() -> Schema:
    name: Schema = {
        "type": "string",
        "pattern": NAME_PATTERN,
        "maxLength": MAX_NAME_LENGTH,
        "description": "Letters, digits, `_`, `-` and spaces.",
    }
    return {
        "type": "object",
        "properties": {"name": name, **_deploy_fields()},
        "required": ["name"],
        "anyOf": [
            {"required": ["artifact"], "properties": {"artifact": {"type": "string"}}},
            {"required": ["src_path"], "properties": {"src_path": {"type": "string"}}},
            {
                "required": ["type", "target"],
                "properties": {"type": {"const": "alias"}, "target": {"minLength": 1}},
            },
        ],
        "description": "A new endpoint: `artifact` or `src_path` names its object; an `alias` "
        "names a `target` instead.",
        "examples": [
            {"name": "add", "artifact": "0" * 64, "description": "Adds two columns."},
            {"name": "plus", "type": "alias", "target": "add"},
        ],
    }


def _update_request() -> Schema:
    return {
        "type": "object",
        "properties": {
            **_deploy_fields(),
            "should_update_version": {
                "type": "boolean",
                "description": "Make a new version from `artifact` or `src_path`.",
            },
        },
        "description": "Only the fields sent change.",
    }


def _evaluate_request() -> Schema:
    return {
        **_object(
            {
                "script": {
                    "type": "string",
                    "description": "The body of a Python function that `return`s the result.",
                },
                "data": {
                    "type": "object",
                    "propertyNames": {"pattern": ARG_NAME_PATTERN},
                    "description": "The arguments `_arg1` ... `_argN` (no gaps), usually "
                    "columns as arrays; `{}` for none.",
                },
            }
        ),
        "additionalProperties": True,
        "examples": [
            {
                "script": "return [x + y for x, y in zip(_arg1, _arg2)]",
                "data": {"_arg1": [1, 2], "_arg2": [3, 4]},
            },
            {"script": "return 42", "data": {}},
        ],
    }


def _table_request() -> Schema:
    return {
        **_object(
            {
                "script": {
                    "type": "string",
                    "description": "Gets the table as `_arg1` (a pandas DataFrame) and returns "
                    "a table.",
                },
                "dataPath": {
                    "type": "string",
                    "description": "Where the table was stored with Arrow Flight's DoPut.",
                },
            }
        ),
        "additionalProperties": True,
    }


def _query_request() -> Schema:
    return {
        "type": "object",
        "properties": {
            "data": {
                "type": ["array", "object"],
                "description": "Positional arguments (an array) or keyword arguments.",
            },
            "method": {"description": "For the pre-built models that take a method."},
        },
        "anyOf": [{"required": ["data"]}, {"required": ["method"]}],
        "examples": [{"data": {"x": [1, 2], "y": [3, 4]}}, {"data": [[1, 2], [3, 4]]}],
    }


def _query_reply() -> Schema:
    return _object(
        {
            "response": {"description": "What the endpoint returned."},
            "version": _INTEGER,
            "model": {"type": "string", "description": "The endpoint's name."},
            "uuid": {"type": "string", "format": "uuid"},
        }
    )


def _info() -> Schema:
    features = {
        "type": "object",
        "properties": {
            "authentication": _object({"required": {"const": True}, "methods": {"type": "object"}}),
            "evaluate_enabled": {"type": "boolean"},
            "gzip_enabled": {"type": "boolean"},
            "arrow_enabled": {"type": "boolean"},
        },
        "required": ["evaluate_enabled", "gzip_enabled", "arrow_enabled"],
        "additionalProperties": False,
    }
    return _object(
        {
            "description": _TEXT,
            "creation_time": _TEXT,
            "state_path": _TEXT,
            "server_version": _TEXT,
            "name": _TEXT,
            "versions": _object({"v1": _object({"features": features})}),
        }
    )


def _readiness() -> Schema:
    return _object(
        {
            "status": {"enum": ["ready", "degraded", "not ready"]},
            "workers": _object({"ready": _INTEGER, "configured": _INTEGER}),
            "registry": {"enum": ["ok", "unavailable"]},
            "reasons": {"type": "array", "items": _TEXT},
            "degraded": {"type": "array", "items": _TEXT},
        },
        required=["status", "workers", "registry"],
    )


def component_schemas() -> dict[str, Schema]:
    """Every named schema; a fresh copy each call (the builder may adjust it)."""
    return {
        "Error": _error(),
        "QueryFailed": _query_failed(),
        "ScriptError": _script_error(),
        "EndpointInfo": _endpoint_info(),
        "Endpoints": {"type": "object", "additionalProperties": _ref("EndpointInfo")},
        "VersionInfo": _version_info(),
        "LoadState": _load_state(),
        "Requirements": _requirements(),
        "EnvironmentState": _environment_state(),
        "FleetStatus": _fleet_status(),
        "CreateRequest": _create_request(),
        "UpdateRequest": _update_request(),
        "DeleteRequest": {
            **_object({"name": _TEXT}),
            "additionalProperties": True,
            "examples": [{"name": "add"}],
        },
        "RollbackRequest": {
            **_object({"version": {**_INTEGER, "minimum": 1, "maximum": 2**63 - 1}}),
            "additionalProperties": True,
            "examples": [{"version": 1}],
        },
        "EvaluateRequest": _evaluate_request(),
        "TableRequest": _table_request(),
        "TableReply": _object({"outputDataPath": _TEXT}),
        "QueryRequest": _query_request(),
        "QueryReply": _query_reply(),
        "Info": _info(),
        "Readiness": _readiness(),
        "Health": _object({"status": {"const": "ok"}}),
        "UploadDestination": _object({"path": _TEXT}),
        "Artifact": _object(
            {"sha256": {"type": "string", "pattern": SHA256_PATTERN}, "size": _INTEGER}
        ),
        "Empty": {**_object({}), "maxProperties": 0},
        "Any": _ANY,
    }
