"""Checks that schemathesis runs on every response in ``test_openapi_fuzz.py`` (its hooks file).

Loaded by the ``schemathesis`` command through ``SCHEMATHESIS_HOOKS``, in its own process.
They replace and add to the built-in checks:

* ``server_error_is_a_script_error`` instead of ``not_a_server_error``: a 5xx passes only as
  a documented script failure, a 500 from ``/evaluate`` or ``/query/<name>`` saying
  ``Error processing script`` (or, for ``/query``, TabPy's ``Error querying function``
  envelope of type ``QueryFailed``);
* ``json_content_type_is_exact``: the built-in check compares only ``type/subtype``, but
  TabPy's clients see ``application/json`` and ``application/json; charset=UTF-8`` on
  different routes, so the whole header must be one the document names for that status.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

SCRIPT_ERROR = "Error processing script"
QUERY_FAILED = "Error querying function '"


def _path_of(case: Any) -> str:
    return str(case.operation.path)


def is_script_error(path: str, status: int, body: Any) -> bool:
    """Whether a 5xx reply is a documented script failure (see the module docstring)."""
    if status != 500 or not isinstance(body, dict):
        return False
    if not (path == "/evaluate" or path.startswith("/query/")):
        return False
    message = body.get("message")
    if message == SCRIPT_ERROR:
        return True
    info = body.get("info")
    return (
        path.startswith("/query/")
        and isinstance(message, str)
        and message.startswith(QUERY_FAILED)
        and isinstance(info, dict)
        and info.get("type") == "QueryFailed"
    )


@schemathesis.check
def server_error_is_a_script_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if is_script_error(_path_of(case), response.status_code, body):
        return None
    raise AssertionError(
        f"{response.status_code} that is not a script failure: {response.content[:500]!r}"
    )


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@schemathesis.check
def json_content_type_is_exact(ctx: Any, response: Any, case: Any) -> bool | None:
    sent = response.headers.get("content-type")
    value = sent[0] if isinstance(sent, list) else sent
    if not value or not value.lower().startswith("application/json"):
        return None
    document = case.operation.schema.raw_schema
    operation = document["paths"][_path_of(case)].get(case.method.lower())
    if operation is None:  # a method the document does not list (schemathesis probes those)
        return None
    reply = operation["responses"].get(str(response.status_code))
    if reply is None:
        return None  # status_code_conformance reports it
    documented = list(_resolve(document, reply).get("content", {}))
    if value not in documented:
        raise AssertionError(f"Content-Type {value!r}; the document says {documented}")
    return None
