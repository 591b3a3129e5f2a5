"""Test-time keys, certificates, tokens and a loopback HTTPS JWKS server.

Everything is generated when the tests run (EC P-256 keys: fast to make), nothing is checked
in, and nothing listens on a fixed port.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tabpy.security.passwords import hash_password, legacy_hash

NOW = dt.datetime.now(dt.timezone.utc)


# --- certificates --------------------------------------------------------------------------------


@dataclass
class Authority:
    """A throw-away certificate authority that signs server certificates."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    name: x509.Name = field(
        default_factory=lambda: x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "tabpy test CA")]
        )
    )

    def __post_init__(self) -> None:
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        """A certificate for localhost / 127.0.0.1 (PEM) and its key."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - dt.timedelta(days=1))
            .not_valid_after(not_after or NOW + dt.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pair(directory: Path, name: str, cert: bytes, key: Any) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key_pem(key))
    return cert_path, key_path


# --- passwords -----------------------------------------------------------------------------------


def basic(username: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def password_line(username: str, password: str, legacy: bool = True) -> str:
    # Legacy entries are fast to verify, which keeps the tests quick; the modern format is
    # covered by the users that need it.
    hashed = legacy_hash(username, password) if legacy else hash_password(password)
    return f"{username} {hashed}\n"


# --- OAuth ---------------------------------------------------------------------------------------


class SigningKey:
    """An RSA signing key with a kid, able to mint tokens and describe itself as a JWK."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex[:12]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, alg="RS256", use="sig")
        return data

    def token(self, claims: Mapping[str, Any], kid: str | None = None) -> str:
        headers = {"kid": kid or self.kid}
        return jwt.encode(dict(claims), self.private, algorithm="RS256", headers=headers)


def claims(issuer: str, audience: str, scope: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "analyst@example.com",
        "scope": scope,
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return values


class JwksServer:
    """An HTTPS server on 127.0.0.1 (ephemeral port) serving a replaceable JWKS document."""

    def __init__(self, authority: Authority, directory: Path) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        cert, key = authority.issue()
        cert_path, key_path = write_pair(directory, "jwks", cert, key)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"https://localhost:{self.httpd.server_address[1]}/jwks.json"

    def publish(self, *keys: SigningKey) -> None:
        self.document = {"keys": [key.jwk() for key in keys]}

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serving_jwks(authority: Authority, directory: Path) -> Iterator[JwksServer]:
    with JwksServer(authority, directory) as server:
        yield server


# --- logging -------------------------------------------------------------------------------------

#: Config-file logging sections that send everything, DEBUG included, to stderr.
DEBUG_LOGGING = """[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = plain

[logger_root]
level = DEBUG
handlers = console

[handler_console]
class = StreamHandler
level = DEBUG
formatter = plain
args = (sys.stderr,)

[formatter_plain]
format = %(asctime)s [%(levelname)s] %(name)s: %(message)s
"""
