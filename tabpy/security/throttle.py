"""Limits on failed logins, per client address and user name, that hold under concurrency.

A client address may fail ``limit`` times within ``window`` seconds *for one user name*; after
that, logins as that user from that address are *blocked* until the oldest of those failures
ages out. The server then refuses to run the expensive password check and answers 429 with
``Retry-After``. Other user names from the same address are not affected, so a guesser cannot
lock out a colleague's new login by failing as someone else. Every address also has a ceiling
on its failures over all user names (:data:`ADDRESS_FACTOR` times ``limit``), so cycling
through invented names does not buy unlimited checks.

Checks are *reserved* before they run: :meth:`FailureThrottle.reserve` counts an attempt as a
failure from the moment its check starts, and the reservation is released only if the check
succeeds. Without this, a burst of concurrent wrong passwords would all be checked before the
first failure was recorded. With it, at most ``limit`` checks per (address, user name) can run
or have failed within a window, however many requests arrive at once.

Credentials that can be confirmed cheaply (a recent successful login, a valid token) are
accepted before this throttle is consulted; see :mod:`tabpy.security.authenticator`.

Memory is bounded: at most ``limit`` timestamps per key and ``max_keys`` keys of each kind, the
least recently failing ones being forgotten first; user names are cut to
:data:`USER_KEY_LENGTH` characters. Not thread-safe: the server uses it from its event loop.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "ADDRESS_FACTOR",
    "DEFAULT_WINDOW",
    "FailureThrottle",
    "Lockout",
    "Reservation",
    "USER_KEY_LENGTH",
]

DEFAULT_WINDOW = 60.0
DEFAULT_MAX_KEYS = 10_000
#: An address may fail this many times ``limit`` in a window, over all user names together.
ADDRESS_FACTOR = 5
#: Longer user names share a key with others of the same prefix (only ever stricter).
USER_KEY_LENGTH = 256

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Lockout:
    """A failure that has just blocked a key: worth one line in the log."""

    failures: int
    window: float
    retry_after: int
    #: True: this user name from this address; False: the address, whatever the user name.
    per_user: bool


@dataclass
class _Bucket:
    """Failures of one key within the window, plus checks running now (reserved)."""

    failures: deque[float] = field(default_factory=deque)
    reserved: int = 0

    def forget_before(self, cutoff: float) -> None:
        while self.failures and self.failures[0] <= cutoff:
            self.failures.popleft()

    @property
    def idle(self) -> bool:
        return not self.failures and not self.reserved


class _Counter(Generic[K]):
    """One kind of key (per address, or per address and user) with its own limit."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.buckets: OrderedDict[K, _Bucket] = OrderedDict()

    def retry_after(self, key: K, now: float) -> int | None:
        bucket = self.buckets.get(key)
        if bucket is None:
            return None
        bucket.forget_before(now - self.window)
        if bucket.idle:
            del self.buckets[key]
            return None
        if len(bucket.failures) + bucket.reserved < self.limit:
            return None
        if len(bucket.failures) < self.limit:
            return 1  # blocked by checks still running: they end within a second or so
        return max(1, math.ceil(bucket.failures[-self.limit] + self.window - now))

    def bucket(self, key: K) -> _Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = _Bucket()
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket

    def record(self, bucket: _Bucket, now: float) -> int | None:
        """Add a failure; the seconds of the block it starts, if it just filled the bucket."""
        bucket.forget_before(now - self.window)
        already_full = len(bucket.failures) >= self.limit
        bucket.failures.append(now)
        while len(bucket.failures) > self.limit:
            bucket.failures.popleft()
        if already_full or len(bucket.failures) < self.limit:
            return None
        return max(1, math.ceil(bucket.failures[0] + self.window - now))


class Reservation:
    """One check that has been counted in advance; end it with :meth:`release` or :meth:`fail`.

    Ending it twice does nothing, so ``fail()`` can sit in a ``finally`` after a ``release()``.
    """

    def __init__(self, throttle: FailureThrottle | None, buckets: tuple[_Bucket, ...]) -> None:
        self._throttle = throttle
        self._buckets = buckets
        self._open = True

    def release(self) -> None:
        """The check succeeded: it does not count."""
        self._end()

    def fail(self) -> Lockout | None:
        """The check failed: it counts as a failure from now on.

        Returns the lockout this failure starts, if it is the one that reached a limit.
        """
        if not self._end() or self._throttle is None:
            return None
        return self._throttle._record(self._buckets)

    def _end(self) -> bool:
        if not self._open:
            return False
        self._open = False
        for bucket in self._buckets:
            bucket.reserved -= 1
        return True


class FailureThrottle:
    def __init__(
        self,
        limit: int,
        window: float = DEFAULT_WINDOW,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limit`` = 0 turns throttling off."""
        self.limit = limit
        self.window = window
        self._clock = clock
        self._by_user: _Counter[tuple[str, str | None]] = _Counter(limit, window, max_keys)
        self._by_address: _Counter[str] = _Counter(limit * ADDRESS_FACTOR, window, max_keys)

    def retry_after(self, address: str, user: str | None) -> int | None:
        """Whole seconds until ``user`` may try again from ``address``; None if not blocked.

        ``user`` is None for attempts that name nobody (a malformed header, a bad token).
        """
        if self.limit <= 0:
            return None
        now = self._clock()
        waits = [
            wait
            for wait in (
                self._by_user.retry_after(_user_key(address, user), now),
                self._by_address.retry_after(address, now),
            )
            if wait is not None
        ]
        return max(waits) if waits else None

    def reserve(self, address: str, user: str | None) -> Reservation:
        """Count a check that is about to run; call only when :meth:`retry_after` is None.

        The caller must not yield to the event loop between the two calls, so that no other
        request can take the last free place in between.
        """
        if self.limit <= 0:
            return Reservation(None, ())
        buckets = (
            self._by_user.bucket(_user_key(address, user)),
            self._by_address.bucket(address),
        )
        for bucket in buckets:
            bucket.reserved += 1
        return Reservation(self, buckets)

    def record_failure(self, address: str, user: str | None) -> Lockout | None:
        """A failure whose check was cheap enough not to need a reservation."""
        return self.reserve(address, user).fail()

    def _record(self, buckets: tuple[_Bucket, ...]) -> Lockout | None:
        now = self._clock()
        user_bucket, address_bucket = buckets
        per_user = self._by_user.record(user_bucket, now)
        per_address = self._by_address.record(address_bucket, now)
        # When both fill at once, the broader block is the one worth reporting.
        if per_address is not None:
            return Lockout(self._by_address.limit, self.window, per_address, per_user=False)
        if per_user is not None:
            return Lockout(self._by_user.limit, self.window, per_user, per_user=True)
        return None


def _user_key(address: str, user: str | None) -> tuple[str, str | None]:
    return (address, None if user is None else user[:USER_KEY_LENGTH])
