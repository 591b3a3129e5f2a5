"""Framing between the server and its workers.

Each message is a fixed header followed by a body, so a body of any size can be
received straight into one preallocated buffer (no reassembly, no extra copy).

Request (server -> worker)::

    <kind:u8> <body length:u64>  body

Reply (worker -> server)::

    <status:u16> <flags:u8> <body length:u64>  body

``status`` is the HTTP status the server should answer with; ``body`` is the
exact HTTP response body.  ``flags`` carries out-of-band facts about the worker
itself (for example that it must be retired after this reply).
"""

from __future__ import annotations

import enum
import struct

REQUEST_HEADER = struct.Struct("<BQ")
REPLY_HEADER = struct.Struct("<HBQ")


class JobKind(enum.IntEnum):
    """What the worker is asked to do with the request body."""

    EVALUATE = 1


class ReplyFlag(enum.IntFlag):
    NONE = 0
    #: The worker hit its memory limit and exits after sending this reply.
    MEMORY_EXCEEDED = 1
    #: Sent once, before any job: the worker finished warming up.
    READY = 2


def pack_request_header(kind: JobKind, body_length: int) -> bytes:
    return REQUEST_HEADER.pack(kind, body_length)


def pack_reply_header(status: int, flags: ReplyFlag, body_length: int) -> bytes:
    return REPLY_HEADER.pack(status, flags, body_length)
