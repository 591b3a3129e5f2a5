"""A response written whole has the bytes uvicorn's ``send`` writes, over a real socket."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tabpy.config import HttpLimits
from tabpy.server.http_limits import bounded_protocol
from tabpy.server.whole_response import WHOLE_RESPONSE
from tests.unit.uvicorn_support import ThreadedServer

BODY = b'{"result": [4, 1, 8]}'
GOOD = [
    (b"Content-Type", b"application/json"),
    (b"content-length", b"%d" % len(BODY)),
    (b"access-control-allow-origin", b"https://tableau.example.com"),
    (b"x-request-id", b"0123abcd"),
]
VARIANTS: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {
    "good": (200, GOOD, BODY),
    "error": (404, GOOD, BODY),
    "no-length": (200, GOOD[:1], BODY),
    "wrong-length": (200, [(b"content-length", b"3")], BODY),
    "connection-close": (200, [*GOOD, (b"connection", b"close")], BODY),
    "bad-value": (200, [*GOOD, (b"x-evil", b"a\r\nb")], BODY),
}


class Recorder:
    """The app: answers each variant whole (path /whole/...) or through send (/send/...)."""

    def __init__(self) -> None:
        self.written: list[bool] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        _, mode, variant = scope["path"].split("/")
        status, headers, body = VARIANTS[variant]
        if mode == "whole":
            written = scope[WHOLE_RESPONSE](status, headers, body)
            self.written.append(written)
            if written:
                return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Served(ThreadedServer):
    def __init__(self) -> None:
        self.app = Recorder()
        super().__init__(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=0,
                http=bounded_protocol(HttpLimits(), lambda reason: None),
                lifespan="off",
                log_config=None,
                access_log=False,  # as the server runs it (its own access log is Observe's)
            )
        )

    def exchange(self, *requests: bytes) -> tuple[bytes, bool]:
        """Send the requests on one connection; what came back (Date removed) and whether
        the server closed the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            received = b""
            closed = False
            for request in requests:
                sock.sendall(request)
                received, closed = _read_reply(sock, received)
            return re.sub(rb"date: [^\r]*\r\n", b"", received), closed


def _read_reply(sock: socket.socket, received: bytes) -> tuple[bytes, bool]:
    """Read until one more whole reply has arrived, or the server closed."""
    start = len(received)
    while True:
        head_end = received.find(b"\r\n\r\n", start)
        if head_end >= 0:
            head = received[start:head_end]
            length = re.search(rb"content-length: (\d+)", head)
            if (
                received.endswith(b"\r\n0\r\n\r\n")
                if b"transfer-encoding: chunked" in head
                else length is not None and len(received) >= head_end + 4 + int(length[1])
            ):
                sock.settimeout(0.1)
                try:
                    closed = sock.recv(1, socket.MSG_PEEK) == b""
                except TimeoutError:
                    closed = False
                sock.settimeout(5)
                return received, closed
        chunk = sock.recv(65536)
        if not chunk:
            return received, True
        received += chunk


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with Served() as running:
        yield running


def request(mode: str, variant: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST /%s/%s HTTP/%s\r\nhost: x\r\ncontent-length: 2\r\n%s\r\n{}" % (
        mode.encode(),
        variant.encode(),
        version,
        extra,
    )


@pytest.mark.parametrize("variant", ["good", "error"])
def test_whole_and_sent_responses_are_the_same_bytes(served: Served, variant: str) -> None:
    served.app.written.clear()
    whole = served.exchange(request("whole", variant))
    sent = served.exchange(request("send", variant))
    assert served.app.written == [True]
    assert whole == sent
    reply, closed = whole
    assert reply.startswith(b"HTTP/1.1 %s" % (b"200 OK" if variant == "good" else b"404"))
    assert reply.endswith(b"\r\n\r\n" + BODY)
    assert not closed


@pytest.mark.parametrize(("extra", "version"), [(b"connection: close\r\n", b"1.1"), (b"", b"1.0")])
def test_a_connection_to_be_closed_is_answered_through_send(
    served: Served, extra: bytes, version: bytes
) -> None:
    # uvicorn's versions answer these differently (whether "connection: close" is added).
    served.app.written.clear()
    whole = served.exchange(request("whole", "good", extra, version))
    assert served.app.written == [False]  # declined before writing anything
    assert whole == served.exchange(request("send", "good", extra, version))
    assert whole[1]  # closed


def test_a_kept_alive_connection_serves_the_next_request(served: Served) -> None:
    served.app.written.clear()
    reply, closed = served.exchange(request("whole", "good"), request("whole", "good"))
    assert served.app.written == [True, True]
    assert reply.count(BODY) == 2
    assert not closed


@pytest.mark.parametrize("variant", ["no-length", "wrong-length", "connection-close"])
def test_what_it_does_not_cover_goes_through_send(served: Served, variant: str) -> None:
    served.app.written.clear()
    whole = served.exchange(request("whole", variant))
    assert served.app.written == [False]  # declined before writing anything
    assert whole == served.exchange(request("send", variant))


def test_a_header_uvicorn_refuses_is_refused_alike(served: Served) -> None:
    served.app.written.clear()
    whole = served.exchange(request("whole", "bad-value"))
    assert served.app.written == []  # it raised, as send does
    assert whole == served.exchange(request("send", "bad-value")) == (b"", True)
