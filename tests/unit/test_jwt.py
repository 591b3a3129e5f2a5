"""Bearer-token checks and the JWKS cache, with keys minted here and a fake fetch."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tabpy.security.jwks import JwksCache, parse_jwks
from tabpy.security.tokens import TokenRejected, token_scopes, unverified_kid, validate

ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


RSA_KEY = rsa_key()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk_of(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(private, rsa.RSAPrivateKey)
        else (jwt.algorithms.ECAlgorithm)
    )
    data = json.loads(algorithm.to_jwk(private.public_key()))
    data.update(kid=kid, **extra)
    return data


def mint(private: Any = RSA_KEY, kid: str = "rsa", algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60, "scope": "a b"}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, private, algorithm=algorithm, headers={"kid": kid})


KEYS = parse_jwks({"keys": [jwk_of(RSA_KEY, "rsa"), jwk_of(EC_KEY, "ec")]})


def check(token: str, audience: str | None = AUDIENCE, kid: str = "rsa") -> dict[str, Any]:
    return dict(validate(token, KEYS[kid], issuer=ISSUER, audience=audience))


def test_valid_rsa_and_ec_tokens() -> None:
    assert check(mint())["scope"] == "a b"
    assert check(mint(EC_KEY, "ec", "ES256"), kid="ec")["iss"] == ISSUER


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: mint(exp=int(time.time()) - 1), "Signature has expired"),
        (lambda: mint(iss="https://other/"), "Invalid issuer"),
        (lambda: mint(aud="api://other"), "Audience doesn't match"),
        (lambda: mint(rsa_key()), "Signature verification failed"),
        (lambda: mint(exp=None), 'Token is missing the "exp" claim'),
        (lambda: mint(iat=None), 'Token is missing the "iat" claim'),
        (lambda: mint(nbf=int(time.time()) + 60), "The token is not yet valid (nbf)"),
        (lambda: jwt.encode({"iss": ISSUER}, None, algorithm="none"), "alg value is not allowed"),
    ],
    ids=["expired", "issuer", "audience", "signature", "no-exp", "no-iat", "nbf", "alg-none"],
)
def test_rejections_name_the_reason(token: Any, reason: str) -> None:
    with pytest.raises(TokenRejected, match="^JWT validation failed: .*" + _escape(reason)):
        check(token())


def test_hmac_signed_with_the_public_key_is_rejected() -> None:
    # The classic confusion attack: HS256 keyed with the published RSA public key.
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa"}).encode())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60}
    signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenRejected, match="alg value is not allowed"):
        check(f"{signing_input}.{_b64url(signature)}")


def test_audience_is_ignored_when_not_configured() -> None:
    assert check(mint(aud="anything"), audience=None)


def test_scopes() -> None:
    assert token_scopes({"scope": "tabpy  tabpy:query"}) == {"tabpy", "tabpy:query"}
    assert token_scopes({}) == frozenset()
    with pytest.raises(TokenRejected, match="scope claim is not a string"):
        token_scopes({"scope": ["tabpy"]})


def test_kid_of_garbage() -> None:
    assert unverified_kid(mint(kid="k1")) == "k1"
    with pytest.raises(TokenRejected, match="Unable to resolve JWT signing key: Not enough"):
        unverified_kid("garbage")


def test_jwks_parsing_skips_unusable_keys() -> None:
    keys = parse_jwks(
        {
            "keys": [
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                jwk_of(EC_KEY, "enc", use="enc"),
                {"kty": "RSA", "kid": "broken"},
                jwk_of(RSA_KEY, "rsa"),
            ]
        }
    )
    assert list(keys) == ["rsa"]
    with pytest.raises(ValueError, match="no usable signing key"):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ValueError, match='"keys" list'):
        parse_jwks(["not", "a", "jwks"])


# --- the cache -----------------------------------------------------------------------------------


class FakeProvider:
    def __init__(self, *keys: dict[str, Any]) -> None:
        self.document: Any = {"keys": list(keys)}
        self.fetches = 0
        self.fail = False
        self.now = 0.0

    def fetch(self, uri: str, timeout: float) -> Any:
        self.fetches += 1
        if self.fail:
            raise OSError("connection refused")
        return self.document

    def clock(self) -> float:
        return self.now


def run(cache: JwksCache, *kids: str | None) -> list[str]:
    """The kid found for each lookup, or the rejection message."""

    async def lookups() -> list[str]:
        found = []
        for kid in kids:
            try:
                key = await cache.signing_key(kid)
                found.append(key.key_id or "?")
            except TokenRejected as err:
                found.append(str(err))
        return found

    return asyncio.run(lookups())


def cache_for(provider: FakeProvider) -> JwksCache:
    return JwksCache("https://idp/jwks", fetch=provider.fetch, clock=provider.clock)


def test_cache_fetches_once_and_refreshes_after_five_minutes() -> None:
    provider = FakeProvider(jwk_of(RSA_KEY, "a"))
    cache = cache_for(provider)
    assert run(cache, "a", "a") == ["a", "a"]
    assert provider.fetches == 1
    provider.now = 301

    async def stale_lookup() -> str | None:
        key = await cache.signing_key("a")  # answered from the cache at once...
        assert cache._refresh is not None  # ...while a refresh runs in the background
        await cache._refresh
        return key.key_id

    assert asyncio.run(stale_lookup()) == "a"
    assert provider.fetches == 2


def test_unknown_kid_forces_at_most_one_refresh_per_30_seconds() -> None:
    provider = FakeProvider(jwk_of(RSA_KEY, "a"))
    cache = cache_for(provider)
    assert run(cache, "a") == ["a"]
    provider.document = {"keys": [jwk_of(EC_KEY, "b")]}  # rotation
    assert run(cache, "b") == ["b"]
    assert provider.fetches == 2
    results = run(cache, "c", "a")
    assert provider.fetches == 2
    assert results[0].endswith("kid 'c': the JWKS was refreshed less than 30 s ago")
    assert "kid 'a'" in results[1]
    provider.now = 31
    assert run(cache, "c")[0].endswith("kid 'c': it is not in the JWKS")
    assert provider.fetches == 3


def test_failed_fetch_is_not_retried_for_30_seconds() -> None:
    provider = FakeProvider(jwk_of(RSA_KEY, "a"))
    provider.fail = True
    cache = cache_for(provider)
    first, second = run(cache, "a", "a")
    assert "OSError: connection refused" in first
    assert "next attempt in 30 s" in second
    assert provider.fetches == 1
    provider.fail = False
    provider.now = 30
    assert run(cache, "a") == ["a"]


def test_single_key_serves_tokens_without_kid() -> None:
    provider = FakeProvider(jwk_of(RSA_KEY, "only"))
    assert run(cache_for(provider), None) == ["only"]


def _escape(text: str) -> str:
    return re.escape(text)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
