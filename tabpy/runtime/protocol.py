"""Framing between the server and its workers.

Each message is a fixed header followed by a body, so a body of any size can be
received straight into one preallocated buffer (no reassembly, no extra copy).

Request (server -> worker)::

    <kind:u8> <registry revision:u64> <meta length:u32> <body length:u64>  meta  body

``meta`` is a small JSON object (which endpoint and version to run); the
registry revision lets a worker notice that its cached view of the deployed
endpoints is stale.

Reply (worker -> server)::

    <status:u16> <flags:u8> <body length:u64>  body

``status`` is the HTTP status the server should answer with; ``body`` is the
exact HTTP response body.  ``flags`` carries out-of-band facts about the worker
itself (for example that it must be retired after this reply).
"""

from __future__ import annotations

import enum
import struct

REQUEST_HEADER = struct.Struct("<BQIQ")
REPLY_HEADER = struct.Struct("<HBQ")


class JobKind(enum.IntEnum):
    """What the worker is asked to do with the request body."""

    EVALUATE = 1
    #: Run a deployed endpoint (``POST /query/<name>``).
    QUERY = 2
    #: Load an endpoint version and report whether that worked.
    LOAD = 3
    #: ``/evaluate`` with ``dataPath``: the table is in shared memory named by the meta
    #: (see ``tabpy.arrow.worker``); the body is empty.
    EVALUATE_TABLE = 4


class ReplyFlag(enum.IntFlag):
    NONE = 0
    #: The worker hit its memory limit and exits after sending this reply.
    MEMORY_EXCEEDED = 1
    #: Sent once, before any job: the worker finished warming up.
    READY = 2
    #: The script returned a table, now in one of the job's segments; the body says which.
    TABLE = 4


def pack_request_header(kind: JobKind, revision: int, meta_length: int, body_length: int) -> bytes:
    return REQUEST_HEADER.pack(kind, revision, meta_length, body_length)


def pack_reply_header(status: int, flags: ReplyFlag, body_length: int) -> bytes:
    return REPLY_HEADER.pack(status, flags, body_length)
