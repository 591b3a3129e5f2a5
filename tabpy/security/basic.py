"""Checking HTTP Basic credentials against the password file, without blocking the server.

The slow hash runs in a small thread pool (``hashlib`` releases the GIL while it works), so
other requests keep flowing while a login is checked. Concurrent requests carrying the same
new credentials share one computation, and successful checks are remembered in a
:class:`~tabpy.security.verification_cache.VerificationCache`, so Tableau's stream of requests
with the same credentials costs one HMAC each.

The failure throttle is not applied here but by the caller
(:class:`~tabpy.security.authenticator.Authenticator`), which must reserve a place in it before
calling :meth:`BasicVerifier.verify`, unless :meth:`BasicVerifier.in_flight` says the same
check is already running.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tabpy.security.password_store import PasswordStore
from tabpy.security.verification_cache import VerificationCache

__all__ = ["BasicVerifier", "Outcome"]


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN_USER = "unknown user"
    WRONG_PASSWORD = "wrong password"


class BasicVerifier:
    def __init__(
        self,
        store: PasswordStore,
        cache: VerificationCache | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.store = store
        # Not ``cache or ...``: an empty cache is falsy (it has a length).
        self.cache = cache if cache is not None else VerificationCache()
        self._executor = executor or ThreadPoolExecutor(
            max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="tabpy-auth"
        )
        self._pending: dict[bytes, asyncio.Future[bool]] = {}

    def verify_cached(self, username: str, password: str) -> bool:
        """True if these exact credentials were verified recently (microseconds).

        A hit keeps the credentials in the cache for another full lifetime.
        """
        entry = self.store.lookup(username)
        if entry is None:
            return False
        fingerprint = self.cache.fingerprint(username, password, entry.hash_text)
        return self.cache.contains(username, fingerprint)

    def in_flight(self, username: str, password: str) -> bool:
        """True if a full check of these exact credentials is running: ``verify`` joins it."""
        entry = self.store.lookup(username)
        if entry is None or not self._pending:
            return False
        return self.cache.fingerprint(username, password, entry.hash_text) in self._pending

    async def verify(self, username: str, password: str) -> Outcome:
        """Run the full check off the event loop. ``username`` must already be lowercased."""
        entry = self.store.lookup(username)
        if entry is None:
            # Spend the same effort as for a real user, so response times do not reveal
            # which usernames exist.
            decoy = next(iter(self.store.entries.values()), None)
            if decoy is not None:
                await self._run(decoy.hash.verify, username, password)
            return Outcome.UNKNOWN_USER
        fingerprint = self.cache.fingerprint(username, password, entry.hash_text)
        pending = self._pending.get(fingerprint)
        if pending is None:
            pending = asyncio.ensure_future(self._run(entry.hash.verify, username, password))
            self._pending[fingerprint] = pending
            pending.add_done_callback(lambda _: self._pending.pop(fingerprint, None))
        if not await asyncio.shield(pending):
            return Outcome.WRONG_PASSWORD
        self.cache.add(username, fingerprint)
        return Outcome.ACCEPTED

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, check: Callable[[str, str], bool], username: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, check, username, password)
