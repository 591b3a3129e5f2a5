"""Reading the ``Authorization`` value that HTTP requests and Arrow Flight calls carry.

Pure functions: a malformed value gives None, and the caller decides what that means.
"""

from __future__ import annotations

import base64

__all__ = ["parse_basic", "parse_bearer", "scheme_of"]


def scheme_of(header: str | None) -> str:
    """The lowercased scheme word (``"basic"``, ``"bearer"``, ...); empty without a header."""
    return header.partition(" ")[0].lower() if header else ""


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(username, password)`` from a Basic value, or None when malformed.

    The password is everything after the *first* colon, so passwords containing colons work.
    """
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def parse_bearer(header: str) -> str | None:
    """The token from ``Bearer <token>`` (scheme case-insensitive, exactly one space)."""
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]
