"""Deploying the pre-built models to a running server, from this process.

``tabpy-deploy-models`` (:mod:`tabpy.cli.deploy_models`) reads the server's config and the
credentials and prints the outcome; this module holds what it does in between: where the server
is, which certificate to trust, checking that the server answers, and deploying one model.

Deployment goes through the public client (:class:`tabpy.tabpy_tools.client.Client`) with
``override=True``, so a rerun creates the next version of each endpoint instead of failing.
After each deployment one small valid call is made (:attr:`Model.example`): a model whose
libraries are missing on the server is reported as a failure then, with the command that
installs them, rather than at the first call from Tableau.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from tabpy.config import Settings
from tabpy.errors import TabPyError
from tabpy.models.catalog import Model
from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.errors import (
    AuthenticationError,
    ClientError,
    ResponseError,
    ServerUnreachableError,
)
from tabpy.tabpy_tools.rest import Verify

__all__ = [
    "DeployFailed",
    "SetupError",
    "check_server",
    "deploy",
    "failure_reason",
    "pinned_context",
    "server_url",
    "tls_verify",
]

# Bind addresses that mean "every interface": the server is then reachable on localhost.
_ANY_INTERFACE = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s.+?\s-----END CERTIFICATE-----", re.DOTALL
)


class SetupError(TabPyError):
    """Nothing can be deployed: the server is unknown, unreachable or refuses the credentials."""


class DeployFailed(TabPyError):
    """One model could not be deployed, or was deployed but cannot run; the message says why."""


def server_url(settings: Settings) -> str:
    """The server's base URL on this machine, from its port, protocol and bind address."""
    if settings.port == 0:
        raise SetupError(
            "TABPY_PORT is 0 (any free port), so the server's port is not known: set TABPY_PORT "
            "in the config or the environment to the port the server listens on, or pass --url."
        )
    host = settings.bind_address.strip()
    if host in _ANY_INTERFACE:
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{settings.transfer_protocol}://{host}:{settings.port}/"


def tls_verify(
    settings: Settings, url: str, *, ca_file: Path | None = None, insecure: bool = False
) -> Verify:
    """How to check the certificate of the server at ``url``.

    ``insecure`` turns the check off; ``ca_file`` trusts that CA bundle (and checks the host
    name, as a browser would). Otherwise, when the config names the server's certificate, the
    server must present exactly that certificate (:func:`pinned_context`): it is the usual
    self-signed certificate of a TabPy on this machine, which no public CA vouches for. Without
    a configured certificate the system's trust store is used.
    """
    if not url.lower().startswith("https:"):
        return True
    if insecure:
        return False
    if ca_file is not None:
        return str(ca_file)
    if settings.certificate_file is None:
        return True
    return pinned_context(settings.certificate_file)


def pinned_context(certificate_file: Path) -> ssl.SSLContext:
    """A TLS context that accepts only the first certificate in ``certificate_file``.

    The certificate is the only trust anchor (partial chains allowed, so it need not be
    self-signed), which means only a holder of the server's private key can complete the
    handshake. The host name is therefore not checked: the certificate is known exactly, and
    certificates made for a TabPy host often name neither ``localhost`` nor ``127.0.0.1``.
    """
    try:
        data = certificate_file.read_bytes()
    except OSError as err:
        raise SetupError(
            f"Cannot read the server certificate {certificate_file} ({err.strerror or err}): "
            "pass --ca-file with the CA that issued it, or --insecure."
        ) from None
    match = _PEM_CERTIFICATE.search(data)
    if match is None:
        raise SetupError(
            f"{certificate_file} holds no PEM certificate: pass --ca-file with the CA that "
            "issued the server's certificate, or --insecure."
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=match.group().decode("ascii"))
    return context


def check_server(client: Client, url: str, *, authenticated: bool) -> None:
    """Make one request (``GET /status``) and turn a refusal into one clear ``SetupError``."""
    try:
        client.get_status()
    except ServerUnreachableError as err:
        cause = err.__cause__ or err  # the network error itself, without the request line
        hint = "Is the server running, and is this the config it was started with?"
        if "CERTIFICATE" in str(cause).upper():
            hint = (
                "The server's certificate was not accepted: pass --ca-file with the CA that "
                "issued it, or --insecure to skip the check."
            )
        raise SetupError(f"Cannot reach the TabPy server at {url}: {cause}. {hint}") from None
    except AuthenticationError as err:
        if err.status_code == 406:
            reason = (
                "does not use authentication, but the config sets TABPY_PWD_FILE: pass the "
                "config file the server was started with"
            )
        elif authenticated:
            reason = "refused the username or password: check them against its password file"
        else:
            reason = (
                "requires a username and password, but the config has no TABPY_PWD_FILE: pass "
                "the config file the server was started with, or --username"
            )
        raise SetupError(f"The TabPy server at {url} {reason}.") from None
    except ResponseError as err:
        raise SetupError(f"The TabPy server at {url} answered GET /status with {err}") from None


def deploy(client: Client, model: Model) -> None:
    """Deploy ``model`` (replacing any earlier version), then check that the server runs it."""
    client.deploy(model.name, model.function, model.description, override=True)
    try:
        client.query(model.name, *model.example)
    except ResponseError as err:
        raise DeployFailed(
            f"it was deployed, but the server cannot run it: {failure_reason(err)}"
        ) from err


def failure_reason(err: BaseException) -> str:
    """One line saying why an operation failed, without a traceback."""
    if isinstance(err, ResponseError):
        info = err.info
        if isinstance(info, Mapping) and isinstance(info.get("error"), str):
            return str(info["error"])  # the deployed function's own exception
        detail = f": {info}" if info else ""
        return f"the server answered {err.status_code} {err.message}{detail}"
    if isinstance(err, (ClientError, TabPyError)):
        return str(err)
    return f"{type(err).__name__}: {err}"
