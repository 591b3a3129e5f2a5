"""Request authentication.

With no password file and no OAuth, TabPy still inspects the ``Authorization``
header: well-formed Basic credentials get 406, because the client believes it
is talking to a protected server.  Anything else passes.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request

from tabpy.errors import NotAcceptable


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(username, password)`` from a Basic header, or None when malformed."""
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


class NoAuthentication:
    """The server has no credentials configured."""

    def __init__(self, realm: str) -> None:
        self.realm = realm

    def check(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if header is not None and parse_basic(header) is not None:
            raise NotAcceptable(self.realm)
