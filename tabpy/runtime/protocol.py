"""The messages between the server and its workers, and how they travel.

Every message is a frame: a fixed header, then three sections whose lengths it announces::

    <type:u8> <code:u8> <meta length:u32> <attachment length:u64> <body length:u64>
    meta  attachment  body

``meta`` is a small JSON object (the typed fields below), ``attachment`` an endpoint's pickled
object when the worker does not hold it yet, and ``body`` the request or answer bytes, passed
through untouched: the server never parses data. Each section is received straight into a
buffer of its announced size, so a body of any size costs no reassembly and no extra copy.
A job body of a megabyte or more does not travel through the socket at all: the server puts it
in a memory region it shares with that worker and sends a ``SHARED_JOB`` frame, whose body
length says how much of the region is the body (:mod:`tabpy.runtime.shared_body`).

A conversation, per job::

    server                                  worker
      JOB (code: JobKind)          ---->
                                   <----    REQUEST  (a script calls tabpy.query: which endpoint?)
      ANSWER                       ---->             (zero or more times)
                                   <----    REPLY (code: Outcome)

and once, before the first job, the worker sends READY. An ANSWER names the endpoint's current
version, or nothing (not deployed), or why the job's caller may not query it (``Refused``,
decided by the server from ``Job.may_query``: a script has its caller's rights).

An endpoint deployed in another Python environment cannot run in this worker. Then the ANSWER
says so (``Elsewhere``), the worker sends a second REQUEST whose body is the call's arguments
(``{"data": ...}`` as in ``/query``), and the server runs it in that environment's pool and
ANSWERs with the result in the body: what ``tabpy.query`` returns, as JSON::

      JOB                          ---->
                                   <----    REQUEST {"name": "m"}
      ANSWER {"elsewhere": true}   ---->
                                   <----    REQUEST {"name": "m", "call": true} + arguments
      ANSWER {"result": true} + result ->
                                   <----    REPLY

Replies carry an :class:`Outcome`, never a transport status: the server maps each outcome to a
:mod:`tabpy.errors` exception (:mod:`tabpy.runtime.outcomes`), and a transport maps those.

This module and the rest of the worker side import only the standard library, cloudpickle
and orjson, so a worker can run in any interpreter that has those three.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "FRAME_HEADER",
    "Artifact",
    "Elsewhere",
    "EndpointRef",
    "EndpointRequest",
    "EvaluateMeta",
    "ExtensionMeta",
    "Failure",
    "FrameType",
    "Job",
    "JobKind",
    "JobMeta",
    "LoadMeta",
    "Outcome",
    "QueryCheck",
    "QueryMeta",
    "Refused",
    "Reply",
    "TableRequest",
    "decode_answer_meta",
    "decode_job_meta",
    "decode_reply",
    "decode_request_meta",
    "encode_answer_meta",
    "encode_job_meta",
    "encode_reply_meta",
    "encode_request_meta",
    "pack_header",
    "RESULT_ANSWER",
]

FRAME_HEADER = struct.Struct("<BBIQQ")


class FrameType(enum.IntEnum):
    #: server -> worker: a job; the code is its :class:`JobKind`.
    JOB = 1
    #: server -> worker: the answer to a REQUEST (an endpoint and maybe its object).
    ANSWER = 2
    #: worker -> server, once: warmed up and waiting for jobs.
    READY = 3
    #: worker -> server: how the job ended; the code is its :class:`Outcome`.
    REPLY = 4
    #: worker -> server, during a job: a script asks for an endpoint by name.
    REQUEST = 5
    #: server -> worker: a JOB whose body is at the start of the worker's shared region
    #: (:mod:`tabpy.runtime.shared_body`); the body length says how much of it, and no body
    #: bytes follow. A new region's descriptor comes with the frame's first byte.
    SHARED_JOB = 6


class JobKind(enum.IntEnum):
    """What the worker is asked to do; each kind has its own meta type."""

    #: Run an ``/evaluate`` request (the body): :class:`EvaluateMeta`.
    EVALUATE = 1
    #: Run a deployed endpoint on a ``/query`` request (the body): :class:`QueryMeta`.
    QUERY = 2
    #: Load an endpoint's object and report whether that worked: :class:`LoadMeta`.
    LOAD = 3
    #: A job for a handler a feature package plugs into the worker: :class:`ExtensionMeta`.
    EXTENSION = 4


class Outcome(enum.IntEnum):
    """How a job ended, in the worker's words; never a transport status."""

    #: The body is the answer, exactly as the caller receives it.
    OK = 0
    #: The request breaks a rule of the API (message, info).
    INVALID_REQUEST = 1
    #: User code (a script, an endpoint or its loading) failed (message, info).
    FAILED = 2
    #: A script used ``tabpy.query(...)['response']`` and the query gave no response.
    QUERY_UNANSWERED = 3
    #: The worker hit its memory limit (message, info); it exits after this reply.
    MEMORY_EXCEEDED = 4
    #: The request asked for a stored table (``dataPath``): run it as a table job.
    TABLE_REQUEST = 5


@dataclass(frozen=True, slots=True)
class EndpointRef:
    """One deployed endpoint version, as a worker needs to know it."""

    name: str
    version: int
    type: str
    #: SHA-256 of the pickled object (the cache key in workers); None if there is no object.
    artifact: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "type": self.type,
            "artifact": self.artifact,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> EndpointRef:
        return cls(value["name"], value["version"], value["type"], value["artifact"])


@dataclass(frozen=True, slots=True)
class Artifact:
    """An endpoint's pickled object as the server holds it: the bytes, or why there are none."""

    sha256: str | None
    data: bytes | None = None
    #: Why ``data`` is None (for example a legacy import whose pickle was lost).
    missing: str | None = None


# --- job meta, one type per kind ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvaluateMeta:
    KIND: ClassVar[JobKind] = JobKind.EVALUATE

    def as_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> EvaluateMeta:
        return cls()


@dataclass(frozen=True, slots=True)
class QueryMeta:
    KIND: ClassVar[JobKind] = JobKind.QUERY
    endpoint: EndpointRef

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.as_json()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> QueryMeta:
        return cls(EndpointRef.from_json(value["endpoint"]))


@dataclass(frozen=True, slots=True)
class LoadMeta:
    KIND: ClassVar[JobKind] = JobKind.LOAD
    endpoint: EndpointRef

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint.as_json()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> LoadMeta:
        return cls(EndpointRef.from_json(value["endpoint"]))


@dataclass(frozen=True, slots=True)
class ExtensionMeta:
    """``handler`` names the plug-in (see ``tabpy.runtime.job_handlers``); ``params`` is its own."""

    KIND: ClassVar[JobKind] = JobKind.EXTENSION
    handler: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"handler": self.handler, "params": self.params}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ExtensionMeta:
        return cls(value["handler"], value["params"])


JobMeta = EvaluateMeta | QueryMeta | LoadMeta | ExtensionMeta
_EVALUATE = EvaluateMeta()
_EVALUATE_KIND = int(JobKind.EVALUATE)
_META_TYPES: dict[JobKind, Any] = {
    meta.KIND: meta for meta in (EvaluateMeta, QueryMeta, LoadMeta, ExtensionMeta)
}


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a script may not query an endpoint: the error envelope its ``tabpy.query`` returns."""

    message: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """The endpoint runs in another Python environment: send the call's arguments instead."""

    name: str


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """A script's ``tabpy.query``: which endpoint, and whether the body is a call to run."""

    name: str
    #: True: the body holds the arguments (``{"data": ...}``) of a call the server runs.
    call: bool = False


#: Decides, in the server, whether the job's caller may query an endpoint (by name): None if
#: it may, else why not. Never sent to the worker.
QueryCheck = Callable[[str], Refused | None]


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work.

    ``body`` is the request as received, in chunks, forwarded without joining. ``artifact`` is
    the object of the endpoint the job runs (QUERY, LOAD): the pool sends its bytes only to a
    worker that does not hold them yet. ``may_query`` is the caller's right to query endpoints
    from the script (``tabpy.query``), checked by the server when the worker asks for one; None
    lets the script query every endpoint.
    """

    meta: JobMeta
    body: Sequence[bytes] = ()
    artifact: Artifact | None = None
    #: Who asked (``"basic:alice"``); the pool keeps different callers' code on different
    #: workers when it isolates callers. Never sent to the worker.
    principal: str = ""
    #: Whether this job's script may query an endpoint (the caller's rights); None: any.
    #: Never sent to the worker.
    may_query: QueryCheck | None = None

    @property
    def kind(self) -> JobKind:
        return self.meta.KIND


@dataclass(frozen=True, slots=True)
class TableRequest:
    """An ``/evaluate`` request naming a stored table (``dataPath``) instead of sending data."""

    script: str
    data_path: str


@dataclass(frozen=True, slots=True)
class Failure:
    """What user code raised, for the server's log: never the data it ran on."""

    #: The exception's class name.
    exception: str
    #: Its message, shortened.
    message: str
    #: The line of the user's script it was raised on (or found on, for a SyntaxError).
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"exception": self.exception, "message": self.message, "line": self.line}


@dataclass(frozen=True, slots=True)
class Reply:
    """How a job ended. ``body`` is the answer (OK); ``message`` and ``info`` describe a failure
    to the caller and ``failure`` to the log; ``table`` is the request to run as a table job
    (TABLE_REQUEST)."""

    outcome: Outcome
    body: bytes | bytearray = b""
    message: str = ""
    info: Any = None
    table: TableRequest | None = None
    failure: Failure | None = None

    @classmethod
    def ok(cls, body: bytes | bytearray) -> Reply:
        return cls(Outcome.OK, body)

    @classmethod
    def failed(
        cls, outcome: Outcome, message: str, info: Any = None, failure: Failure | None = None
    ) -> Reply:
        return cls(outcome, message=message, info=info, failure=failure)

    def __repr__(self) -> str:
        if self.outcome is Outcome.OK:
            return f"Reply(OK, {bytes(self.body[:80])!r})"
        return f"Reply({self.outcome.name}, {self.message!r}, {self.info!r})"


# --- encoding -------------------------------------------------------------------------------------

# Meta is small and may hold any text a script produced (lone surrogates included), which only
# the standard library's ASCII-escaping encoder writes and reads back unchanged.
_encoder = json.JSONEncoder()


def pack_header(
    frame: FrameType, code: int, meta_length: int, attachment_length: int, body_length: int
) -> bytes:
    return FRAME_HEADER.pack(frame, code, meta_length, attachment_length, body_length)


def encode_job_meta(meta: JobMeta, artifact: Artifact | None, forget: Sequence[str] = ()) -> bytes:
    """The JOB frame's meta. Evaluate jobs, the hot path, send none at all."""
    if isinstance(meta, EvaluateMeta) and artifact is None and not forget:
        return b""
    value: dict[str, Any] = {"job": meta.as_json()}
    if artifact is not None:
        value["artifact"] = {"sha256": artifact.sha256, "missing": artifact.missing}
    if forget:
        value["forget"] = list(forget)
    return _encoder.encode(value).encode("ascii")


def decode_job_meta(
    kind: int, raw: bytes | bytearray
) -> tuple[JobMeta, Artifact | None, Sequence[str]]:
    """``(meta, artifact without its bytes, artifacts to forget)`` of a JOB frame."""
    if kind == _EVALUATE_KIND and not raw:
        return _EVALUATE, None, ()
    meta_type = _META_TYPES[JobKind(kind)]
    if not raw:
        return meta_type.from_json({}), None, []
    value = json.loads(raw)
    artifact = value.get("artifact")
    described = (
        None if artifact is None else Artifact(artifact["sha256"], None, artifact["missing"])
    )
    return meta_type.from_json(value["job"]), described, value.get("forget", [])


def encode_request_meta(name: str, *, call: bool = False) -> bytes:
    value: dict[str, Any] = {"name": name}
    if call:
        value["call"] = True
    return _encoder.encode(value).encode("ascii")


def decode_request_meta(raw: bytes | bytearray) -> EndpointRequest:
    value = json.loads(raw)
    name = value["name"]
    if not isinstance(name, str):
        raise ValueError("an endpoint request names its endpoint with a string")
    return EndpointRequest(name, value.get("call") is True)


#: The meta of an ANSWER whose body is the result of a call run in another pool.
RESULT_ANSWER = _encoder.encode({"endpoint": None, "result": True}).encode("ascii")


def encode_answer_meta(
    endpoint: EndpointRef | None,
    artifact: Artifact | None,
    refused: Refused | None = None,
    *,
    elsewhere: bool = False,
) -> bytes:
    """The ANSWER frame's meta: the endpoint (None: not deployed), or why it is refused, or
    that it runs in another environment (``elsewhere``)."""
    value: dict[str, Any] = {"endpoint": None if endpoint is None else endpoint.as_json()}
    if artifact is not None:
        value["artifact"] = {"sha256": artifact.sha256, "missing": artifact.missing}
    if refused is not None:
        value["refused"] = {"message": refused.message, "info": refused.info}
    if elsewhere:
        value["elsewhere"] = True
    return _encoder.encode(value).encode("ascii")


def decode_answer_meta(
    raw: bytes | bytearray, name: str = ""
) -> tuple[EndpointRef | Refused | Elsewhere | None, Artifact | None]:
    """What an ANSWER to a question about ``name`` says (not for a call's result)."""
    value = json.loads(raw)
    refused = value.get("refused")
    if refused is not None:
        return Refused(refused["message"], refused["info"]), None
    if value.get("elsewhere"):
        return Elsewhere(name), None
    endpoint = value["endpoint"]
    artifact = value.get("artifact")
    return (
        None if endpoint is None else EndpointRef.from_json(endpoint),
        None if artifact is None else Artifact(artifact["sha256"], None, artifact["missing"]),
    )


def encode_reply_meta(reply: Reply) -> bytes:
    if reply.outcome is Outcome.OK:
        return b""
    if reply.table is not None:
        value: dict[str, Any] = {"script": reply.table.script, "dataPath": reply.table.data_path}
    else:
        value = {"message": reply.message, "info": reply.info}
        if reply.failure is not None:
            value["failure"] = reply.failure.as_json()
    return _encoder.encode(value).encode("ascii")


def decode_reply(code: int, meta: bytes | bytearray, body: bytes | bytearray) -> Reply:
    if code == Outcome.OK:
        return Reply(Outcome.OK, body)
    outcome = Outcome(code)
    value = json.loads(meta)
    if outcome is Outcome.TABLE_REQUEST:
        return Reply(outcome, table=TableRequest(value["script"], value["dataPath"]))
    failure = value.get("failure")
    return Reply(
        outcome,
        message=value["message"],
        info=value["info"],
        failure=None if failure is None else Failure(**failure),
    )
