"""Reading the small JSON objects that the management routes accept."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from tabpy.errors import InvalidRequest
from tabpy.server.body import read_body

_DECODE_FAILED = "Failed to decode input body"


async def read_json_object(request: Request, limit: int, gzip_enabled: bool) -> dict[str, Any]:
    raw = b"".join(await read_body(request, limit, gzip_enabled))
    if not raw:
        raise InvalidRequest("Input body cannot be empty")
    try:
        body = json.loads(raw)
        # Only an escape can make a lone surrogate; raw bytes holding one fail to decode.
        if b"\\" in raw:
            _check_unicode(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(_DECODE_FAILED, str(exc)) from None
    except RecursionError:
        raise InvalidRequest(
            _DECODE_FAILED, "JSON nested too deeply; send a flatter object."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("Input body must be a JSON object")
    return body


def _check_unicode(body: Any) -> None:
    """Refuse text with a lone UTF-16 surrogate (``"\\ud800"``): valid JSON, but no database
    can store it and no file path can hold it, so it would fail deep inside the server."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            _DECODE_FAILED,
            f"The body holds a lone UTF-16 surrogate ({exc.object[exc.start]!r}); "
            "every string must be valid Unicode text.",
        ) from None
