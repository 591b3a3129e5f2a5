"""Tiny blocking HTTP/1.1 client over raw sockets (keep-alive, Content-Length or chunked).

Used for the latency-sensitive single requests of the benchmark, where we want to time exactly
"send the whole request, read the whole reply" without library overhead.
"""

from __future__ import annotations

import socket
import time


class HTTPError(Exception):
    pass


class Response:
    __slots__ = ("status", "headers", "body", "elapsed")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, elapsed: float):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)}B {self.elapsed * 1e3:.1f}ms>"


class Connection:
    """One keep-alive connection to host:port."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def connect(self) -> None:
        self.close()
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading helpers -------------------------------------------------------------------
    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise HTTPError("connection closed by server")
        self.buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(marker)]
                return out
            start = max(0, len(self.buf) - len(marker) + 1)
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        parts = [bytes(self.buf)]
        have = len(self.buf)
        self.buf = bytearray()
        while have < n:
            chunk = self.sock.recv(min(1 << 22, n - have))
            if not chunk:
                raise HTTPError("connection closed mid-body")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    # -- request ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        if self.sock is None:
            self.connect()
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            head.append(f"{k}: {v}")
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body or b'')}")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        t0 = time.perf_counter()
        if body and len(body) > 65536:
            self.sock.sendall(raw_head)
            self.sock.sendall(body)
        else:
            self.sock.sendall(raw_head + (body or b""))
        status_and_headers = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status_line = status_and_headers[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise HTTPError(f"bad status line {status_and_headers[0]!r}")
        status = int(status_line[1])
        rh: dict[str, str] = {}
        for line in status_and_headers[1:]:
            k, _, v = line.partition(":")
            rh[k.strip().lower()] = v.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "chunked" in rh.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n"):  # trailers
                        pass
                    break
                parts.append(self._read_exact(size))
                self._read_exact(2)
            data = b"".join(parts)
        elif "content-length" in rh:
            data = self._read_exact(int(rh["content-length"]))
        else:  # read to EOF
            parts = [bytes(self.buf)]
            self.buf = bytearray()
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                parts.append(chunk)
            data = b"".join(parts)
            self.close()
        elapsed = time.perf_counter() - t0
        if rh.get("connection", "").lower() == "close":
            self.close()
        return Response(status, rh, data, elapsed)


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
) -> Response:
    """One-shot request on a fresh connection."""
    with Connection(host, port, timeout=timeout) as c:
        return c.request(method, path, body)
