"""Who makes an Arrow Flight call: the HTTP server's credentials, checked the HTTP way.

Flight accepts what HTTP accepts (SPEC 9), through gRPC middleware that reads the
``authorization`` header of every call:

* no authentication configured: every call is anonymous (but see ``shutdown``);
* Basic (``TABPY_PWD_FILE``): ``Basic <base64>`` checked against the password file, with the
  verification cache and the failure throttle of HTTP; success answers with
  ``authorization: Bearer <token>`` (:mod:`tabpy.arrow.sessions`) for later calls. A
  password may contain ``:``;
* OAuth: ``Bearer <jwt>`` validated like HTTP (issuer, JWKS, audience, required scopes; Flight
  has no endpoint scopes). With both configured, Basic and session tokens work too.

Failures are gRPC ``UNAUTHENTICATED`` with TabPy's messages, ``No credentials supplied`` or
``Invalid credentials``; the reason goes to the log. gRPC middleware does not see the client's
address, so Flight failures share one throttle bucket: after too many failures, new Basic
logins on Flight wait (cached credentials and tokens keep working).

The verifiers belong to the event loop, so :class:`FlightAuthentication` (on a gRPC thread)
runs :meth:`FlightCredentials.check` there and waits for the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass

import pyarrow.flight as flight

from tabpy.arrow.sessions import SessionTokens
from tabpy.security.basic import Outcome
from tabpy.security.tokens import TokenRejected
from tabpy.server.auth import CredentialAuthentication, parse_basic, parse_bearer, printable
from tabpy.server.principal import ANONYMOUS, Principal

__all__ = ["Caller", "FlightAuthentication", "FlightCredentials", "Rejected"]

logger = logging.getLogger(__name__)

NO_CREDENTIALS = "No credentials supplied"
INVALID = "Invalid credentials"
#: The throttle's client key for every Flight caller (see the module docstring).
FLIGHT_CLIENT = "arrow-flight"
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
        self.auth = auth if isinstance(auth, CredentialAuthentication) else None
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
        scheme = header.partition(" ")[0].lower()
        if scheme == "basic" and auth.basic is not None:
            return await self._basic(auth, header)
        token = parse_bearer(header)
        if token is not None:
            if auth.basic is not None:
                user = self.sessions.user_of(token, self._stamp)
                if user is not None:
                    return Caller(Principal("basic", user))
            if auth.bearer is not None:
                return await self._jwt(auth, token)
        logger.warning("Arrow Flight: authorization header is neither Basic nor a valid Bearer")
        raise self._failure(auth)

    async def _basic(self, auth: CredentialAuthentication, header: str) -> Caller:
        assert auth.basic is not None
        credentials = parse_basic(header)
        if credentials is None:
            logger.warning("Arrow Flight: invalid string in encoded credentials")
            raise self._failure(auth)
        username, password = credentials[0].lower(), credentials[1]
        if not auth.basic.verify_cached(username, password):
            retry_after = auth.throttle.retry_after(FLIGHT_CLIENT)
            if retry_after is not None:
                raise Rejected(f"{INVALID}: too many failed logins, try again in {retry_after} s")
            outcome = await auth.basic.verify(username, password)
            if outcome is not Outcome.ACCEPTED:
                logger.warning(
                    'Arrow Flight: %s for user name "%s"', outcome.value, printable(username)
                )
                raise self._failure(auth)
        stamp = self._stamp(username)
        token = self.sessions.issue(username, stamp) if stamp is not None else None
        return Caller(Principal("basic", username), token)

    async def _jwt(self, auth: CredentialAuthentication, token: str) -> Caller:
        assert auth.bearer is not None
        try:
            identity = await auth.bearer.verify(token)
        except TokenRejected as reason:
            logger.error("Arrow Flight: %s", reason)
            raise self._failure(auth) from None
        return Caller(Principal("bearer", identity.subject, identity.scopes))

    def _stamp(self, username: str) -> str | None:
        assert self.auth is not None and self.auth.basic is not None
        entry = self.auth.basic.store.lookup(username)
        return entry.hash_text if entry is not None else None

    @staticmethod
    def _failure(auth: CredentialAuthentication) -> Rejected:
        auth.throttle.record_failure(FLIGHT_CLIENT)
        return Rejected(INVALID)


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
