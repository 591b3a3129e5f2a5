"""Response types that send bytes exactly as produced."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from starlette.responses import Response

JSON = "application/json"
JSON_UTF8 = "application/json; charset=UTF-8"


class RawResponse(Response):
    """A response whose body is already encoded (``bytes`` or ``bytearray``).

    Worker replies arrive as a ``bytearray`` filled straight from the socket;
    sending it as-is avoids copying a large result once more.
    """

    def __init__(
        self,
        body: bytes | bytearray,
        status_code: int = 200,
        media_type: str | None = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.body = body  # type: ignore[assignment]
        self.init_headers(headers)


def html_status_page(
    status: int, phrase: str, headers: Mapping[str, str] | None = None
) -> RawResponse:
    """The small HTML page TabPy's framework sends for 403/404/405."""
    body = f"<html><title>{status}: {phrase}</title><body>{status}: {phrase}</body></html>"
    return RawResponse(body.encode("ascii"), status, "text/html; charset=UTF-8", headers)


def encode_json(value: object) -> bytes:
    """``value`` as JSON with Python's separators, as TabPy writes it.

    NaN and the infinities, which a deploy may send in an endpoint's ``schema`` (Python's
    parser reads them), are written as ``null``, so the reply is always valid JSON. They are
    replaced in the text, outside strings, rather than by walking ``value``: no recursion.
    """
    text = json.dumps(value)
    if "NaN" in text or "Infinity" in text:
        text = _NON_FINITE.sub(_null_outside_strings, text)
    return text.encode()


#: A JSON string (kept) or a non-finite number Python writes (replaced).
_NON_FINITE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?Infinity|NaN')


def _null_outside_strings(match: re.Match[str]) -> str:
    token = match.group()
    return token if token.startswith('"') else "null"
