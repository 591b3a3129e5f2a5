"""The HTTP edge of the real server under the abuse a hostile or careless client can cause.

A server with a password file is attacked by unauthenticated connections: an endless header,
many half-sent heads, idle connections beyond the cap. Legitimate requests must keep being
answered quickly, and the refusals must be envelopes counted in /metrics.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from live_server import ServerProcess, running_server
from security_support import basic, password_line

USER, PASSWORD = "alice", "correct horse"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("edge")
    passwords = directory / "passwords.txt"
    passwords.write_text(password_line(USER, PASSWORD) + "\n", encoding="utf-8")
    settings = {
        "TABPY_PWD_FILE": str(passwords),
        "TABPY_HEADER_TIMEOUT": "1",
        "TABPY_MAX_CONNECTIONS": "50",
    }
    with running_server(directory, settings, client={"auth": (USER, PASSWORD)}) as running:
        yield running


def control_latency(server: ServerProcess) -> float:
    started = time.monotonic()
    response = server.http.get("/info")
    assert response.status_code == 200
    return time.monotonic() - started


def raw_reply(sock: socket.socket, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_an_endless_header_is_refused_at_64_kib_and_stalls_nobody(server: ServerProcess) -> None:
    latencies: list[float] = []
    stop = threading.Event()

    def control() -> None:
        while not stop.is_set():
            latencies.append(control_latency(server))

    watcher = threading.Thread(target=control)
    watcher.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            sent = 0
            started = time.monotonic()
            try:
                while sent < 150 * 1024 * 1024:  # the 150 MB the attack tried to send
                    sock.sendall(b"a" * 1024 * 1024)
                    sent += 1024 * 1024
            except OSError:
                pass  # the server closed the connection: what we want
            refused_after = time.monotonic() - started
            reply = raw_reply(sock, timeout=2)
    finally:
        stop.set()
        watcher.join()
    assert sent < 10 * 1024 * 1024, "the server kept reading an oversized header"
    assert refused_after < 2
    if reply:  # the reply may be lost to the reset when the client is still sending
        assert reply.startswith(b"HTTP/1.1 431 ")
    assert latencies and max(latencies) < 1.0


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def test_twenty_flooding_heads_cost_no_memory(server: ServerProcess) -> None:
    before = resident_mb(server.pid)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        for sock in socks:  # each tries to send a 20 MB header, as in the attack
            sock.sendall(b"POST /evaluate HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            with contextlib.suppress(OSError):
                sock.sendall(b"p" * 20 * 1024 * 1024)
        assert resident_mb(server.pid) - before < 50
        assert control_latency(server) < 1.0
    finally:
        for sock in socks:
            sock.close()


def test_half_sent_heads_time_out(server: ServerProcess) -> None:
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /evaluate HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60_000)
        socks.append(sock)
    try:
        assert control_latency(server) < 1.0
        replies = [raw_reply(sock, timeout=4) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(reply.startswith(b"HTTP/1.1 408 ") for reply in replies), replies[:1]
    assert b'"message": "The request headers did not arrive within 1 s."' in replies[0]


def test_connections_beyond_the_cap_get_503_while_the_held_ones_expire(
    server: ServerProcess,
) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as extra:
            assert raw_reply(extra, timeout=2).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in held:
            sock.close()
    # Once the idle ones are gone, legitimate clients are served again.
    deadline = time.monotonic() + 5
    while True:
        try:
            if httpx.get(server.url + "/info", auth=(USER, PASSWORD)).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not recover after the flood"
        time.sleep(0.05)


def test_refusals_are_counted_in_metrics(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /" + b"u" * 70_000 + b" HTTP/1.1\r\n\r\n")
        assert raw_reply(sock, timeout=2).startswith(b"HTTP/1.1 414 ")
    metrics = server.http.get("/metrics").text
    assert 'tabpy_http_refused_total{reason="uri_too_long"}' in metrics
    assert "tabpy_http_connections " in metrics


def test_a_basic_header_is_still_read_whole(server: ServerProcess) -> None:
    """A legitimate request with large (but allowed) headers passes the edge untouched."""
    headers = {"Authorization": basic(USER, PASSWORD), "X-Large": "v" * 50_000}
    response = httpx.get(server.url + "/info", headers=headers)
    assert response.status_code == 200
