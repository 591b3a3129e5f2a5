"""Checking an OAuth 2.0 bearer token: signing key from the JWKS, then claims and scopes."""

from __future__ import annotations

from dataclasses import dataclass

from tabpy.config import Settings
from tabpy.security.jwks import JwksCache
from tabpy.security.tokens import (
    TokenRejected,
    claim_values,
    missing_scopes,
    token_scopes,
    unverified_kid,
    validate,
)

__all__ = ["BearerVerifier", "TokenIdentity", "endpoint_scope"]


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    subject: str | None
    scopes: frozenset[str]
    #: The values of the roles claim (``TABPY_OAUTH_ROLES_CLAIM``); empty when it is not set.
    claim: frozenset[str] = frozenset()


class BearerVerifier:
    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        assert settings.oauth_issuer is not None and settings.oauth_jwks_uri is not None
        self.issuer = settings.oauth_issuer
        self.audience = settings.oauth_audience
        self.required_scopes = settings.oauth_required_scopes
        self.roles_claim = settings.oauth_roles_claim
        self.jwks = jwks or JwksCache(settings.oauth_jwks_uri)

    async def verify(self, token: str) -> TokenIdentity:
        """Raise ``TokenRejected`` with the reason unless the token is valid for this server."""
        key = await self.jwks.signing_key(unverified_kid(token))
        claims = validate(token, key, issuer=self.issuer, audience=self.audience)
        scopes = token_scopes(claims)
        missing = missing_scopes(scopes, self.required_scopes)
        if missing:
            raise TokenRejected(f"JWT missing required scope(s): {', '.join(missing)}")
        subject = claims.get("sub")
        claim = claim_values(claims, self.roles_claim) if self.roles_claim else frozenset()
        return TokenIdentity(subject if isinstance(subject, str) else None, scopes, claim)

    def close(self) -> None:
        self.jwks.close()


def endpoint_scope(path: str, method: str, settings: Settings) -> str | None:
    """The scope a route needs under ``TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES`` (None: no scope).

    ``path`` is relative to the Subdirectory prefix. Computed from the path and method alone,
    so routes added later get the right scope without being listed anywhere.
    """
    method = method.upper()
    if method == "OPTIONS":
        return None
    if _under(path, "/query"):
        return settings.oauth_query_scope
    if path == "/evaluate":
        return settings.oauth_evaluate_scope
    if path == "/configurations/endpoint_upload_destination" or _under(path, "/artifacts"):
        # /artifacts (our upload route for deploys) is not in TabPy; it is part of deploying.
        return settings.oauth_deploy_scope
    if _under(path, "/endpoints") and method in ("POST", "PUT", "DELETE", "PATCH"):
        return settings.oauth_deploy_scope
    return None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")
