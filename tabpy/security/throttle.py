"""Per-client limit on failed authentication attempts.

A client (an IP address) may fail ``limit`` times within ``window`` seconds; after that it is
*blocked* until its oldest failure in the window ages out. While blocked, the server refuses to
run the expensive password check for it and answers 429 with ``Retry-After``. Credentials that
can be confirmed cheaply (a recent successful login, a valid token) are still accepted, so a
legitimate client behind the same address as an attacker keeps working.

Memory is bounded: at most ``limit`` timestamps per client and ``max_clients`` clients, the
least recently failing ones being forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["DEFAULT_WINDOW", "FailureThrottle"]

DEFAULT_WINDOW = 60.0
DEFAULT_MAX_CLIENTS = 10_000


class FailureThrottle:
    def __init__(
        self,
        limit: int,
        window: float = DEFAULT_WINDOW,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limit`` = 0 turns throttling off."""
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until ``client`` may try again, or None if it is not blocked."""
        if self.limit <= 0:
            return None
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self._clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def record_failure(self, client: str) -> None:
        if self.limit <= 0:
            return
        failures = self._failures.get(client)
        if failures is None:
            failures = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(client)
        failures.append(self._clock())
