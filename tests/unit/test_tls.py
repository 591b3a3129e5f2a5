from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tabpy.config import ConfigError, Settings, load_settings
from tabpy.security.tls import check_validity, server_context

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)


def certificate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=1),
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def write(tmp_path: Path, cert: x509.Certificate | bytes, key_bytes: bytes) -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    data = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(data)
    key_path.write_bytes(key_bytes)
    return cert_path, key_path


def pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: bytes | None = None
) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def https(tmp_path: Path, cert_path: Path, key_path: Path, version: str = "TLSv1_2") -> Settings:
    return load_settings(
        None,
        {
            "TABPY_STATE_PATH": str(tmp_path),
            "TABPY_TRANSFER_PROTOCOL": "https",
            "TABPY_CERTIFICATE_FILE": str(cert_path),
            "TABPY_KEY_FILE": str(key_path),
            "TABPY_MINIMUM_TLS_VERSION": version,
        },
    )


def refusal(settings: Settings) -> str:
    with pytest.raises(ConfigError) as caught:
        server_context(settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_http_needs_no_context(tmp_path: Path) -> None:
    assert server_context(load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})) is None


@pytest.mark.parametrize("make_key", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                      lambda: rsa.generate_private_key(65537, 2048)])  # fmt: skip
def test_valid_pair_gives_a_server_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make_key: object
) -> None:
    key = make_key()  # type: ignore[operator]
    cert_path, key_path = write(tmp_path, certificate(key), pem(key))
    with caplog.at_level(logging.INFO):
        context = server_context(https(tmp_path, cert_path, key_path, "TLSv1_3"))
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_NONE  # no client certificates
    assert "Setting minimum TLS version to TLSv1_3" in caplog.messages


def test_validity_messages_match_tabpy() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    expired = certificate(
        key, dt.datetime(2018, 1, 1, tzinfo=UTC), dt.datetime(2018, 8, 18, 19, 47, 18, tzinfo=UTC)
    )
    future = certificate(
        key, dt.datetime(3001, 1, 1, tzinfo=UTC), dt.datetime(3002, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(ConfigError) as caught:
        check_validity(expired, NOW)
    assert str(caught.value) == (
        "Error using HTTPS: The certificate provided expired on 2018-08-18 19:47:18."
    )
    with pytest.raises(ConfigError) as caught:
        check_validity(future, NOW)
    assert str(caught.value) == (
        "Error using HTTPS: The certificate provided is not valid until 3001-01-01 00:00:00."
    )


def test_key_that_does_not_match(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = write(tmp_path, certificate(key), pem(other))
    assert "does not match the certificate" in refusal(https(tmp_path, cert_path, key_path))


def test_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = write(tmp_path, certificate(key), pem(key))
    settings = https(tmp_path, cert_path, key_path)
    original = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path == key_path:
            raise PermissionError(13, "Permission denied")
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert refusal(settings) == (
        f"Error using HTTPS: cannot read TABPY_KEY_FILE ({key_path}): Permission denied. "
        "Check the path and that the server's user may read it."
    )


def test_not_pem_and_encrypted(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = write(tmp_path, b"garbage", pem(key))
    assert "does not hold a PEM certificate" in refusal(https(tmp_path, cert_path, key_path))
    cert_path, key_path = write(tmp_path, certificate(key), b"garbage")
    assert "does not hold a PEM private key" in refusal(https(tmp_path, cert_path, key_path))
    cert_path, key_path = write(tmp_path, certificate(key), pem(key, b"pass"))
    assert "is encrypted" in refusal(https(tmp_path, cert_path, key_path))


def test_chain_file_uses_the_first_certificate(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = certificate(ec.generate_private_key(ec.SECP256R1()))
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (certificate(key), other))
    cert_path, key_path = write(tmp_path, chain, pem(key))
    assert server_context(https(tmp_path, cert_path, key_path)) is not None
