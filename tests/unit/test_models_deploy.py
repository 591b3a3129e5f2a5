"""tabpy-deploy-models without a server: catalogue, target URL, TLS trust, credentials, errors."""

from __future__ import annotations

import datetime as dt
import io
import logging
import socket
import ssl
import sys
import threading
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tabpy.cli import deploy_models as cli
from tabpy.config import DEFAULT_PORT, load_settings
from tabpy.models import MODELS, select
from tabpy.models.catalog import UnknownModelError
from tabpy.models.deploy import (
    SetupError,
    failure_reason,
    pinned_context,
    server_url,
    tls_verify,
)
from tabpy.tabpy_tools.errors import LoadFailedError, ServerError

# --- catalogue -----------------------------------------------------------------------------------


def test_catalogue_has_tabpys_four_models() -> None:
    assert [model.name for model in MODELS] == ["PCA", "Sentiment Analysis", "ttest", "anova"]
    assert all(model.description.startswith("Returns ") for model in MODELS)
    # TabPy's layout: a blank first line, then indented text (Python 3.13 strips the indentation
    # of every docstring when it compiles it).
    layout = "\n" if sys.version_info >= (3, 13) else "\n    "
    assert all((model.function.__doc__ or "").startswith(layout) for model in MODELS)


def test_select_by_name_case_insensitively_in_catalogue_order() -> None:
    assert select([]) == MODELS
    assert [m.name for m in select(["ANOVA", "sentiment analysis"])] == [
        "Sentiment Analysis",
        "anova",
    ]


def test_select_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="Unknown model 'kmeans': choose from 'PCA'"):
        select(["kmeans", "PCA"])


# --- where the server is -------------------------------------------------------------------------


def settings_for(tmp_path: Path, **values: str) -> Any:
    lines = ["[TabPy]", f"TABPY_STATE_PATH = {tmp_path}"]
    lines += [f"{key} = {value}" for key, value in values.items()]
    config = tmp_path / "tabpy.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_settings(config, {})


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ({}, f"http://localhost:{DEFAULT_PORT}/"),
        ({"TABPY_PORT": "9100"}, "http://localhost:9100/"),
        ({"TABPY_BIND_ADDRESS": "127.0.0.1"}, f"http://127.0.0.1:{DEFAULT_PORT}/"),
        ({"TABPY_BIND_ADDRESS": "::"}, f"http://localhost:{DEFAULT_PORT}/"),
        ({"TABPY_BIND_ADDRESS": "::1"}, f"http://[::1]:{DEFAULT_PORT}/"),
    ],
)
def test_server_url_from_settings(tmp_path: Path, values: dict[str, str], url: str) -> None:
    assert server_url(settings_for(tmp_path, **values)) == url


def test_server_url_with_any_free_port_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="TABPY_PORT is 0"):
        server_url(settings_for(tmp_path, TABPY_PORT="0"))


def test_environment_overrides_the_config_file_as_for_the_server(tmp_path: Path) -> None:
    settings_for(tmp_path, TABPY_PORT="9100")
    settings = load_settings(tmp_path / "tabpy.conf", {"TABPY_PORT": "9200"})
    assert server_url(settings) == "http://localhost:9200/"


# --- certificates --------------------------------------------------------------------------------


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate with only a common name (no subjectAltName at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A loopback TLS listener presenting a CN-only self-signed certificate."""
    cert, key = self_signed(tmp_path, "tabpy-host")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        for _ in range(2):
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], cert
    listener.close()
    thread.join(timeout=10)


def handshake(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass


def test_pinned_context_trusts_exactly_the_configured_certificate(
    tls_server: tuple[int, Path], tmp_path: Path
) -> None:
    port, cert = tls_server
    handshake(port, pinned_context(cert))  # CN-only, wrong host name: still the right server
    other, _ = self_signed(tmp_path, "someone-else")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(port, pinned_context(other))


def test_pinned_context_uses_the_first_certificate_of_a_chain_file(
    tls_server: tuple[int, Path], tmp_path: Path
) -> None:
    port, cert = tls_server
    other, _ = self_signed(tmp_path, "someone-else")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(cert.read_bytes() + other.read_bytes())
    handshake(port, pinned_context(chain))
    chain.write_bytes(other.read_bytes() + cert.read_bytes())
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(port, pinned_context(chain))


def test_pinned_context_explains_an_unusable_file(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="Cannot read the server certificate"):
        pinned_context(tmp_path / "missing.crt")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n...\n")
    with pytest.raises(SetupError, match="holds no PEM certificate"):
        pinned_context(tmp_path / "key.pem")


def test_tls_verify_choices(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "localhost")
    https = settings_for(
        tmp_path,
        TABPY_TRANSFER_PROTOCOL="https",
        TABPY_CERTIFICATE_FILE=str(cert),
        TABPY_KEY_FILE=str(key),
    )
    url = server_url(https)
    assert url == f"https://localhost:{DEFAULT_PORT}/"
    assert isinstance(tls_verify(https, url), ssl.SSLContext)
    assert tls_verify(https, url, insecure=True) is False
    assert tls_verify(https, url, ca_file=cert) == str(cert)
    assert tls_verify(settings_for(tmp_path), "https://example.org/") is True
    assert tls_verify(https, f"http://localhost:{DEFAULT_PORT}/") is True


# --- failure reasons -----------------------------------------------------------------------------


def test_failure_reason_prefers_the_models_own_error() -> None:
    info = {"uri": "PCA", "error": "ModelInputError : PCA: ...", "type": "QueryFailed"}
    assert failure_reason(ServerError(500, "Error querying function 'PCA'", info)) == (
        "ModelInputError : PCA: ..."
    )
    assert failure_reason(ServerError(503, "busy", None)) == "the server answered 503 busy"
    assert failure_reason(LoadFailedError("PCA", 2, "boom")) == "LoadFailed: boom"
    assert failure_reason(KeyError("x")) == "KeyError: 'x'"


# --- credentials ---------------------------------------------------------------------------------


def options(**values: Any) -> Namespace:
    return Namespace(**{"username": None, "password_file": None, **values})


def test_credentials_are_two_lines_of_standard_input() -> None:
    stdin = io.StringIO("alice\r\nP@ss word \n")
    assert cli._credentials(options(), {}, stdin, io.StringIO()) == ("alice", "P@ss word ")


def test_credentials_from_options_and_environment_come_first(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("from-file\nignored\n", encoding="utf-8")
    stdin = io.StringIO("")
    environ = {"TABPY_USERNAME": "env-user", "TABPY_PASSWORD": "env-pass"}
    assert cli._credentials(options(), environ, stdin, io.StringIO()) == ("env-user", "env-pass")
    assert cli._credentials(
        options(username="bob", password_file=password_file), environ, stdin, io.StringIO()
    ) == ("bob", "from-file")
    # Only the missing one is read from standard input.
    assert cli._credentials(
        options(username="bob"), {}, io.StringIO("secret\n"), io.StringIO()
    ) == ("bob", "secret")


def test_missing_credentials_say_how_to_give_them() -> None:
    with pytest.raises(cli.CredentialsError, match="no password was given"):
        cli._credentials(options(), {}, io.StringIO("alice\n"), io.StringIO())
    with pytest.raises(cli.CredentialsError, match="username is empty"):
        cli._credentials(options(), {}, io.StringIO("\npass\n"), io.StringIO())


# --- the command without a server ----------------------------------------------------------------


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, environ=environ or {}, stdin=io.StringIO(""), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


def test_unknown_model_is_a_usage_error() -> None:
    code, out, err = run(["--model", "kmeans"])
    assert code == 2
    assert "Unknown model 'kmeans'" in err


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    code, out, err = run([str(tmp_path / "missing.conf")])
    assert code == 1
    assert out == f"Using config file at {tmp_path / 'missing.conf'}\n"
    assert err.startswith("tabpy-deploy-models: Config file") and err.count("\n") == 1


def test_unreachable_server(tmp_path: Path) -> None:
    settings_for(tmp_path, TABPY_PORT=str(closed_port()))
    code, out, err = run([str(tmp_path / "tabpy.conf")])
    assert code == 1
    assert "Cannot reach the TabPy server at http://localhost:" in err
    assert "Is the server running" in err
    assert "Successfully" not in out


def test_url_option_overrides_the_config(tmp_path: Path) -> None:
    port = closed_port()
    code, _, err = run(["--url", f"http://127.0.0.1:{port}", "-m", "ttest"])
    assert code == 1
    assert f"Cannot reach the TabPy server at http://127.0.0.1:{port}:" in err


def test_credentials_variables_are_not_reported_as_unknown_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings_for(tmp_path, TABPY_PORT="0")
    with caplog.at_level(logging.WARNING):
        code, _, err = run(
            [str(tmp_path / "tabpy.conf")], {"TABPY_USERNAME": "a", "TABPY_PASSWORD": "b"}
        )
    assert code == 1 and "TABPY_PORT is 0" in err
    assert "Unknown setting" not in caplog.text


def test_auth_on_without_credentials_explains(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords.txt"
    passwords.write_text("alice 00\n", encoding="utf-8")
    settings_for(tmp_path, TABPY_PWD_FILE=str(passwords))
    code, _, err = run([str(tmp_path / "tabpy.conf")])
    assert code == 1
    assert "authentication is on (TABPY_PWD_FILE is set) but no username was given" in err
