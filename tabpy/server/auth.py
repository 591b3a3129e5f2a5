"""Request authentication: Basic (password file), OAuth 2.0 bearer tokens, or none.

Handlers do not call anything here: :class:`~tabpy.server.auth_middleware.AuthMiddleware`
authenticates every request that reaches an API route before the route runs, and records the
result as ``request.state.principal``. ``context.auth.check(request)`` remains as a cheap
assertion that this happened.

Decisions (TabPy 2.16, SPEC 4.2):

* **none**: well-formed Basic credentials get 406 (the client thinks the server is
  protected); anything else passes.
* **Basic**: 401 with ``WWW-Authenticate: Basic realm="<Name>"`` unless the credentials match
  the password file. The password is everything after the *first* colon, so passwords with
  colons work (TabPy refuses them).
* **OAuth**: ``Bearer <token>``; 401 with a Bearer challenge when invalid, 403
  ``insufficient_scope`` when endpoint scopes are enforced and the route's scope is missing.
* **both**: the header's scheme picks the method; no header or another scheme means Basic.

Every 401 has the same body whatever the reason; the reason goes to the log. A client that
keeps failing is throttled (429, see :mod:`tabpy.security.throttle`).
"""

from __future__ import annotations

import base64
import binascii
import logging

from starlette.requests import Request

from tabpy.config import Settings
from tabpy.errors import (
    CredentialsNotExpected,
    InsufficientScope,
    NotAuthenticated,
    TooManyFailures,
)
from tabpy.registry.service_info import ServiceInfo
from tabpy.security.basic import BasicVerifier, Outcome
from tabpy.security.oauth import BearerVerifier, endpoint_scope
from tabpy.security.oauth_settings import validate_oauth_settings
from tabpy.security.password_store import PasswordStore
from tabpy.security.throttle import FailureThrottle
from tabpy.security.tokens import TokenRejected
from tabpy.server.principal import ANONYMOUS, Principal, principal_of

__all__ = [
    "CredentialAuthentication",
    "NoAuthentication",
    "build_authenticator",
    "parse_basic",
    "parse_bearer",
    "printable",
]

logger = logging.getLogger(__name__)


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(username, password)`` from a Basic header, or None when malformed."""
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def parse_bearer(header: str) -> str | None:
    """The token from ``Bearer <token>`` (scheme case-insensitive, exactly one space)."""
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


class _Authenticator:
    def check(self, request: Request) -> None:
        if principal_of(request) is None:
            # Fail closed: a route wired outside the app's router would otherwise be open.
            raise RuntimeError(
                f"{request.method} {request.url.path} was not authenticated: the route must be "
                "served through create_app(), whose AuthMiddleware protects every API route"
            )

    def reload(self) -> None:
        pass

    def close(self) -> None:
        pass


class NoAuthentication(_Authenticator):
    """The server has no credentials configured."""

    def __init__(self, realm: str) -> None:
        self.realm = realm

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is not None and parse_basic(header) is not None:
            logger.warning("Failing with 406 for Not Acceptable")
            raise CredentialsNotExpected()
        return ANONYMOUS


class CredentialAuthentication(_Authenticator):
    """Basic and/or OAuth, with per-client failure throttling."""

    def __init__(
        self,
        settings: Settings,
        realm: str,
        prefix: str,
        basic: BasicVerifier | None,
        bearer: BearerVerifier | None,
        throttle: FailureThrottle,
    ) -> None:
        assert basic is not None or bearer is not None
        self.settings = settings
        self.realm = realm
        self.prefix = prefix
        self.basic = basic
        self.bearer = bearer
        self.throttle = throttle

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        client = request.client.host if request.client else "-"
        scheme = header.partition(" ")[0].lower() if header else ""
        if self.bearer is not None and (scheme == "bearer" or self.basic is None):
            return await self._bearer(request, header, client)
        return await self._basic(header, client)

    def reload(self) -> None:
        if self.basic is not None:
            self.basic.store.reload()

    def close(self) -> None:
        if self.basic is not None:
            self.basic.close()
        if self.bearer is not None:
            self.bearer.close()

    # --- Basic -----------------------------------------------------------------------------------

    async def _basic(self, header: str | None, client: str) -> Principal:
        assert self.basic is not None
        challenge = "basic"
        if header is None:
            logger.debug("Authorization header not found")
            raise NotAuthenticated(challenge)
        credentials = parse_basic(header)
        if credentials is None:
            logger.warning("Invalid string in encoded credentials from %s", client)
            raise self._failure(client, challenge)
        username, password = credentials[0].lower(), credentials[1]
        if self.basic.verify_cached(username, password):
            return Principal("basic", username)
        retry_after = self.throttle.retry_after(client)
        if retry_after is not None:
            # Blocked: the expensive check is exactly what a password guesser needs.
            raise TooManyFailures(retry_after)
        outcome = await self.basic.verify(username, password)
        if outcome is Outcome.ACCEPTED:
            return Principal("basic", username)
        if outcome is Outcome.UNKNOWN_USER:
            logger.warning('User name "%s" not found', printable(username))
        else:
            logger.warning('Wrong password for user name "%s"', printable(username))
        raise self._failure(client, challenge)

    # --- Bearer ----------------------------------------------------------------------------------

    async def _bearer(self, request: Request, header: str | None, client: str) -> Principal:
        assert self.bearer is not None
        challenge = "bearer"
        if header is None:
            logger.debug("Authorization header not found")
            raise NotAuthenticated(challenge)
        token = parse_bearer(header)
        if token is None:
            logger.warning("Authorization header from %s is not a Bearer token", client)
            raise self._failure(client, challenge)
        try:
            identity = await self.bearer.verify(token)
        except TokenRejected as reason:
            logger.error("%s", reason)
            retry_after = self.throttle.retry_after(client)
            if retry_after is not None:
                raise TooManyFailures(retry_after) from None
            raise self._failure(client, challenge) from None
        if self.settings.oauth_enforce_endpoint_scopes:
            scope = endpoint_scope(self._relative_path(request), request.method, self.settings)
            if scope is not None and scope not in identity.scopes:
                logger.error("Failing with 403 for insufficient scope: %s is required", scope)
                raise InsufficientScope()
        return Principal("bearer", identity.subject, identity.scopes)

    # --- shared ----------------------------------------------------------------------------------

    def _failure(self, client: str, challenge: str) -> NotAuthenticated:
        self.throttle.record_failure(client)
        retry_after = self.throttle.retry_after(client)
        if retry_after is not None:
            logger.warning(
                "Client %s failed to authenticate %d times within %.0f s; refusing its "
                "attempts for %d s",
                client,
                self.throttle.limit,
                self.throttle.window,
                retry_after,
            )
        logger.warning("Failing with 401 for unauthorized request")
        return NotAuthenticated(challenge)

    def _relative_path(self, request: Request) -> str:
        path = request.url.path
        return path[len(self.prefix) :] if path.startswith(self.prefix + "/") else path


def build_authenticator(
    settings: Settings, service_info: ServiceInfo
) -> NoAuthentication | CredentialAuthentication:
    """The authenticator the settings ask for; raises ``ConfigError`` for bad settings."""
    realm = service_info.name
    validate_oauth_settings(settings)
    if settings.pwd_file is None and not settings.oauth_enabled:
        return NoAuthentication(realm)
    basic = None
    if settings.pwd_file is not None:
        store = PasswordStore(settings.pwd_file)
        store.load()
        basic = BasicVerifier(store)
    bearer = BearerVerifier(settings) if settings.oauth_enabled else None
    subdirectory = service_info.subdirectory.strip("/")
    prefix = f"/{subdirectory}" if subdirectory else ""
    throttle = FailureThrottle(settings.auth_max_failures)
    return CredentialAuthentication(settings, realm, prefix, basic, bearer, throttle)


def printable(text: str) -> str:
    """``text`` with non-printable characters escaped, so a client cannot forge log lines."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
