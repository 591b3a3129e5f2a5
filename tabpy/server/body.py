"""Reading request bodies within the configured size, including gzip.

The limit applies twice: to the bytes on the wire (a ``Content-Length`` above
it is refused before anything is read) and to the decompressed size, so that a
small gzip bomb cannot inflate into the server's memory.  The body is returned
as the list of received chunks; it is forwarded to a worker without joining.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from tabpy.errors import InvalidRequest, PayloadTooLarge


def check_declared_size(request: Request, limit: int) -> None:
    check_declared(request.headers.get("content-length"), limit)


def check_declared(declared: str | None, limit: int) -> None:
    """Refuse a ``Content-Length`` (the header's text, or None) above ``limit``."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"Request with size {int(declared)} exceeded limit of {limit} (bytes)."
        )


async def read_body(request: Request, limit: int, gzip_enabled: bool) -> list[bytes]:
    headers = request.headers
    return await collect(
        request.stream(),
        headers.get("content-length"),
        headers.get("content-encoding"),
        limit,
        gzip_enabled,
    )


async def receive_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks straight from the ASGI ``receive``, as Starlette's ``Request.stream``
    gives them (a disconnect is :class:`ClientDisconnect`), for the lean path that has no
    request object (:mod:`tabpy.server.fast_path`)."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


async def collect(
    stream: AsyncIterator[bytes],
    declared: str | None,
    encoding: str | None,
    limit: int,
    gzip_enabled: bool,
) -> list[bytes]:
    """The body of ``stream`` within ``limit``; ``declared`` and ``encoding`` are the
    ``Content-Length`` and ``Content-Encoding`` headers (None when absent)."""
    check_declared(declared, limit)
    gzipped = gzip_enabled and encoding is not None and encoding.lower() == "gzip"
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    chunks: list[bytes] = []
    received = 0
    async for chunk in stream:
        if not chunk:
            continue
        if inflater is not None:
            chunk = _inflate(inflater, chunk, limit - received)
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, gzipped)
        chunks.append(chunk)
    if inflater is not None and not inflater.eof:
        raise InvalidRequest(
            "Request body is not valid gzip data.",
            "The body ended before the end of the gzip stream; "
            "send complete gzip data or drop the Content-Encoding header.",
        )
    return chunks


def _inflate(inflater: zlib._Decompress, chunk: bytes, room: int) -> bytes:
    """Decompress at most ``room + 1`` bytes: one more than allowed proves the overrun."""
    try:
        data = inflater.decompress(inflater.unconsumed_tail + chunk, max(room, 0) + 1)
    except zlib.error as exc:
        raise InvalidRequest(
            "Request body is not valid gzip data.",
            f"{exc}; send gzip data or drop the Content-Encoding header.",
        ) from None
    return data


def _too_large(limit: int, gzipped: bool) -> PayloadTooLarge:
    if gzipped:
        return PayloadTooLarge(
            f"Request body exceeded limit of {limit} (bytes) after gzip decompression."
        )
    return PayloadTooLarge(
        f"Request with more than {limit} bytes exceeded limit of {limit} (bytes)."
    )
