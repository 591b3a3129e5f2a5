"""Client-supplied text made safe for a log line: one line, bounded length.

Values such as a user name, a token's ``kid`` or a forwarded address come from whoever sends
the request. Written as they are, a newline would forge a log line and a megabyte-long value
would cost a megabyte of log per request, so every such value goes through :func:`printable`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "printable"]

#: Characters kept of one value; long enough for any real user name, path or address.
DEFAULT_LIMIT = 256


def printable(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with non-printable characters escaped.

    A cut value ends with ``...[<n> chars]`` giving the original length, so the reader knows.
    """
    cut = text if len(text) <= limit else text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    if len(text) > limit:
        cut += f"...[{len(text)} chars]"
    return cut
