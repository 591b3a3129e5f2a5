"""The bounded HTTP edge, exercised over real sockets against uvicorn in this process."""

from __future__ import annotations

import collections
import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from tabpy.config import HttpLimits
from tabpy.server.http_limits import bounded_protocol
from tests.unit.uvicorn_support import ThreadedServer

LIMITS = HttpLimits(max_head_bytes=4096, max_header_count=20, header_timeout=0.5, max_connections=8)


async def echo_app(scope: dict, receive: object, send: object) -> None:
    """Answers 200 with the size of the body it read."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()  # type: ignore[operator]
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size}).encode()
    await send(  # type: ignore[operator]
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


class Edge(ThreadedServer):
    def __init__(self, keep_alive: float = 5) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        super().__init__(
            uvicorn.Config(
                echo_app,
                host="127.0.0.1",
                port=0,
                http=bounded_protocol(LIMITS, lambda reason: self.counters.update((reason,))),
                lifespan="off",
                log_config=None,
                timeout_keep_alive=keep_alive,
            )
        )

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    with Edge() as running:
        yield running


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_a_normal_request_with_a_body_larger_than_the_head_limit_passes(edge: Edge) -> None:
    body = b"x" * 100_000
    with edge.connect() as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        status, _, reply = read_reply(sock)
    assert status == 200 and json.loads(reply) == {"size": len(body)}


def test_a_long_url_gets_414_before_the_line_ends(edge: Edge) -> None:
    with edge.connect() as sock:
        sock.sendall(b"GET /" + b"a" * 5000)  # no end of line: the server must not wait for it
        status, headers, body = read_reply(sock)
    assert status == 414 and headers["connection"] == "close"
    assert json.loads(body)["message"].startswith("The request line is longer than 4 KiB")


def test_a_large_header_gets_431_without_reading_the_rest(edge: Edge) -> None:
    before = edge.counters["head_too_large"]
    with edge.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 5000)
        status, _, body = read_reply(sock)
    assert status == 431
    assert json.loads(body) == {
        "message": "The request line and headers are larger than 4 KiB.",
        "info": {},
    }
    assert edge.counters["head_too_large"] == before + 1


def test_a_head_sent_in_small_pieces_is_counted_as_a_whole(edge: Edge) -> None:
    with edge.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        for _ in range(10):  # 10 headers (under the count limit), 5 KB in all
            sock.sendall(b"X-Piece: " + b"p" * 490 + b"\r\n")
            if select.select([sock], [], [], 0.02)[0]:
                break  # the server has answered
        status, _, body = read_reply(sock)
    assert status == 431 and b"larger than 4 KiB" in body


def test_too_many_headers_get_431(edge: Edge) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(25))
    with edge.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
        status, _, body = read_reply(sock)
    assert status == 431 and b"more than 20 headers" in body


def test_a_silent_connection_gets_408_after_the_header_timeout(edge: Edge) -> None:
    before = edge.counters["header_timeout"]
    with edge.connect() as sock:
        started = time.monotonic()
        status, _, _ = read_reply(sock)
        waited = time.monotonic() - started
    assert status == 408 and waited < 4
    assert edge.counters["header_timeout"] == before + 1


def test_a_slow_head_gets_408_even_while_bytes_trickle_in(edge: Edge) -> None:
    with edge.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        deadline = time.monotonic() + 4
        while not select.select([sock], [], [], 0.1)[0]:  # until the server answers
            assert time.monotonic() < deadline, "the trickling head was never cut off"
            sock.sendall(b"X: y\r\n")
        status, _, _ = read_reply(sock)
    assert status == 408


def test_keep_alive_requests_are_measured_afresh(edge: Edge) -> None:
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    with edge.connect() as sock:
        for _ in range(3):  # 9 KB of heads in all, each under the 4 KiB limit
            sock.sendall(request)
            status, _, _ = read_reply(sock)
            assert status == 200


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (None if still open after ``seconds``)."""
    began = time.monotonic()
    if not select.select([sock], [], [], seconds)[0]:
        return None
    assert sock.recv(1) == b""
    return time.monotonic() - began


def test_an_idle_kept_alive_connection_closes_after_the_keep_alive_time() -> None:
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    with Edge(keep_alive=0.4) as short, short.connect() as sock:
        # Busy for longer than the keep-alive time, one request every 0.1 s: never closed.
        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            sock.sendall(request)
            assert read_reply(sock)[0] == 200
            time.sleep(0.1)
        # Then idle: closed once 0.4 s have passed since the last response, not before.
        assert _closed_within(sock, 0.25) is None
        waited = _closed_within(sock, 2.0)
        assert waited is not None, "the idle connection was never closed"
        assert waited < 0.5


def test_connections_beyond_the_cap_get_a_fast_503(edge: Edge) -> None:
    held = [edge.connect() for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.1)  # let the server accept them all
        with edge.connect() as sock:
            status, _, body = read_reply(sock)
        assert status == 503 and b"too many open connections" in body
    finally:
        for sock in held:
            sock.close()
    # Capacity returns once the held connections go.
    deadline = time.monotonic() + 5
    while True:
        with edge.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _, _ = read_reply(sock)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200


def test_malformed_http_gets_a_json_400(edge: Edge) -> None:
    with edge.connect() as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = read_reply(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"] == "The request is not valid HTTP/1.1."


def test_the_event_loop_stays_responsive_while_a_head_is_refused() -> None:
    """A refused head costs the server nothing that grows with what the client sends."""
    with Edge() as edge:
        with edge.connect() as attacker:
            attacker.sendall(b"GET /?" + b"a" * 4000)
            try:
                for _ in range(200):  # the server closed after 4 KiB: sending more fails
                    attacker.sendall(b"a" * 65536)
            except OSError:
                pass
        with edge.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _, _ = read_reply(sock)
        assert status == 200
        assert edge.counters["uri_too_long"] == 1


def test_the_body_after_an_early_reply_is_not_taken_for_a_head(edge: Edge) -> None:
    """A reply sent before the body has arrived (a 401, a 413) must not make the rest of the
    body count as the next request's head."""

    async def early_app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 401, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    counters: collections.Counter[str] = collections.Counter()
    config = uvicorn.Config(
        early_app,
        host="127.0.0.1",
        port=0,
        http=bounded_protocol(LIMITS, lambda reason: counters.update((reason,))),
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        body = b"x" * 200_000
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
            status, _, _ = read_reply(sock)
            sock.sendall(body)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            second, _, _ = read_reply(sock)
        assert (status, second) == (401, 401)
        assert not counters
    finally:
        server.should_exit = True
        thread.join(10)
