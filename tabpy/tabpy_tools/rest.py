"""The HTTP layer of the client: one connection pool to one server.

:class:`Connection` joins relative paths such as ``"endpoints/add"`` to the server's base URL,
sends JSON, carries credentials and the timeout, and turns every unexpected status into a typed
:class:`~tabpy.tabpy_tools.errors.ResponseError`. It never logs a request body or a header, so
neither a password nor a query's data reaches a log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import ssl
from collections.abc import Collection, Mapping
from typing import Any, Union
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from tabpy.tabpy_tools.errors import (
    InvalidArgumentError,
    RequestTimeoutError,
    ResponseError,
    ServerUnreachableError,
)

__all__ = ["Connection", "ResponseError", "Verify", "base_url", "quote_name"]

logger = logging.getLogger(__name__)

#: ``True`` (system/certifi trust store), ``False`` (no verification: test servers only), the path
#: of a CA bundle file or directory, or a ready ``ssl.SSLContext``.
Verify = Union[bool, str, "os.PathLike[str]", ssl.SSLContext]

_HOST = re.compile(r"(?:[\w.-]+|\[[0-9A-Fa-f:.]+\])(?::\d+)?")


def base_url(endpoint: object) -> str:
    """Validate a server URL and return it with exactly one trailing ``/``.

    Unlike TabPy 2.16's client, a URL path (a server ``Subdirectory``) is kept and a URL without
    the trailing slash works: ``http://h:9004`` and ``http://h:9004/`` give ``http://h:9004/``,
    ``http://h:9004/tabpy`` gives ``http://h:9004/tabpy/``.
    """
    if not isinstance(endpoint, str):
        raise TypeError("Endpoint name must be a string")
    if not endpoint:
        raise InvalidArgumentError("Endpoint name cannot be empty")
    parts = urlsplit(endpoint)
    if "@" in parts.netloc:
        # Not echoed: the URL holds a password.
        raise InvalidArgumentError(
            "the server URL must not contain credentials: call Client.set_credentials instead"
        )
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if (
        parts.scheme not in ("http", "https")
        or not _HOST.fullmatch(parts.netloc)
        or not port_ok
        or parts.query
        or parts.fragment
    ):
        raise InvalidArgumentError(
            f"endpoint name {endpoint} should be in http(s)://<hostname>[:<port>][/<path>] and "
            "hostname may consist only of: a-z, A-Z, 0-9, underscore and hyphens."
        )
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def quote_name(name: str) -> str:
    """Percent-encode an endpoint name as one URL path segment (``a b`` -> ``a%20b``)."""
    return quote(name, safe="")


def ssl_verify(verify: Verify) -> bool | ssl.SSLContext:
    """Translate the ``verify`` argument into what ``httpx`` takes."""
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    location = os.fspath(verify)
    if os.path.isdir(location):
        return ssl.create_default_context(capath=location)
    if os.path.isfile(location):
        return ssl.create_default_context(cafile=location)
    raise InvalidArgumentError(
        f"verify={location!r} is neither a CA bundle file nor a directory of certificates"
    )


def httpx_timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(None if math.isinf(seconds) else seconds)


class Connection:
    """Requests to one server through one pooled ``httpx.Client``."""

    def __init__(
        self,
        base: str,
        *,
        timeout: float,
        verify: Verify = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base
        self._http = httpx.Client(
            base_url=base,
            timeout=httpx_timeout(timeout),
            verify=ssl_verify(verify),
            transport=transport,
            # Shorter than uvicorn's 5 s keep-alive, so a pooled connection is never reused just
            # as the server closes it.
            limits=httpx.Limits(keepalive_expiry=2.0),
            headers={"Accept": "application/json"},
        )

    def set_credentials(self, username: str, password: str) -> None:
        self._http.auth = httpx.BasicAuth(username, password)

    def set_timeout(self, seconds: float) -> None:
        self._http.timeout = httpx_timeout(seconds)

    def request(
        self,
        method: str,
        path: str,
        *,
        expect: Collection[int],
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; a status outside ``expect`` raises a ``ResponseError`` subclass.

        ``json_body`` is encoded like TabPy's client did (Python ``json.dumps`` defaults), so
        ``NaN`` in query data reaches the server as the bare token ``NaN``.
        """
        send_headers = dict(headers or {})
        if json_body is not None:
            content = json.dumps(json_body).encode("ascii")
            send_headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method, path, content=content, headers=send_headers, params=params
            )
        except httpx.TimeoutException as err:
            raise RequestTimeoutError(
                f"{method} {self.base_url}{path}: no reply within the timeout ({err})"
            ) from err
        except httpx.TransportError as err:
            raise ServerUnreachableError(f"{method} {self.base_url}{path} failed: {err}") from err
        logger.debug("%s %s -> %d", method, response.request.url, response.status_code)
        if response.status_code not in expect:
            error = ResponseError.from_response(response)
            logger.debug("Error with server response: %s", error)
            raise error
        return response

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, expect=(200,), params=params).json()

    def close(self) -> None:
        self._http.close()
