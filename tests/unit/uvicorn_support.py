"""A real uvicorn server in a thread of the test process, on an ephemeral port."""

from __future__ import annotations

import threading
import time
from typing import TypeVar

import uvicorn

T = TypeVar("T", bound="ThreadedServer")


class ThreadedServer:
    """Serves ``config`` (whose port should be 0) from ``with`` until the block ends."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    def __enter__(self: T) -> T:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
