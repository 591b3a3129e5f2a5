"""Reading the small JSON objects that the management routes accept."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from tabpy.errors import InvalidRequest
from tabpy.server.body import read_body


async def read_json_object(request: Request, limit: int, gzip_enabled: bool) -> dict[str, Any]:
    raw = b"".join(await read_body(request, limit, gzip_enabled))
    if not raw:
        raise InvalidRequest("Input body cannot be empty")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Failed to decode input body", str(exc)) from None
    except RecursionError:
        raise InvalidRequest(
            "Failed to decode input body", "JSON nested too deeply; send a flatter object."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("Input body must be a JSON object")
    return body
