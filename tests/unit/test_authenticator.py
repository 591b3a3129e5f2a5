"""The transport-neutral authenticator, without a server: Basic, bearer, none and both, and the
failure throttle under concurrency (full checks are counted at the verifier's thread pool)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tabpy.config import load_settings
from tabpy.errors import (
    CredentialsNotExpected,
    InsufficientScope,
    NotAuthenticated,
    TabPyError,
    TooManyFailures,
)
from tabpy.security.authenticator import Authenticator, build_authenticator
from tabpy.security.basic import BasicVerifier
from tabpy.security.jwks import JwksCache
from tabpy.security.oauth import BearerVerifier
from tabpy.security.password_store import PasswordStore
from tabpy.security.passwords import hash_password, legacy_hash
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.security.throttle import FailureThrottle
from tabpy.security.verification_cache import VerificationCache

ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingExecutor(ThreadPoolExecutor):
    """The verifier's thread pool: every full password check is one ``submit``."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def token(scope: str = "tabpy", kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "analyst", "scope": scope, "iat": now}
    payload.update(exp=now + 60, **claims)
    return jwt.encode(payload, SIGNING_KEY, algorithm="ES256", headers={"kid": kid})


def bearer_verifier(tmp_path: Path) -> BearerVerifier:
    settings = load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_OAUTH_ENABLED": "true",
            "TABPY_OAUTH_ISSUER": ISSUER,
            "TABPY_OAUTH_JWKS_URI": "https://idp.example.com/jwks",
            "TABPY_OAUTH_AUDIENCE": AUDIENCE,
            "TABPY_OAUTH_REQUIRED_SCOPES": "tabpy",
        },
    )
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    document = {"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}
    return BearerVerifier(
        settings, JwksCache(settings.oauth_jwks_uri or "", fetch=lambda *_: document)
    )


class Setup:
    """An authenticator over a real password file, with an injected clock."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        limit: int = 3,
        cache_seconds: float = 600,
        basic: bool = True,
        bearer: bool = False,
        enforce: bool = False,
    ) -> None:
        self.clock = Clock()
        self.executor = CountingExecutor()
        self.pwd_file = tmp_path / "passwords.txt"
        self.pwd_file.write_text(
            f"alice {legacy_hash('alice', 'P@ssw0rd')}\n"
            f"bob {legacy_hash('bob', 's3cret')}\n"
            f"colon {hash_password('ab:cd', iterations=1000)}\n"
        )
        verifier = None
        if basic:
            store = PasswordStore(self.pwd_file)
            store.load()
            cache = VerificationCache(lifetime=cache_seconds, clock=self.clock)
            verifier = BasicVerifier(store, cache, self.executor)
        self.auth = Authenticator(
            basic=verifier,
            bearer=bearer_verifier(tmp_path) if bearer else None,
            throttle=FailureThrottle(limit, 60, clock=self.clock),
            enforce_endpoint_scopes=enforce,
        )

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run(wrapped())

    async def attempt(
        self, header: str | None, address: str = "10.0.0.1", scope: str | None = None
    ) -> Principal | type[TabPyError]:
        """The principal, or the type of the refusal."""
        try:
            return await self.auth.authenticate(header, address, scope)
        except TabPyError as refusal:
            return type(refusal)

    def once(self, header: str | None, address: str = "10.0.0.1") -> Principal | type[TabPyError]:
        return self.run(self.attempt(header, address))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.auth.close()


# --- Basic ---------------------------------------------------------------------------------------


def test_basic_accepts_the_password_file_users(setup: Setup) -> None:
    assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")
    assert setup.once(basic("ALICE", "P@ssw0rd")) == Principal("basic", "alice")
    assert setup.once(basic("colon", "ab:cd")) == Principal("basic", "colon")  # colon in password
    assert setup.auth.schemes == {"basic"}


@pytest.mark.parametrize(
    "header",
    [None, basic("alice", "wrong"), basic("nobody", "P@ssw0rd"), "Basic !!!", "Bearer x", "x"],
)
def test_basic_refuses_with_a_basic_challenge(setup: Setup, header: str | None) -> None:
    try:
        setup.run(setup.auth.authenticate(header, "10.0.0.1"))
    except NotAuthenticated as refusal:
        assert refusal.scheme == "basic"
    else:
        pytest.fail("accepted")


def test_a_verified_password_is_checked_once(setup: Setup) -> None:
    for _ in range(5):
        assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")
    assert setup.executor.submitted == 1


def test_missing_credentials_are_not_counted_as_failures(setup: Setup) -> None:
    for _ in range(10):
        assert setup.once(None) is NotAuthenticated
    assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")


def test_malformed_headers_count_as_failures(setup: Setup) -> None:
    assert [setup.once("Basic !!!") for _ in range(4)] == [NotAuthenticated] * 3 + [TooManyFailures]


# --- no authentication ---------------------------------------------------------------------------


def test_without_authentication_everyone_is_anonymous_but_basic_is_refused(
    tmp_path: Path,
) -> None:
    made = Setup(tmp_path, basic=False)
    assert made.auth.schemes == frozenset()
    assert made.once(None) is ANONYMOUS
    assert made.once(f"Bearer {token()}") is ANONYMOUS
    assert made.once("Basic !!!") is ANONYMOUS  # malformed: not credentials
    assert made.once(basic("alice", "P@ssw0rd")) is CredentialsNotExpected


def test_build_authenticator_follows_the_settings(tmp_path: Path) -> None:
    pwd_file = Setup(tmp_path).pwd_file
    none = build_authenticator(load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)}))
    assert none.schemes == frozenset()
    settings = load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_PWD_FILE": str(pwd_file),
            "TABPY_AUTH_CACHE_SECONDS": "5",
            "TABPY_AUTH_MAX_FAILURES": "7",
        },
    )
    auth = build_authenticator(settings)
    try:
        assert auth.schemes == {"basic"}
        assert auth.basic is not None and auth.basic.cache.lifetime == 5
        assert auth.throttle.limit == 7
    finally:
        auth.close()


# --- bearer and both -----------------------------------------------------------------------------


def test_bearer_tokens(tmp_path: Path) -> None:
    made = Setup(tmp_path, basic=False, bearer=True)
    try:
        assert made.once(f"Bearer {token('tabpy tabpy:query')}") == Principal(
            "bearer", "analyst", frozenset({"tabpy", "tabpy:query"})
        )
        assert made.once(f"Bearer {token(aud='api://other')}") is NotAuthenticated
        assert made.once(f"Bearer {token(scope='other')}") is NotAuthenticated  # required scope
        assert made.once(basic("alice", "P@ssw0rd")) is NotAuthenticated
        with pytest.raises(NotAuthenticated) as refusal:
            made.run(made.auth.authenticate(None, "10.0.0.1"))
        assert refusal.value.scheme == "bearer"
    finally:
        made.auth.close()


def test_endpoint_scopes_are_checked_only_when_enforced(tmp_path: Path) -> None:
    for enforce, expected in ((True, InsufficientScope), (False, "bearer")):
        made = Setup(tmp_path, basic=False, bearer=True, enforce=enforce)
        try:
            result = made.run(made.attempt(f"Bearer {token()}", scope="tabpy:evaluate"))
            assert result is expected or getattr(result, "scheme", None) == expected
            allowed = made.run(
                made.attempt(f"Bearer {token('tabpy tabpy:evaluate')}", "a", "tabpy:evaluate")
            )
            assert isinstance(allowed, Principal)
            no_scope_needed = made.run(made.attempt(f"Bearer {token()}", scope=None))
            assert isinstance(no_scope_needed, Principal)
        finally:
            made.auth.close()


def test_both_methods_choose_by_scheme(tmp_path: Path) -> None:
    made = Setup(tmp_path, bearer=True)
    try:
        assert made.auth.schemes == {"basic", "bearer"}
        assert made.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")
        assert made.once(f"Bearer {token()}") == Principal(
            "bearer", "analyst", frozenset({"tabpy"})
        )
        with pytest.raises(NotAuthenticated) as refusal:
            made.run(made.auth.authenticate(None, "10.0.0.1"))
        assert refusal.value.scheme == "basic"  # no header: Basic is asked for
    finally:
        made.auth.close()


def test_a_huge_kid_is_logged_cut_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = Setup(tmp_path, basic=False, bearer=True)
    kid = "k" * 1_000_000
    try:
        with caplog.at_level(logging.WARNING):
            assert made.once(f"Bearer {token(kid=kid)}") is NotAuthenticated
    finally:
        made.auth.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Unable to resolve JWT signing key: kid 'kkkk" in logged
    assert "[1000000 chars]" in logged
    assert len(logged) < 2000


def test_client_values_in_log_lines_are_bounded_and_escaped(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        setup.once(basic("eve\nINFO forged line" + "x" * 100_000, "guess"), "a" * 10_000)
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and len(message) < 1000, message


# --- the throttle, under concurrency -------------------------------------------------------------


def test_concurrent_wrong_passwords_cannot_get_past_the_limit(setup: Setup) -> None:
    async def burst() -> list[Principal | type[TabPyError]]:
        guesses = (basic("alice", f"guess-{i}") for i in range(100))
        return await asyncio.gather(*(setup.attempt(guess) for guess in guesses))

    results = setup.run(burst())
    assert setup.executor.submitted <= 3  # full checks: the limit, however many arrive at once
    assert results.count(NotAuthenticated) == setup.executor.submitted
    assert results.count(TooManyFailures) == 100 - setup.executor.submitted
    assert setup.executor.submitted == 3  # all three places were used


def test_concurrent_identical_logins_share_one_check_and_one_place(setup: Setup) -> None:
    async def burst(header: str) -> list[Principal | type[TabPyError]]:
        return await asyncio.gather(*(setup.attempt(header) for _ in range(50)))

    # Tableau opening a workbook: many requests with the same new credentials at once.
    assert setup.run(burst(basic("alice", "P@ssw0rd"))) == [Principal("basic", "alice")] * 50
    assert setup.executor.submitted == 1
    # The same wrong password 50 times at once is one guess, counted once.
    assert setup.run(burst(basic("bob", "guess"))) == [NotAuthenticated] * 50
    assert setup.executor.submitted == 2
    assert setup.auth.throttle.retry_after("10.0.0.1", "bob") is None


def test_lockout_is_per_address_and_user_name(setup: Setup) -> None:
    assert [setup.once(basic("alice", f"guess-{i}")) for i in range(4)] == [
        NotAuthenticated,
        NotAuthenticated,
        NotAuthenticated,
        TooManyFailures,
    ]
    # Even the right password waits: its check is what a guesser needs.
    assert setup.once(basic("alice", "P@ssw0rd")) is TooManyFailures
    # Another user from the same address, and the same user from elsewhere, are not affected.
    assert setup.once(basic("bob", "s3cret")) == Principal("basic", "bob")
    assert setup.once(basic("alice", "P@ssw0rd"), "10.0.0.2") == Principal("basic", "alice")
    setup.clock.now += 60
    assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")


def test_a_user_who_keeps_succeeding_is_never_locked_out(tmp_path: Path) -> None:
    made = Setup(tmp_path, limit=3, cache_seconds=600)
    try:
        tableau = basic("alice", "P@ssw0rd")
        assert made.once(tableau) == Principal("basic", "alice")
        statuses = []
        # Two hours: an attacker on the same address fails as alice three times every 30 s,
        # so alice is locked out for full checks all along; Tableau sends a request each 30 s.
        for step in range(240):
            made.clock.now += 30
            for i in range(3):
                made.once(basic("alice", f"guess-{step}-{i}"))
            statuses.append(made.once(tableau))
        assert statuses == [Principal("basic", "alice")] * 240
        assert made.auth.throttle.retry_after("10.0.0.1", "alice") is not None
        # Idle longer than the cache lifetime, Tableau needs a full check, which waits.
        made.clock.now += 601
        for i in range(3):
            made.once(basic("alice", f"guess-last-{i}"))
        assert made.once(tableau) is TooManyFailures
    finally:
        made.auth.close()


def test_cached_credentials_work_from_a_blocked_address(setup: Setup) -> None:
    assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")
    for i in range(20):
        setup.once(basic(f"user{i}", "guess"))  # over the address's ceiling too
    assert setup.once(basic("bob", "s3cret")) is TooManyFailures
    assert setup.once(basic("alice", "P@ssw0rd")) == Principal("basic", "alice")


# --- sessions ------------------------------------------------------------------------------------


def test_stamp_changes_with_the_password(setup: Setup) -> None:
    stamp = setup.auth.stamp("alice")
    assert stamp is not None and "P@ssw0rd" not in stamp
    assert setup.auth.stamp("nobody") is None
    assert setup.auth.basic_principal("alice") == Principal("basic", "alice")
    setup.pwd_file.write_text(f"alice {legacy_hash('alice', 'new')}\n")
    setup.auth.reload()
    assert setup.auth.stamp("alice") not in (None, stamp)
    assert setup.auth.stamp("bob") is None
