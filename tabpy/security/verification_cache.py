"""Remembering successful password checks, so repeated Basic logins cost microseconds.

Verifying a stored hash is deliberately slow (milliseconds to hundreds of milliseconds), and
Tableau sends the same credentials with every request. After a successful check we keep, per
user, an HMAC-SHA256 of (username, password, stored hash) under a key generated randomly for
this process. A later request is accepted from the cache only if its HMAC matches in constant
time, so the cache holds no password and nothing an attacker could test guesses against
offline. Because the stored hash is part of the MAC, changing a user's password in the file
invalidates the entry by itself.

An entry lives for ``lifetime`` seconds (``TABPY_AUTH_CACHE_SECONDS``) *since it was last
used*: a client that keeps sending the right credentials, as Tableau does, is never sent back
to the full check, so it cannot be caught by a failed-login lockout that someone else caused.
Credentials that stop being used expire. A lifetime of 0 turns the cache off.

Bounded in size (least recently used entries go first).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["VerificationCache"]

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_LIFETIME = 600.0


class VerificationCache:
    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        lifetime: float = DEFAULT_LIFETIME,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def fingerprint(self, username: str, password: str, stored: str) -> bytes:
        """The HMAC that identifies one (user, password, stored hash) combination."""
        message = b"\0".join(
            part.encode("utf-8", "surrogatepass") for part in (username, password, stored)
        )
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def contains(self, username: str, fingerprint: bytes) -> bool:
        entry = self._entries.get(username)
        if entry is None:
            return False
        cached, expires = entry
        if expires <= self._clock():
            del self._entries[username]
            return False
        if not hmac.compare_digest(cached, fingerprint):
            return False
        self._entries[username] = (cached, self._clock() + self.lifetime)  # extended by use
        self._entries.move_to_end(username)
        return True

    def add(self, username: str, fingerprint: bytes) -> None:
        if self.lifetime <= 0:
            return
        self._entries[username] = (fingerprint, self._clock() + self.lifetime)
        self._entries.move_to_end(username)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
