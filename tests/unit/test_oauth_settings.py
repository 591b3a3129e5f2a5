from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from tabpy.config import ConfigError, Settings, load_settings
from tabpy.security.oauth import endpoint_scope
from tabpy.security.oauth_settings import validate_oauth_settings

GOOD = {
    "TABPY_OAUTH_ENABLED": "true",
    "TABPY_OAUTH_ISSUER": "https://idp.example.com/",
    "TABPY_OAUTH_JWKS_URI": "https://idp.example.com/jwks",
    "TABPY_OAUTH_AUDIENCE": "api://tabpy",
}


def settings(tmp_path: Path, **values: str) -> Settings:
    environ = {"TABPY_STATE_PATH": str(tmp_path), **GOOD, **values}
    return load_settings(None, {k: v for k, v in environ.items() if v != "-"})


def resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    return resolve


def failing_resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
    raise socket.gaierror(-2, "Name or service not known")


def error(tmp_path: Path, resolve: Any = None, **values: str) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_oauth_settings(settings(tmp_path, **values), resolve or resolver("8.8.8.8"))
    return str(caught.value)


def test_good_settings_pass(tmp_path: Path) -> None:
    validate_oauth_settings(settings(tmp_path), resolver("93.184.216.34"))


def test_missing_settings(tmp_path: Path) -> None:
    assert error(tmp_path, TABPY_OAUTH_ISSUER="-", TABPY_OAUTH_JWKS_URI="-") == (
        "TABPY_OAUTH_ENABLED is true but missing required setting(s): "
        "TABPY_OAUTH_ISSUER, TABPY_OAUTH_JWKS_URI"
    )


def test_resource_boundary_comes_before_https(tmp_path: Path) -> None:
    message = error(tmp_path, TABPY_OAUTH_AUDIENCE="-", TABPY_OAUTH_ISSUER="http://idp/")
    assert message.startswith("OAuth requires a global resource authorization boundary")


def test_scope_tokens(tmp_path: Path) -> None:
    assert error(tmp_path, TABPY_OAUTH_QUERY_SCOPE='a"b', TABPY_OAUTH_DEPLOY_SCOPE="a\\b") == (
        "TABPY_OAUTH_QUERY_SCOPE, TABPY_OAUTH_DEPLOY_SCOPE must be valid, non-empty OAuth "
        "scope tokens"
    )


def test_duplicate_endpoint_scopes_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        validate_oauth_settings(
            settings(tmp_path, TABPY_OAUTH_QUERY_SCOPE="tabpy", TABPY_OAUTH_DEPLOY_SCOPE="tabpy"),
            resolver("8.8.8.8"),
        )
    assert caplog.messages == [
        "OAuth endpoint scope settings contain duplicate values (TABPY_OAUTH_QUERY_SCOPE=tabpy, "
        "TABPY_OAUTH_DEPLOY_SCOPE=tabpy); a token with a shared scope can access multiple "
        "endpoint groups"
    ]


def test_plain_http_is_refused(tmp_path: Path) -> None:
    assert error(tmp_path, TABPY_OAUTH_JWKS_URI="http://idp/jwks").startswith(
        "TABPY_OAUTH_JWKS_URI must use https: JWKS/issuer are the trust anchor"
    )
    assert error(
        tmp_path, TABPY_OAUTH_ISSUER="http://idp/", TABPY_OAUTH_JWKS_URI="HTTP://idp/"
    ).startswith("TABPY_OAUTH_ISSUER, TABPY_OAUTH_JWKS_URI must use https")


def test_unresolvable_host(tmp_path: Path) -> None:
    assert error(tmp_path, failing_resolver) == (
        'Unable to resolve TABPY_OAUTH_JWKS_URI host "idp.example.com": '
        "[Errno -2] Name or service not known"
    )


@pytest.mark.parametrize(
    "addresses",
    [("10.1.2.3",), ("127.0.0.1", "8.8.8.8"), ("100.64.0.1",), ("::ffff:192.168.0.1",)],
)
def test_non_public_addresses_are_refused(tmp_path: Path, addresses: tuple[str, ...]) -> None:
    message = error(tmp_path, resolver(*addresses))
    assert message.startswith('TABPY_OAUTH_JWKS_URI host "idp.example.com" resolves to a ')
    assert "Set TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS=true only when" in message


def test_non_public_addresses_can_be_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        validate_oauth_settings(
            settings(tmp_path, TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS="true"),
            resolver("10.0.0.2", "10.0.0.1"),
        )
    assert caplog.messages[0].startswith(
        'TABPY_OAUTH_JWKS_URI host "idp.example.com" resolves to a non-public address '
        "(10.0.0.1, 10.0.0.2), but TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS is enabled."
    )


@pytest.mark.parametrize(
    ("path", "method", "scope"),
    [
        ("/query/model", "POST", "tabpy:query"),
        ("/query/model", "GET", "tabpy:query"),
        ("/query/model", "OPTIONS", None),
        ("/evaluate", "POST", "tabpy:evaluate"),
        ("/configurations/endpoint_upload_destination", "GET", "tabpy:deploy"),
        ("/endpoints", "POST", "tabpy:deploy"),
        ("/endpoints/m", "DELETE", "tabpy:deploy"),
        ("/endpoints/m/rollback", "POST", "tabpy:deploy"),
        ("/artifacts/abc", "PUT", "tabpy:deploy"),
        ("/endpoints", "GET", None),
        ("/endpoints/m", "GET", None),
        ("/info", "GET", None),
        ("/status", "GET", None),
        ("/queryx", "GET", None),
        ("/", "GET", None),
    ],
)
def test_endpoint_scope(tmp_path: Path, path: str, method: str, scope: str | None) -> None:
    assert endpoint_scope(path, method, settings(tmp_path)) == scope
