"""Container health check: exit 0 when tabpy answers 200 on a health route, 1 otherwise.

Usage: ``python healthcheck.py [/health|/ready]`` (default ``/health``).

The image has no curl or wget, and Python is already there. The check talks to the server over
the loopback interface, with the port and protocol taken from the same environment variables
the server reads (``TABPY_PORT``, ``TABPY_TRANSFER_PROTOCOL``); a port set only in the config
file is not seen here, so set it in the environment. With HTTPS the certificate is not
verified: it names the public host, not 127.0.0.1, and nothing leaves this machine. It sends no
credentials, so the image turns on ``TABPY_HEALTH_CHECKS_PUBLIC``.

Standard library only, so it runs even if the tabpy package itself cannot be imported.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = "9004"
ROUTES = ("/health", "/ready")
TIMEOUT_SECONDS = 4.0


def probe_url(environ: Mapping[str, str], route: str) -> str:
    """The URL to probe, from the server's own environment variables."""
    port = environ.get("TABPY_PORT", "").strip() or DEFAULT_PORT
    scheme = (environ.get("TABPY_TRANSFER_PROTOCOL", "").strip() or "http").lower()
    return f"{scheme}://127.0.0.1:{port}{route}"


def check(url: str) -> str | None:
    """``None`` when the route answers 200, else a one-line reason."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as reply:
            status = reply.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (OSError, ValueError) as err:
        return f"{url}: {err}"
    return None if status == 200 else f"{url} answered {status}"


def main(argv: list[str]) -> int:
    route = argv[0] if argv else ROUTES[0]
    if route not in ROUTES or len(argv) > 1:
        sys.stderr.write(f"usage: healthcheck.py [{'|'.join(ROUTES)}]\n")
        return 1  # Docker reserves 2; any failure is simply "unhealthy"
    problem = check(probe_url(os.environ, route))
    if problem is not None:
        sys.stderr.write(f"unhealthy: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
