"""Start-up checks of the OAuth settings, in TabPy 2.16's order and with its messages.

Order: required settings, a resource boundary (audience or required scopes), scope-token
syntax, a warning for shared endpoint scopes, https for the issuer and JWKS, then the JWKS
host must resolve to public addresses unless ``TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS`` is set.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from tabpy.config import ConfigError, Settings

__all__ = ["validate_oauth_settings"]

logger = logging.getLogger(__name__)

# RFC 6749 scope-token: printable ASCII except space, '"' and '\'.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")

Resolver = Callable[..., Sequence[Any]]


def validate_oauth_settings(settings: Settings, resolve: Resolver = socket.getaddrinfo) -> None:
    """Raise ``ConfigError`` for an unusable OAuth configuration; log the warnings."""
    if not settings.oauth_enabled:
        return
    missing = [
        name
        for name, value in (
            ("TABPY_OAUTH_ISSUER", settings.oauth_issuer),
            ("TABPY_OAUTH_JWKS_URI", settings.oauth_jwks_uri),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"TABPY_OAUTH_ENABLED is true but missing required setting(s): {', '.join(missing)}"
        )
    if not settings.oauth_audience and not settings.oauth_required_scopes:
        raise ConfigError(
            "OAuth requires a global resource authorization boundary: configure "
            "TABPY_OAUTH_AUDIENCE, or TABPY_OAUTH_REQUIRED_SCOPES. "
            "TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES provides additional per-endpoint "
            "authorization only"
        )
    endpoint_scopes = {
        "TABPY_OAUTH_QUERY_SCOPE": settings.oauth_query_scope,
        "TABPY_OAUTH_EVALUATE_SCOPE": settings.oauth_evaluate_scope,
        "TABPY_OAUTH_DEPLOY_SCOPE": settings.oauth_deploy_scope,
    }
    invalid = [name for name, scope in endpoint_scopes.items() if not _SCOPE_TOKEN.match(scope)]
    if any(not _SCOPE_TOKEN.match(scope) for scope in settings.oauth_required_scopes):
        invalid.insert(0, "TABPY_OAUTH_REQUIRED_SCOPES")
    if invalid:
        raise ConfigError(f"{', '.join(invalid)} must be valid, non-empty OAuth scope tokens")
    values = list(endpoint_scopes.values())
    shared = [
        f"{name}={scope}" for name, scope in endpoint_scopes.items() if values.count(scope) > 1
    ]
    if shared:
        logger.warning(
            "OAuth endpoint scope settings contain duplicate values (%s); a token with a "
            "shared scope can access multiple endpoint groups",
            ", ".join(shared),
        )
    assert settings.oauth_issuer is not None and settings.oauth_jwks_uri is not None
    plain = [
        name
        for name, value in (
            ("TABPY_OAUTH_ISSUER", settings.oauth_issuer),
            ("TABPY_OAUTH_JWKS_URI", settings.oauth_jwks_uri),
        )
        if not value.lower().startswith("https://")
    ]
    if plain:
        raise ConfigError(
            f"{', '.join(plain)} must use https: JWKS/issuer are the trust anchor for JWT "
            "verification and must not be fetched over plain HTTP"
        )
    _check_jwks_host(settings.oauth_jwks_uri, settings.oauth_allow_nonpublic_jwks, resolve)


def _check_jwks_host(uri: str, allow_nonpublic: bool, resolve: Resolver) -> None:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    try:
        port = parts.port or 443
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as err:
        raise ConfigError(f'Unable to resolve TABPY_OAUTH_JWKS_URI host "{host}": {err}') from None
    addresses = sorted({info[4][0] for info in infos})
    nonpublic = [address for address in addresses if not _is_public(address)]
    if not nonpublic:
        return
    shown = ", ".join(nonpublic)
    if allow_nonpublic:
        logger.warning(
            'TABPY_OAUTH_JWKS_URI host "%s" resolves to a non-public address (%s), but '
            "TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS is enabled. Only use this override for a trusted "
            "JWKS endpoint on a controlled network",
            host,
            shown,
        )
        return
    raise ConfigError(
        f'TABPY_OAUTH_JWKS_URI host "{host}" resolves to a non-public address ({shown}): '
        "refusing to use it as the JWKS endpoint. Set TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS=true "
        "only when this exact endpoint is trusted and intentionally routed through a private "
        "network or enterprise proxy"
    )


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global
