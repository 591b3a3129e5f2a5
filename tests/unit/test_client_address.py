"""Which address a request is counted under: forwarded headers only from trusted proxies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Scope

from tabpy.config import ConfigError, load_settings
from tabpy.security.client_address import TrustedProxies
from tabpy.security.log_text import printable
from tabpy.server.proxy_headers import ProxyHeaders

NGINX = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"])


def test_nobody_is_trusted_by_default() -> None:
    assert not TrustedProxies()
    assert TrustedProxies().client("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    assert NGINX.client("198.51.100.7", ["203.0.113.9"], ["for=203.0.113.9"]) == "198.51.100.7"


def test_the_hop_the_trusted_proxy_appended_is_the_client() -> None:
    assert NGINX.client("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # Left of it, whatever the client wrote itself: ignored.
    assert NGINX.client("127.0.0.1", ["6.6.6.6, 203.0.113.9"]) == "203.0.113.9"
    # Through two trusted proxies (10.1.2.3 forwarded to 127.0.0.1).
    assert NGINX.client("127.0.0.1", ["6.6.6.6, 203.0.113.9", "10.1.2.3"]) == "203.0.113.9"


def test_all_trusted_hops_give_the_leftmost_and_no_header_gives_the_peer() -> None:
    assert NGINX.client("127.0.0.1", ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"
    assert NGINX.client("127.0.0.1") == "127.0.0.1"
    assert NGINX.client("127.0.0.1", [" , "]) == "127.0.0.1"


def test_forwarded_header() -> None:
    forwarded = ['for=6.6.6.6;proto=https, for="[2001:db8:cafe::17]:4711"', "For=10.0.0.1"]
    # 2001:db8:cafe::17 is inside the trusted 2001:db8::/32, so the client is further left.
    assert NGINX.client("127.0.0.1", (), forwarded) == "6.6.6.6"
    assert NGINX.client("127.0.0.1", (), ['for="[2001:db9::1]:80";by=x']) == "2001:db9::1"
    # X-Forwarded-For wins when both are present.
    assert NGINX.client("127.0.0.1", ["203.0.113.9"], ["for=6.6.6.6"]) == "203.0.113.9"


def test_addresses_are_normalised_and_odd_hops_bounded() -> None:
    assert NGINX.client("::ffff:127.0.0.1", ["203.0.113.9:5555"]) == "203.0.113.9"
    assert NGINX.client("127.0.0.1", ["2001:0db9:0000::0001"]) == "2001:db9::1"
    assert NGINX.client("127.0.0.1", ["unknown"]) == "unknown"
    odd = NGINX.client("127.0.0.1", ["x" * 10_000 + "\n"])
    assert "\n" not in odd and len(odd) < 100


def test_setting_is_validated_and_normalised(tmp_path: Any) -> None:
    base = {"TABPY_STATE_PATH": str(tmp_path)}
    assert load_settings(None, base).trusted_proxies == ()
    settings = load_settings(None, {**base, "TABPY_TRUSTED_PROXIES": "127.0.0.1, 10.1.2.3/8,::1"})
    assert settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")
    with pytest.raises(ConfigError, match='TABPY_TRUSTED_PROXIES.*"nginx" is not an IP address'):
        load_settings(None, {**base, "TABPY_TRUSTED_PROXIES": "127.0.0.1, nginx"})


def test_cache_setting_is_validated(tmp_path: Any) -> None:
    base = {"TABPY_STATE_PATH": str(tmp_path)}
    assert load_settings(None, base).auth_cache_seconds == 600
    assert load_settings(None, {**base, "TABPY_AUTH_CACHE_SECONDS": "0"}).auth_cache_seconds == 0
    with pytest.raises(ConfigError, match="TABPY_AUTH_CACHE_SECONDS"):
        load_settings(None, {**base, "TABPY_AUTH_CACHE_SECONDS": "-1"})


# --- the HTTP middleware -------------------------------------------------------------------------


def through(trusted: TrustedProxies, peer: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    """The scope the app behind ``ProxyHeaders`` sees."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "scheme": "http", "client": (peer, 1234), "headers": headers}
    asyncio.run(ProxyHeaders(app, trusted)(scope, receive, send))
    return seen[0]


def test_middleware_rewrites_the_client_from_trusted_proxies_only() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    behind = through(NGINX, "127.0.0.1", headers)
    assert behind["client"][0] == "203.0.113.9" and behind["scheme"] == "https"
    direct = through(NGINX, "198.51.100.7", headers)
    assert direct["client"] == ("198.51.100.7", 1234) and direct["scheme"] == "http"
    assert through(TrustedProxies(), "127.0.0.1", headers)["client"] == ("127.0.0.1", 1234)


# --- log text ------------------------------------------------------------------------------------


def test_printable_escapes_and_bounds() -> None:
    assert printable("alice") == "alice"
    assert printable("a\nb\x00") == "a\\nb\\x00"
    long = printable("y" * 1_000_000)
    assert long == "y" * 256 + "...[1000000 chars]"
    assert printable("\n" * 1000, 10) == "\\n" * 10 + "...[1000 chars]"
