"""The HTTPS server context, and the start-up checks that make a bad certificate obvious.

Everything that would otherwise surface as an obscure handshake failure later, or as a
traceback now, is refused at start-up with one line: a certificate or key that cannot be read
or is not PEM, an encrypted key, a certificate that is expired or not yet valid (TabPy's exact
messages), and a key that does not belong to the certificate.

cryptography is imported by the checks that use it, so a server on plain HTTP never loads it
(several MB of memory).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from tabpy.config import ConfigError, Settings

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = ["check_validity", "server_context"]

logger = logging.getLogger(__name__)

_PREFIX = "Error using HTTPS:"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def server_context(settings: Settings, now: dt.datetime | None = None) -> ssl.SSLContext | None:
    """The context for ``TABPY_TRANSFER_PROTOCOL = https`` (None for http); raises ConfigError.

    ``load_settings`` has already checked that both files are set and exist.
    """
    if settings.transfer_protocol != "https":
        return None
    cert_path, key_path = settings.certificate_file, settings.key_file
    assert cert_path is not None and key_path is not None
    certificate = _load_certificate(cert_path)
    check_validity(certificate, now or dt.datetime.now(dt.timezone.utc))
    private_key = _load_key(key_path)
    if _public_bytes(private_key.public_key()) != _public_bytes(certificate.public_key()):
        raise ConfigError(
            f"{_PREFIX} The private key in TABPY_KEY_FILE ({key_path}) does not match the "
            f"certificate in TABPY_CERTIFICATE_FILE ({cert_path}): use the key the "
            "certificate was issued for."
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = settings.minimum_tls_version
    try:
        context.minimum_version = ssl.TLSVersion[version]
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"TABPY_MINIMUM_TLS_VERSION = {version} is not supported by this system's OpenSSL "
            f"({err}): use TLSv1_2 or TLSv1_3."
        ) from None
    logger.info("Setting minimum TLS version to %s", version)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(
            f"{_PREFIX} cannot use TABPY_CERTIFICATE_FILE ({cert_path}) with TABPY_KEY_FILE "
            f"({key_path}): {err}."
        ) from None
    return context


def check_validity(certificate: x509.Certificate, now: dt.datetime) -> None:
    """Refuse a certificate outside its validity period, with TabPy's messages."""
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if now < not_before:
        raise ConfigError(
            f"{_PREFIX} The certificate provided is not valid until "
            f"{not_before.strftime(_DATE_FORMAT)}."
        )
    if now > not_after:
        raise ConfigError(
            f"{_PREFIX} The certificate provided expired on {not_after.strftime(_DATE_FORMAT)}."
        )


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"{_PREFIX} cannot read {setting} ({path}): {err.strerror or err}. Check the path "
            "and that the server's user may read it."
        ) from None


def _load_certificate(path: Path) -> x509.Certificate:
    from cryptography import x509

    data = _read(path, "TABPY_CERTIFICATE_FILE")
    try:
        # The first certificate is the server's own; any others form its chain.
        return x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError):
        raise ConfigError(
            f"{_PREFIX} TABPY_CERTIFICATE_FILE ({path}) does not hold a PEM certificate "
            "(a -----BEGIN CERTIFICATE----- block)."
        ) from None


def _load_key(path: Path) -> PrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "TABPY_KEY_FILE")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(
            f"{_PREFIX} the private key in TABPY_KEY_FILE ({path}) is encrypted: store it "
            "without a passphrase (for example: openssl pkey -in encrypted.key -out plain.key) "
            "and protect the file with permissions instead."
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{_PREFIX} TABPY_KEY_FILE ({path}) does not hold a PEM private key "
            "(a -----BEGIN ... PRIVATE KEY----- block)."
        ) from None


def _public_bytes(key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _no_password() -> bytes:
    # Never prompt on the terminal; an encrypted key was already refused above.
    raise ConfigError(f"{_PREFIX} the private key in TABPY_KEY_FILE is encrypted.")
