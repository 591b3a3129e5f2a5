"""Response types that send bytes exactly as produced."""

from __future__ import annotations

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


def html_status_page(status: int, phrase: str) -> RawResponse:
    """The small HTML page TabPy's framework sends for 403/404/405."""
    body = f"<html><title>{status}: {phrase}</title><body>{status}: {phrase}</body></html>"
    return RawResponse(body.encode("ascii"), status, "text/html; charset=UTF-8")
