"""OAuth 2.0 bearer tokens on the real server, with a JWKS served over loopback HTTPS.

The server trusts the test CA through ``SSL_CERT_FILE``; keys and tokens are minted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from live_server import (
    ServerProcess,
    envelope,
    module_server,
    run_tabpy,
    wait_for,
    write_config,
)
from security_support import (
    Authority,
    JwksServer,
    SigningKey,
    basic,
    claims,
    password_line,
)

ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"
ALL_SCOPES = "tabpy tabpy:query tabpy:evaluate tabpy:deploy"
UNAUTHORIZED = envelope("Invalid credentials provided.", "Unauthorized request.")
FORBIDDEN = envelope("Token is missing a required endpoint scope.", "Forbidden request.")
BEARER = 'Bearer realm="TabPy Server"'
TRIVIAL = {"script": "return 6 * 7", "data": {}}


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("key-a")


def oauth_settings(jwks_uri: str, pwd_file: Path) -> dict[str, str]:
    return {
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_OAUTH_ENABLED": "true",
        "TABPY_OAUTH_ISSUER": ISSUER,
        "TABPY_OAUTH_JWKS_URI": jwks_uri,
        "TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS": "true",
        "TABPY_OAUTH_AUDIENCE": AUDIENCE,
        "TABPY_OAUTH_REQUIRED_SCOPES": "tabpy",
        "TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES": "true",
        "TABPY_AUTH_MAX_FAILURES": "0",
        "TABPY_LOG_DETAILS": "true",
        "TABPY_OAUTH_LOG_USER": "true",
        "TABPY_WORKERS": "1",
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, authority: Authority, key: SigningKey
) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("oauth")
    (directory / "ca.pem").write_bytes(authority.pem())
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text(password_line("alice", "P@ssw0rd"))
    with JwksServer(authority, directory) as jwks:
        jwks.publish(key)
        yield from module_server(
            tmp_path_factory,
            oauth_settings(jwks.uri, pwd_file),
            warm=False,
            env={"SSL_CERT_FILE": str(directory / "ca.pem")},
        )


def call(
    server: ServerProcess, token: str, method: str = "GET", path: str = "/info"
) -> httpx.Response:
    body = TRIVIAL if method == "POST" else None
    return server.http.request(
        method, path, json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_valid_token_is_accepted_and_advertised(server: ServerProcess, key: SigningKey) -> None:
    response = call(server, key.token(claims(ISSUER, AUDIENCE, ALL_SCOPES)))
    assert response.status_code == 200
    methods = response.json()["versions"]["v1"]["features"]["authentication"]["methods"]
    assert methods == {
        "basic-auth": {},
        "oauth-jwt": {
            "required_scopes": ["tabpy"],
            "endpoint_scopes": ["tabpy:query", "tabpy:evaluate", "tabpy:deploy"],
            "endpoint_scopes_enforced": True,
        },
    }


def test_token_with_the_endpoint_scope_runs_scripts(server: ServerProcess, key: SigningKey) -> None:
    token = key.token(claims(ISSUER, AUDIENCE, "tabpy tabpy:evaluate"))
    response = wait_for(
        lambda: (r := call(server, token, "POST", "/evaluate")).status_code == 200 and r,
        30,
        "a worker to answer /evaluate",
    )
    assert response.json() == 42


def expired(key: SigningKey) -> str:
    now = int(time.time())
    return key.token(claims(ISSUER, AUDIENCE, ALL_SCOPES, iat=now - 600, exp=now - 60))


def unsigned(key: SigningKey) -> str:
    return jwt.encode(claims(ISSUER, AUDIENCE, ALL_SCOPES), None, algorithm="none")


FAILURES: dict[str, tuple[Callable[[SigningKey], str], str]] = {
    "expired": (expired, "JWT validation failed: Signature has expired"),
    "wrong-issuer": (
        lambda k: k.token(claims("https://evil.example.com/", AUDIENCE, ALL_SCOPES)),
        "JWT validation failed: Invalid issuer",
    ),
    "wrong-audience": (
        lambda k: k.token(claims(ISSUER, "api://other", ALL_SCOPES)),
        "JWT validation failed: Audience doesn't match",
    ),
    "unknown-kid": (
        lambda k: SigningKey("key-unknown").token(claims(ISSUER, AUDIENCE, ALL_SCOPES)),
        "Unable to resolve JWT signing key: kid 'key-unknown'",
    ),
    "bad-signature": (
        lambda k: SigningKey().token(claims(ISSUER, AUDIENCE, ALL_SCOPES), kid=k.kid),
        "JWT validation failed: Signature verification failed",
    ),
    "missing-global-scope": (
        lambda k: k.token(claims(ISSUER, AUDIENCE, "tabpy:query tabpy:evaluate")),
        "JWT missing required scope(s): tabpy",
    ),
    "no-expiry": (
        lambda k: k.token({key: v for key, v in claims(ISSUER, AUDIENCE, "tabpy").items()
                           if key != "exp"}),
        'JWT validation failed: Token is missing the "exp" claim',
    ),
    "alg-none": (unsigned, "JWT validation failed: The specified alg value is not allowed"),
    "garbage": (lambda k: "garbage", "Unable to resolve JWT signing key: Not enough segments"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAILURES))
def test_invalid_tokens_get_the_same_401(server: ServerProcess, key: SigningKey, case: str) -> None:
    make, reason = FAILURES[case]
    token = make(key)
    response = call(server, token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BEARER
    assert response.content == UNAUTHORIZED
    wait_for(lambda: reason in server.stderr.text, 5, f"the log line {reason!r}")
    assert token not in server.stderr.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/evaluate"), ("GET", "/configurations/endpoint_upload_destination"),
     ("DELETE", "/endpoints/x"), ("GET", "/query/x")],
)  # fmt: skip
def test_missing_endpoint_scope_is_403(
    server: ServerProcess, key: SigningKey, method: str, path: str
) -> None:
    token = key.token(claims(ISSUER, AUDIENCE, "tabpy tabpy:other"))
    response = call(server, token, method, path)
    assert response.status_code == 403
    assert (
        response.headers["WWW-Authenticate"]
        == 'Bearer realm="TabPy Server", error="insufficient_scope"'
    )
    assert response.content == FORBIDDEN


def test_routes_without_an_endpoint_scope_need_only_the_global_one(
    server: ServerProcess, key: SigningKey
) -> None:
    token = key.token(claims(ISSUER, AUDIENCE, "tabpy"))
    assert call(server, token, "GET", "/endpoints").status_code == 200
    assert call(server, token, "GET", "/status").status_code == 200


def test_a_huge_key_id_does_not_flood_the_log(server: ServerProcess, key: SigningKey) -> None:
    # The kid is read, and was logged whole, before the token is checked at all. 40,000
    # characters keep the header under the usual 64 KiB limit on request headers.
    token = key.token(claims(ISSUER, AUDIENCE, "tabpy"), kid="k" * 40_000)
    start = len(server.stderr.text)
    for _ in range(30):
        assert call(server, token).status_code == 401
    wait_for(
        lambda: server.stderr.text[start:].count("Unable to resolve JWT signing key") >= 30,
        10,
        "30 rejections in the log",
    )
    assert "...[40000 chars]" in server.stderr.text[start:]
    assert len(server.stderr.text) - start < 30 * 2000  # unbounded, it was 30 * 40,000


def test_basic_still_works_and_chooses_by_scheme(server: ServerProcess) -> None:
    alice = {"Authorization": basic("alice", "P@ssw0rd")}
    assert server.http.post("/evaluate", json=TRIVIAL, headers=alice).status_code == 200
    for headers in ({}, {"Authorization": "Token abc"}):
        response = server.http.get("/info", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'


def test_call_context_names_the_token_subject(server: ServerProcess, key: SigningKey) -> None:
    call(server, key.token(claims(ISSUER, AUDIENCE, ALL_SCOPES)), path="/status")
    wait_for(
        lambda: (
            "URL: http://127.0.0.1" in server.stderr.text
            and "TabPy user: analyst@example.com" in server.stderr.text
        ),
        5,
        "the call-context line",
    )


def test_rotated_key_is_fetched(
    launch: Callable[..., ServerProcess], tmp_path: Path, authority: Authority
) -> None:
    (tmp_path / "ca.pem").write_bytes(authority.pem())
    pwd_file = tmp_path / "passwords.txt"
    pwd_file.write_text(password_line("alice", "P@ssw0rd"))
    old, new = SigningKey("old"), SigningKey("new")
    with JwksServer(authority, tmp_path) as jwks:
        jwks.publish(old)
        server = launch(
            oauth_settings(jwks.uri, pwd_file), env={"SSL_CERT_FILE": str(tmp_path / "ca.pem")}
        )
        assert call(server, old.token(claims(ISSUER, AUDIENCE, "tabpy"))).status_code == 200
        assert jwks.requests == 1
        # The provider rotates: the new key appears and the old one is withdrawn.
        jwks.publish(new)
        assert call(server, new.token(claims(ISSUER, AUDIENCE, "tabpy"))).status_code == 200
        assert jwks.requests == 2
        # The old kid is gone, and another refresh within 30 s is not allowed.
        assert call(server, old.token(claims(ISSUER, AUDIENCE, "tabpy"))).status_code == 401
        assert jwks.requests == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"TABPY_OAUTH_ENABLED": "true", "TABPY_OAUTH_AUDIENCE": AUDIENCE},
            "TABPY_OAUTH_ENABLED is true but missing required setting(s): "
            "TABPY_OAUTH_ISSUER, TABPY_OAUTH_JWKS_URI",
        ),
        (
            {
                "TABPY_OAUTH_ENABLED": "true",
                "TABPY_OAUTH_ISSUER": ISSUER,
                "TABPY_OAUTH_JWKS_URI": "https://127.0.0.1:1/jwks.json",
                "TABPY_OAUTH_AUDIENCE": AUDIENCE,
            },
            'TABPY_OAUTH_JWKS_URI host "127.0.0.1" resolves to a non-public address '
            "(127.0.0.1): refusing to use it as the JWKS endpoint.",
        ),
    ],
    ids=["missing-settings", "non-public-jwks"],
)
def test_bad_oauth_settings_stop_start_up(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    config = write_config(tmp_path, {"TABPY_STATE_PATH": str(tmp_path), **settings})
    result = run_tabpy("--config", str(config))
    assert result.returncode == 1
    assert message in result.stderr
