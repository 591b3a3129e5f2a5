"""Who makes an Arrow Flight call: the gRPC adapter of the server's one authenticator.

Flight accepts what HTTP accepts, checked by the same
:class:`~tabpy.security.authenticator.Authenticator` (Basic with its verification cache and
failure throttle, bearer JWTs), through gRPC middleware that reads the ``authorization``
header of every call. What Flight adds:

* no authentication configured: every call is anonymous, Basic credentials included (but see
  ``shutdown`` in :mod:`tabpy.arrow.flight`);
* a successful Basic login is answered with ``authorization: Bearer <token>``
  (:mod:`tabpy.arrow.sessions`), which the client may send instead of its password from then
  on. The token is tied to the authenticator's :meth:`~Authenticator.stamp` of the user, so a
  password change revokes it;
* Flight has no endpoint scopes: tokens need only the globally required ones.

Failures are gRPC ``UNAUTHENTICATED`` with TabPy's messages, ``No credentials supplied`` or
``Invalid credentials``; the reason goes to the log. gRPC middleware does not see the client's
address, so every Flight caller is throttled as the one address :data:`FLIGHT_ADDRESS` (per
user name, as for HTTP).

The authenticator belongs to the event loop, so :class:`FlightAuthentication` (on a gRPC
thread) runs :meth:`FlightCredentials.check` there and waits for the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass

import pyarrow.flight as flight

from tabpy.arrow.sessions import SessionTokens
from tabpy.errors import TabPyError, TooManyFailures
from tabpy.security.authenticator import Authenticator
from tabpy.security.authorization import parse_bearer
from tabpy.security.principal import ANONYMOUS, Principal

__all__ = ["Caller", "FlightAuthentication", "FlightCredentials", "Rejected"]

logger = logging.getLogger(__name__)

NO_CREDENTIALS = "No credentials supplied"
INVALID = "Invalid credentials"
#: The throttle's client address for every Flight caller (see the module docstring).
FLIGHT_ADDRESS = "arrow-flight"
#: Longest wait for a check on the event loop (a cold JWKS fetch may take 10 s).
CHECK_TIMEOUT = 15.0


class Rejected(Exception):
    """The call is refused; ``str()`` is what the client is told."""


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    #: A session token to send back (after a Basic login), else None.
    token: str | None = None


class FlightCredentials:
    def __init__(self, auth: object, sessions: SessionTokens | None = None) -> None:
        """``auth`` is the server's authenticator (anything else: no authentication)."""
        self.auth = auth if isinstance(auth, Authenticator) and auth.schemes else None
        self.sessions = sessions or SessionTokens()

    @property
    def required(self) -> bool:
        return self.auth is not None

    async def check(self, header: str | None) -> Caller:
        """Decide who sent ``header`` (an ``authorization`` value); raise ``Rejected``."""
        auth = self.auth
        if auth is None:
            return Caller(ANONYMOUS)
        if header is None:
            raise Rejected(NO_CREDENTIALS)
        session = self._session(auth, header)
        if session is not None:
            return Caller(session)
        try:
            principal = await auth.authenticate(header, FLIGHT_ADDRESS)
        except TooManyFailures as refusal:
            raise Rejected(
                f"{INVALID}: too many failed logins, try again in {refusal.retry_after} s"
            ) from None
        except TabPyError:
            raise Rejected(INVALID) from None
        token = None
        if principal.scheme == "basic" and principal.user is not None:
            stamp = auth.stamp(principal.user)
            token = self.sessions.issue(principal.user, stamp) if stamp is not None else None
        return Caller(principal, token)

    def _session(self, auth: Authenticator, header: str) -> Principal | None:
        """The principal of a live session token, if ``header`` carries one."""
        if "basic" not in auth.schemes:
            return None
        token = parse_bearer(header)
        if token is None:
            return None
        user = self.sessions.user_of(token, auth.stamp)
        return auth.basic_principal(user) if user is not None else None


class FlightAuthentication(flight.ServerMiddlewareFactory):
    """gRPC middleware: authenticates each call, and hands out session tokens."""

    def __init__(self, credentials: FlightCredentials, loop: asyncio.AbstractEventLoop) -> None:
        self.credentials = credentials
        self.loop = loop

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> CallerMiddleware:
        if not self.credentials.required:
            return CallerMiddleware(Caller(ANONYMOUS))
        # Repeating one value is harmless; two different credentials are refused.
        values = {value for name, items in headers.items() if name.lower() == "authorization"
                  for value in items}  # fmt: skip
        if len(values) > 1:
            raise flight.FlightUnauthenticatedError(f"{INVALID}: send one authorization header")
        header = next(iter(values), None)
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        try:
            future = asyncio.run_coroutine_threadsafe(self.credentials.check(header), self.loop)
        except RuntimeError:  # the event loop has stopped: the server is going away
            raise flight.FlightUnavailableError("The server is shutting down") from None
        try:
            caller = future.result(CHECK_TIMEOUT)
        except Rejected as refusal:
            raise flight.FlightUnauthenticatedError(str(refusal)) from None
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            future.cancel()
            raise flight.FlightUnavailableError(
                "Checking the credentials took too long; try again"
            ) from None
        return CallerMiddleware(caller)


class CallerMiddleware(flight.ServerMiddleware):
    """One call's caller; handlers read it with ``context.get_middleware("auth")``."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def sending_headers(self) -> dict[str, str] | None:
        if self.caller.token is None:
            return None
        return {"authorization": f"Bearer {self.caller.token}"}
