"""Validating an OAuth 2.0 bearer token (a signed JWT) once its signing key is known.

Pure: no network, no logging. Every rejection is a :class:`TokenRejected` whose message is the
reason for the server log; it never contains the token.

PyJWT (and with it cryptography) is imported by the functions that need it, on the first bearer
token: a server without OAuth never loads it, which keeps several MB out of its memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jwt

__all__ = [
    "TokenRejected",
    "claim_values",
    "missing_scopes",
    "token_scopes",
    "unverified_kid",
    "validate",
]

# Claims a token must carry; nbf is honoured when present.
REQUIRED_CLAIMS = ("exp", "iat", "iss")


class TokenRejected(Exception):
    """The token is not acceptable; ``str()`` is the reason, fit for the log."""


def unverified_kid(token: str) -> str | None:
    """The ``kid`` of the token's header, read before the signature can be checked."""
    import jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as err:
        raise TokenRejected(f"Unable to resolve JWT signing key: {err}") from None
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenRejected("Unable to resolve JWT signing key: the kid header is not a string")
    return kid


def validate(token: str, key: jwt.PyJWK, *, issuer: str, audience: str | None) -> Mapping[str, Any]:
    """Check signature and claims; return the claims.

    The algorithm is the key's own (from the JWKS), never the one the token names, so a token
    cannot downgrade to ``none`` or to HMAC with the public key. No clock leeway.
    """
    import jwt

    try:
        claims: Mapping[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            issuer=issuer,
            audience=audience,
            options={"require": list(REQUIRED_CLAIMS), "verify_aud": audience is not None},
        )
    except jwt.PyJWTError as err:
        raise TokenRejected(f"JWT validation failed: {err}") from None
    return claims


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The space-separated ``scope`` claim as a set (empty when absent)."""
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenRejected("JWT scope claim is not a string")
    return frozenset(scope.split())


def missing_scopes(have: frozenset[str], required: Iterable[str]) -> list[str]:
    return [scope for scope in required if scope not in have]


def claim_values(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """The string values of claim ``name`` (a string or a list of strings); empty when absent.

    A dotted name walks into objects (``realm_access.roles``), as some identity providers nest
    their roles. Values of other types are ignored, not refused: the token is valid, it merely
    grants nothing through them.
    """
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return frozenset()
        value = value[part]
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()
