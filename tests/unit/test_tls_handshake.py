"""Handshake mistakes become one WARNING line with the client's address, and only those."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tabpy.server.tls_handshake import (
    REPEAT_AFTER,
    HandshakeRefused,
    HandshakeReporter,
    report_handshake_failures,
)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "c.pem", folder / "k.pem")
    report_handshake_failures(context)
    return context


def server_side(context: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(incoming, outgoing, server_side=True), incoming, outgoing


def handshake_error(context: ssl.SSLContext, first_bytes: bytes) -> BaseException:
    server, incoming, _ = server_side(context)
    incoming.write(first_bytes)
    with pytest.raises(Exception) as info:
        server.do_handshake()
    return info.value


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        (b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP_REQUEST"),
        (b"POST /evaluate HTTP/1.1\r\nAuthorization: Basic c2VjcmV0\r\n\r\n", "HTTP_REQUEST"),
        (b"OPTIONS /info HTTP/1.1\r\nHost: x\r\n\r\n", "WRONG_VERSION_NUMBER"),
    ],
)
def test_plain_http_is_refused_with_an_explanation(
    server_tls: ssl.SSLContext, request_line: bytes, reason: str
) -> None:
    error = handshake_error(server_tls, request_line)
    assert isinstance(error, HandshakeRefused)
    assert not isinstance(error, OSError)  # else the event loop would keep it to itself
    assert error.reason == reason
    assert "https://" in error.explanation
    assert "c2VjcmV0" not in str(error) + error.explanation


def test_client_that_does_not_trust_the_certificate(server_tls: ssl.SSLContext) -> None:
    server, server_in, server_out = server_side(server_tls)
    client_context = ssl.create_default_context()  # trusts the system's authorities only
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    refused: HandshakeRefused | None = None
    for _ in range(10):  # a handful of round trips at most
        try:
            client.do_handshake()
        except ssl.SSLCertVerificationError:
            pass  # the client gives up and sends its alert
        except ssl.SSLWantReadError:
            pass
        server_in.write(client_out.read())
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except HandshakeRefused as err:
            refused = err
            break
        client_in.write(server_out.read())
    assert refused is not None
    assert refused.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert "does not trust the server's certificate (tlsv1 alert unknown ca)" in (
        refused.explanation
    )


def test_other_failures_stay_ssl_errors(server_tls: ssl.SSLContext) -> None:
    garbage = bytes([0x16, 0x03, 0x01, 0x00, 0x05]) + b"\x00" * 5  # a broken ClientHello
    error = handshake_error(server_tls, garbage)
    assert isinstance(error, ssl.SSLError)


class _Transport:
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_http(peer: Any) -> dict[str, Any]:
    refused = HandshakeRefused("HTTP_REQUEST", "sent plain HTTP to the HTTPS port")
    return {"message": "Fatal error", "exception": refused, "transport": _Transport(peer)}


def test_reporter_logs_once_per_client_and_kind(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    reporter = HandshakeReporter(clock)
    loop = asyncio.new_event_loop()
    try:
        reporter.install(loop)
        with caplog.at_level(logging.WARNING, logger="tabpy.server"):
            handler = loop.get_exception_handler()
            assert handler is not None
            handler(loop, plain_http(("10.1.2.3", 50001)))
            handler(loop, plain_http(("10.1.2.3", 50002)))  # Tableau retrying
            handler(loop, plain_http(("::1", 50003, 0, 0)))
            other = HandshakeRefused("TLSV1_ALERT_UNKNOWN_CA", "does not trust the certificate")
            handler(loop, {"exception": other, "transport": _Transport(("10.1.2.3", 50004))})
            clock.now += REPEAT_AFTER
            handler(loop, plain_http(("10.1.2.3", 50005)))
    finally:
        loop.close()
    assert caplog.messages == [
        "TLS handshake failed: client 10.1.2.3:50001 sent plain HTTP to the HTTPS port",
        "TLS handshake failed: client [::1]:50003 sent plain HTTP to the HTTPS port",
        "TLS handshake failed: client 10.1.2.3:50004 does not trust the certificate",
        "TLS handshake failed: client 10.1.2.3:50005 sent plain HTTP to the HTTPS port",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_reporter_passes_other_exceptions_on() -> None:
    seen: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        HandshakeReporter().install(loop)
        context = {"message": "something else", "exception": RuntimeError("boom")}
        loop.call_exception_handler(context)
    finally:
        loop.close()
    assert seen == [context]


def test_without_a_previous_handler_the_default_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        HandshakeReporter().install(loop)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            loop.call_exception_handler({"message": "unrelated failure"})
    finally:
        loop.close()
    assert "unrelated failure" in caplog.text


def test_unknown_peer_is_said_so(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        reporter = HandshakeReporter()
        with caplog.at_level(logging.WARNING, logger="tabpy.server"):
            reporter.handle(loop, {"exception": HandshakeRefused("HTTP_REQUEST", "sent HTTP")})
    finally:
        loop.close()
    assert caplog.messages == ["TLS handshake failed: client (unknown address) sent HTTP"]
