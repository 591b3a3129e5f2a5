"""Deciding who is calling, for every transport: Basic, bearer tokens, or no authentication.

HTTP (:mod:`tabpy.server.auth_middleware`) and Arrow Flight (:mod:`tabpy.arrow.credentials`)
both hand :meth:`Authenticator.authenticate` the same three things (the ``Authorization``
value, the client's address, and the endpoint scope the operation needs) and get back a
:class:`~tabpy.security.principal.Principal` or a :mod:`tabpy.errors` refusal, which each maps
to its own wire format. The rules, as TabPy has them:

* **none** (no password file, no OAuth): well-formed Basic credentials are refused with
  :class:`~tabpy.errors.CredentialsNotExpected` (the client thinks the server is protected);
  anything else is anonymous.
* **Basic**: the credentials must match the password file. The password is everything after
  the *first* colon, so passwords with colons work (TabPy refuses them).
* **bearer**: a JWT valid for this server; when endpoint scopes are enforced, a token without
  the operation's scope is refused with :class:`~tabpy.errors.InsufficientScope`.
* **both**: the header's scheme picks the method; no header or another scheme means Basic.

The principal comes back with its roles filled in by the server's
:class:`~tabpy.security.access.Authorization` (when ``TABPY_AUTHZ`` is on), so both transports
see the same ones.

Every :class:`~tabpy.errors.NotAuthenticated` looks the same whatever the reason; the reason
goes to the log, with every client-supplied value cut to a bounded length.

Order of the Basic checks, cheapest first, so that guessing stays slow and Tableau stays in:

1. credentials verified recently are accepted from the cache (microseconds), even while their
   address is blocked; each use keeps them cached (``TABPY_AUTH_CACHE_SECONDS``);
2. a request with the same credentials as a check already running joins that check;
3. otherwise the throttle must have room for (address, user name), or the answer is
   :class:`~tabpy.errors.TooManyFailures`; the attempt is reserved in the throttle *before*
   the slow hash runs, and released only if the password is right
   (see :mod:`tabpy.security.throttle`).

Not thread-safe: everything runs on the server's event loop (Flight's gRPC threads hand their
checks to it).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal

from tabpy.config import Settings
from tabpy.errors import (
    CredentialsNotExpected,
    InsufficientScope,
    NotAuthenticated,
    TooManyFailures,
)
from tabpy.security.access import AccessSource, Authorization
from tabpy.security.authorization import parse_basic, parse_bearer, scheme_of
from tabpy.security.basic import BasicVerifier, Outcome
from tabpy.security.log_text import printable
from tabpy.security.oauth import BearerVerifier
from tabpy.security.oauth_settings import validate_oauth_settings
from tabpy.security.password_store import PasswordStore
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.security.roles import validate_authz_settings
from tabpy.security.throttle import FailureThrottle, Lockout
from tabpy.security.tokens import TokenRejected
from tabpy.security.verification_cache import VerificationCache

__all__ = ["Authenticator", "CredentialScheme", "build_authenticator"]

logger = logging.getLogger(__name__)

CredentialScheme = Literal["basic", "bearer"]

#: Longest rejection reason logged for a bearer token (they quote parts of the token).
_REASON_LIMIT = 512


class Authenticator:
    """The one place that turns credentials into a :class:`Principal`."""

    def __init__(
        self,
        *,
        basic: BasicVerifier | None = None,
        bearer: BearerVerifier | None = None,
        throttle: FailureThrottle | None = None,
        enforce_endpoint_scopes: bool = False,
        authorization: Authorization | None = None,
    ) -> None:
        self.basic = basic
        self.bearer = bearer
        self.throttle = throttle if throttle is not None else FailureThrottle(0)
        self.enforce_endpoint_scopes = enforce_endpoint_scopes
        self.authorization = authorization or Authorization(enabled=False)

    @property
    def schemes(self) -> frozenset[CredentialScheme]:
        """The credentials this server accepts; empty when it has no authentication."""
        found: set[CredentialScheme] = set()
        if self.basic is not None:
            found.add("basic")
        if self.bearer is not None:
            found.add("bearer")
        return frozenset(found)

    async def authenticate(
        self, authorization: str | None, address: str, required_scope: str | None = None
    ) -> Principal:
        """Who sent ``authorization`` from ``address``; raise a :mod:`tabpy.errors` refusal.

        ``address`` keys the failed-login throttle: the caller must make sure the client cannot
        choose it (:mod:`tabpy.security.client_address`). ``required_scope`` is the endpoint
        scope of the operation (:func:`tabpy.security.oauth.endpoint_scope`), checked for
        bearer tokens when ``TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES`` is on.
        """
        if self.basic is None and self.bearer is None:
            if authorization is not None and parse_basic(authorization) is not None:
                logger.warning("Failing with 406 for Not Acceptable")
                raise CredentialsNotExpected()
            return ANONYMOUS
        scheme = scheme_of(authorization)
        if self.bearer is not None and (scheme == "bearer" or self.basic is None):
            return await self._bearer(authorization, address, required_scope)
        return await self._basic(authorization, address)

    def basic_principal(self, user: str) -> Principal:
        """The principal of Basic user ``user`` (lowercased), whose password was checked."""
        return self.authorization.resolve(Principal("basic", user))

    def stamp(self, user: str) -> str | None:
        """An opaque value that changes whenever ``user``'s Basic credentials change.

        None if ``user`` is not in the password file. Anything that stands in for a Basic
        login (Arrow Flight's session tokens) keeps it and compares it on every use, so a
        password change or removal revokes it at once.
        """
        entry = self.basic.store.lookup(user) if self.basic is not None else None
        if entry is None:
            return None
        return hashlib.sha256(entry.hash_text.encode("utf-8", "surrogatepass")).hexdigest()

    def reload(self) -> None:
        """Re-read the password file (SIGHUP)."""
        if self.basic is not None:
            self.basic.store.reload()

    def close(self) -> None:
        """Stop the verifiers' threads; called once at shutdown."""
        if self.basic is not None:
            self.basic.close()
        if self.bearer is not None:
            self.bearer.close()

    # --- Basic -----------------------------------------------------------------------------------

    async def _basic(self, header: str | None, address: str) -> Principal:
        assert self.basic is not None
        if header is None:
            logger.debug("Authorization header not found")
            raise NotAuthenticated("basic")
        credentials = parse_basic(header)
        if credentials is None:
            logger.warning("Invalid string in encoded credentials from %s", printable(address))
            raise self._failure(address, None, "basic")
        username, password = credentials[0].lower(), credentials[1]
        if self.basic.verify_cached(username, password):
            return self.basic_principal(username)
        lockout = None
        if self.basic.in_flight(username, password):
            # The same credentials are being checked: their result is this request's too, at
            # no extra cost, so it takes no place in the throttle.
            outcome = await self.basic.verify(username, password)
        else:
            outcome, lockout = await self._reserved_check(username, password, address)
        if outcome is Outcome.ACCEPTED:
            return self.basic_principal(username)
        if outcome is Outcome.UNKNOWN_USER:
            logger.warning('User name "%s" not found', printable(username))
        else:
            logger.warning('Wrong password for user name "%s"', printable(username))
        _log_lockout(address, username, lockout)
        logger.warning("Failing with 401 for unauthorized request")
        raise NotAuthenticated("basic")

    async def _reserved_check(
        self, username: str, password: str, address: str
    ) -> tuple[Outcome, Lockout | None]:
        """The full check, counted as a failure before it starts (see the module docstring)."""
        assert self.basic is not None
        retry_after = self.throttle.retry_after(address, username)
        if retry_after is not None:
            # Blocked: the expensive check is exactly what a password guesser needs.
            raise TooManyFailures(retry_after)
        reservation = self.throttle.reserve(address, username)
        try:
            outcome = await self.basic.verify(username, password)
        except BaseException:
            reservation.fail()  # an error or a cancellation counts: the hash may have run
            raise
        if outcome is Outcome.ACCEPTED:
            reservation.release()
            return outcome, None
        return outcome, reservation.fail()

    # --- bearer ----------------------------------------------------------------------------------

    async def _bearer(
        self, header: str | None, address: str, required_scope: str | None
    ) -> Principal:
        assert self.bearer is not None
        if header is None:
            logger.debug("Authorization header not found")
            raise NotAuthenticated("bearer")
        token = parse_bearer(header)
        if token is None:
            logger.warning("Authorization header from %s is not a Bearer token", printable(address))
            raise self._failure(address, None, "bearer")
        try:
            # Cheap (a signature check; the JWKS is cached), so a valid token is accepted even
            # from a blocked address.
            identity = await self.bearer.verify(token)
        except TokenRejected as reason:
            logger.error("%s", printable(str(reason), _REASON_LIMIT))
            raise self._failure(address, None, "bearer") from None
        if (
            self.enforce_endpoint_scopes
            and required_scope is not None
            and required_scope not in identity.scopes
        ):
            logger.error("Failing with 403 for insufficient scope: %s is required", required_scope)
            raise InsufficientScope()
        principal = Principal("bearer", identity.subject, identity.scopes)
        return self.authorization.resolve(principal, identity.claim)

    # --- shared ----------------------------------------------------------------------------------

    def _failure(
        self, address: str, user: str | None, scheme: CredentialScheme
    ) -> NotAuthenticated | TooManyFailures:
        """A failure whose check was cheap: counted, unless the client is already blocked."""
        retry_after = self.throttle.retry_after(address, user)
        if retry_after is not None:
            return TooManyFailures(retry_after)
        _log_lockout(address, user, self.throttle.record_failure(address, user))
        logger.warning("Failing with 401 for unauthorized request")
        return NotAuthenticated(scheme)


def _log_lockout(address: str, user: str | None, lockout: Lockout | None) -> None:
    if lockout is None:
        return
    if lockout.per_user:
        whom = f' as user "{printable(user)}"' if user is not None else " without a user name"
    else:
        whom = " over all user names"
    logger.warning(
        "Client %s failed to authenticate %d times within %.0f s%s; refusing its attempts for %d s",
        printable(address),
        lockout.failures,
        lockout.window,
        whom,
        lockout.retry_after,
    )


def build_authenticator(settings: Settings, rules: AccessSource | None = None) -> Authenticator:
    """The authenticator the settings ask for; raises ``ConfigError`` for bad settings.

    ``rules`` is where grants and endpoint owners are read (the registry); without it nothing
    is granted when ``TABPY_AUTHZ`` is on.
    """
    validate_oauth_settings(settings)
    validate_authz_settings(settings)
    basic = None
    if settings.pwd_file is not None:
        store = PasswordStore(settings.pwd_file)
        store.load()
        basic = BasicVerifier(store, VerificationCache(lifetime=settings.auth_cache_seconds))
    bearer = BearerVerifier(settings) if settings.oauth_enabled else None
    return Authenticator(
        basic=basic,
        bearer=bearer,
        throttle=FailureThrottle(settings.auth_max_failures),
        enforce_endpoint_scopes=settings.oauth_enforce_endpoint_scopes,
        authorization=Authorization.from_settings(settings, rules),
    )
