"""Fetching and caching the JWKS (the identity provider's public signing keys).

Fetches run in a thread (never on the event loop) with a 10 s timeout, over HTTPS with the
system trust store (``SSL_CERT_FILE`` is honoured). Caching follows TabPy 2.16:

* the key set is kept for 5 minutes; after that it is refreshed in the background while the
  cached keys keep answering, so a warm cache never makes a request wait;
* a failed fetch is not retried for 30 s (requests needing a fetch fail meanwhile);
* a token with an unknown ``kid`` (key rotation) forces a refresh at most once per 30 s;
  requests arriving while a refresh runs wait for it at most 1 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tabpy.security.log_text import printable
from tabpy.security.tokens import TokenRejected

if TYPE_CHECKING:
    import jwt  # imported where keys are parsed: a server without OAuth never loads it

__all__ = ["JwksCache", "fetch_jwks", "parse_jwks"]

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300.0
FETCH_TIMEOUT = 10.0
RETRY_AFTER_FAILURE = 30.0
FORCED_REFRESH_INTERVAL = 30.0
WAIT_FOR_REFRESH = 1.0
MAX_DOCUMENT_BYTES = 1024 * 1024
#: Characters of an unknown ``kid`` quoted in a rejection (real ones are far shorter).
MAX_KID_SHOWN = 64

Fetch = Callable[[str, float], Any]
Keys = Mapping[str | None, "jwt.PyJWK"]


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not newurl.lower().startswith("https://"):
            raise OSError(f"refusing to follow a redirect to non-https {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_jwks(uri: str, timeout: float) -> Any:
    """GET ``uri`` and decode its JSON (blocking; run it in a thread)."""
    context = ssl.create_default_context()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects()
    )
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})
    with opener.open(request, timeout=timeout) as response:
        data = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the JWKS document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(data)


def parse_jwks(document: Any) -> dict[str | None, jwt.PyJWK]:
    """Usable signing keys by ``kid``. Symmetric (``oct``) and encryption keys are ignored."""
    import jwt

    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('the JWKS document is not an object with a "keys" list')
    keys: dict[str | None, jwt.PyJWK] = {}
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("kty") == "oct":
            continue
        if item.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(item)
        except jwt.PyJWTError:
            continue
        keys.setdefault(item.get("kid"), key)
    if not keys:
        raise ValueError("the JWKS contains no usable signing key")
    return keys


class JwksCache:
    def __init__(
        self,
        uri: str,
        *,
        fetch: Fetch = fetch_jwks,
        executor: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self._fetch = fetch
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="tabpy-jwks")
        self._clock = clock
        self._keys: Keys | None = None
        self._fetched_at = 0.0
        self._retry_at = 0.0
        self._forced_at = -FORCED_REFRESH_INTERVAL
        self._last_error = ""
        self._refresh: asyncio.Future[None] | None = None

    async def signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid``, fetching the JWKS if needed; raises ``TokenRejected``."""
        now = self._clock()
        if self._keys is not None:
            key = self._find(kid)
            if key is not None:
                if now - self._fetched_at >= CACHE_SECONDS:
                    self._refresh_in_background(now)
                return key
        if self._refresh is not None:
            wait = WAIT_FOR_REFRESH if self._keys is not None else FETCH_TIMEOUT + 1
            try:
                await asyncio.wait_for(asyncio.shield(self._refresh), wait)
            except asyncio.TimeoutError:
                raise self._no_key(kid, "the JWKS refresh in progress took too long") from None
        elif now < self._retry_at:
            raise self._no_key(
                kid,
                f"the JWKS could not be fetched ({self._last_error}); "
                f"next attempt in {self._retry_at - now:.0f} s",
            )
        elif self._keys is not None and now - self._forced_at < FORCED_REFRESH_INTERVAL:
            raise self._no_key(kid, "the JWKS was refreshed less than 30 s ago")
        else:
            if self._keys is not None:
                self._forced_at = now
            await asyncio.shield(self._start_refresh())
        key = self._find(kid) if self._keys is not None else None
        if key is None:
            reason = self._last_error if self._keys is None else "it is not in the JWKS"
            raise self._no_key(kid, reason)
        return key

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- internals -------------------------------------------------------------------------------

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        assert self._keys is not None
        if kid is None and len(self._keys) == 1:
            # Providers with a single key sometimes leave kid out of their tokens.
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _refresh_in_background(self, now: float) -> None:
        if self._refresh is None and now >= self._retry_at:
            self._start_refresh()

    def _start_refresh(self) -> asyncio.Future[None]:
        self._refresh = asyncio.ensure_future(self._do_refresh())
        return self._refresh

    async def _do_refresh(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            document = await loop.run_in_executor(
                self._executor, self._fetch, self.uri, FETCH_TIMEOUT
            )
            keys = parse_jwks(document)
        except Exception as err:  # anything from the network or the document
            self._last_error = f"{type(err).__name__}: {err}"
            self._retry_at = self._clock() + RETRY_AFTER_FAILURE
            logger.error("Unable to fetch the JWKS from %s: %s", self.uri, self._last_error)
        else:
            self._keys = keys
            self._fetched_at = self._clock()
            logger.info("Fetched %d signing key(s) from %s", len(keys), self.uri)
        finally:
            self._refresh = None

    @staticmethod
    def _no_key(kid: str | None, reason: str) -> TokenRejected:
        # The kid is the token's, so the caller's: cut it, or a huge one floods the log.
        shown = "None" if kid is None else f"'{printable(kid, MAX_KID_SHOWN)}'"
        return TokenRejected(f"Unable to resolve JWT signing key: kid {shown}: {reason}")
