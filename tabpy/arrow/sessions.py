"""Opaque session tokens for Arrow Flight clients that log in with Basic credentials.

A successful Basic login on a Flight call is answered with ``authorization: Bearer <token>``,
which the client may send instead of its password from then on (TabPy 2.16's contract). Each
token is 43 URL-safe characters (256 random bits) and lives for an hour; a login reuses the
user's newest token while more than five minutes of it remain, and a user holds at most two.

Unlike TabPy, a token dies with the credentials it came from: it remembers the authenticator's
*stamp* of the user's credentials (:meth:`tabpy.security.authenticator.Authenticator.stamp`)
and compares it on every use, so changing the password or removing the user from the password
file revokes it at once. The total number of tokens is bounded, oldest forgotten first.

Not thread-safe: the server uses it from the event loop only.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SessionTokens"]

LIFETIME = 3600.0
RENEW_BEFORE = 300.0
PER_USER = 2
MAX_TOKENS = 10_000


@dataclass
class _Session:
    user: str
    stamp: str  # the stamp of the user's credentials when the token was issued
    expires: float


class SessionTokens:
    def __init__(
        self,
        *,
        lifetime: float = LIFETIME,
        renew_before: float = RENEW_BEFORE,
        per_user: int = PER_USER,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.per_user = per_user
        self.max_tokens = max_tokens
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # oldest first
        self._by_user: dict[str, list[str]] = {}

    def issue(self, user: str, stamp: str) -> str:
        """A token for ``user``, who has just proved the credentials whose stamp is ``stamp``."""
        now = self._clock()
        tokens = self._by_user.setdefault(user, [])
        if tokens:
            newest = self._sessions[tokens[-1]]
            if newest.stamp == stamp and newest.expires - now > self.renew_before:
                return tokens[-1]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = _Session(user, stamp, now + self.lifetime)
        tokens.append(token)
        while len(tokens) > self.per_user:
            self._forget(tokens[0])
        while len(self._sessions) > self.max_tokens:
            self._forget(next(iter(self._sessions)))
        return token

    def user_of(self, token: str, stamp_of: Callable[[str], str | None]) -> str | None:
        """The user a live token belongs to; ``stamp_of(user)`` is their credentials' stamp now."""
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires <= self._clock() or stamp_of(session.user) != session.stamp:
            self._forget(token)
            return None
        return session.user

    def __len__(self) -> int:
        return len(self._sessions)

    def _forget(self, token: str) -> None:
        session = self._sessions.pop(token, None)
        if session is None:
            return
        tokens = self._by_user.get(session.user, [])
        if token in tokens:
            tokens.remove(token)
        if not tokens:
            self._by_user.pop(session.user, None)
