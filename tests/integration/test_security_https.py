"""HTTPS on the real server: certificates generated at run time, TLS versions, refusals."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from doc_session import Block, blocks, section, without_proxy_for_localhost
from live_server import ServerProcess, run_tabpy, write_config
from security_support import Authority, basic, key_pem, password_line, write_pair

import tabpy
from tabpy.config import DEFAULT_PORT

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority()


def https_settings(directory: Path, authority: Authority, **extra: str) -> dict[str, str]:
    cert, key = authority.issue()
    cert_path, key_path = write_pair(directory, "server", cert, key)
    (directory / "ca.pem").write_bytes(authority.pem())
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text(password_line("alice", "P@ssw0rd"))
    return {
        "TABPY_TRANSFER_PROTOCOL": "HtTpS",
        "TABPY_CERTIFICATE_FILE": str(cert_path),
        "TABPY_KEY_FILE": str(key_path),
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_WORKERS": "1",
        **extra,
    }


def client_context(ca: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def test_https_with_verified_certificate(
    launch: Callable[..., ServerProcess], tmp_path: Path, authority: Authority
) -> None:
    # An unknown version name falls back to TLSv1_2 with a warning, as in TabPy.
    settings = https_settings(tmp_path, authority, TABPY_MINIMUM_TLS_VERSION="TLSv-1.3")
    server = launch(settings, client={"verify": client_context(tmp_path / "ca.pem")})
    assert server.url.startswith("https://")
    response = server.http.get("/info", headers={"Authorization": basic("alice", "P@ssw0rd")})
    assert response.status_code == 200
    assert server.http.get("/info").status_code == 401

    log = server.stderr.text
    assert "Unrecognized value for TABPY_MINIMUM_TLS_VERSION: TLSv-1.3" in log
    assert "Setting minimum TLS version to TLSv1_2" in log
    assert log.index("Setting minimum TLS version") < log.index("Web service listening")

    # Plain HTTP to the TLS port gets no HTTP answer, and the log says once who sent it.
    for _ in range(2):
        with pytest.raises(httpx.HTTPError):
            httpx.get(
                f"http://127.0.0.1:{server.port}/info",
                headers={"Authorization": basic("alice", "P@ssw0rd")},
                timeout=10,
            )
    warning = re.compile(
        r"\[WARNING\] tabpy\.server: TLS handshake failed: client 127\.0\.0\.1:\d+ sent plain "
        r"HTTP to the HTTPS port: use an https:// URL"
    )
    assert server.stderr.wait_for(warning, timeout=10), server.stderr.text
    # A client that does not trust the certificate (no CA given) is named too.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://localhost:{server.port}/info", verify=True, timeout=10)
    untrusted = re.compile(r"client 127\.0\.0\.1:\d+ does not trust the server's certificate")
    assert server.stderr.wait_for(untrusted, timeout=10), server.stderr.text
    log = server.stderr.text
    assert len(warning.findall(log)) == 1  # the retry within a minute is not logged again
    assert "P@ssw0rd" not in log and basic("alice", "P@ssw0rd").split()[1] not in log
    assert "Traceback" not in log and "[ERROR]" not in log


def test_minimum_tls_version_is_enforced(
    launch: Callable[..., ServerProcess], tmp_path: Path, authority: Authority
) -> None:
    settings = https_settings(tmp_path, authority, TABPY_MINIMUM_TLS_VERSION="TLSv1_3")
    ca = tmp_path / "ca.pem"
    server = launch(settings, client={"verify": client_context(ca)})
    assert "Setting minimum TLS version to TLSv1_3" in server.stderr.text
    assert server.http.get("/info").status_code == 401  # TLS 1.3 handshake works
    old_client = client_context(ca, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{server.port}/info", verify=old_client, timeout=10)


def _expired(directory: Path, authority: Authority) -> dict[str, str]:
    cert, key = authority.issue(
        not_before=dt.datetime(2018, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2018, 8, 18, 19, 47, 18, tzinfo=UTC),
    )
    return _files(directory, cert, key_pem(key))


def _future(directory: Path, authority: Authority) -> dict[str, str]:
    cert, key = authority.issue(
        not_before=dt.datetime(3001, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(3002, 1, 1, tzinfo=UTC),
    )
    return _files(directory, cert, key_pem(key))


def _mismatch(directory: Path, authority: Authority) -> dict[str, str]:
    cert, _ = authority.issue()
    return _files(directory, cert, key_pem(ec.generate_private_key(ec.SECP256R1())))


def _not_pem(directory: Path, authority: Authority) -> dict[str, str]:
    _, key = authority.issue()
    return _files(directory, b"this is not a certificate\n", key_pem(key))


def _encrypted_key(directory: Path, authority: Authority) -> dict[str, str]:
    cert, key = authority.issue()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    return _files(directory, cert, encrypted)


def _missing_cert(directory: Path, authority: Authority) -> dict[str, str]:
    settings = _files(directory, b"", b"")
    Path(settings["TABPY_CERTIFICATE_FILE"]).unlink()
    return settings


def _files(directory: Path, cert: bytes, key: bytes) -> dict[str, str]:
    (directory / "server.crt").write_bytes(cert)
    (directory / "server.key").write_bytes(key)
    return {
        "TABPY_TRANSFER_PROTOCOL": "https",
        "TABPY_CERTIFICATE_FILE": str(directory / "server.crt"),
        "TABPY_KEY_FILE": str(directory / "server.key"),
    }


REFUSALS = {
    "expired": (
        _expired,
        "Error using HTTPS: The certificate provided expired on 2018-08-18 19:47:18.",
    ),
    "not-yet-valid": (
        _future,
        "Error using HTTPS: The certificate provided is not valid until 3001-01-01 00:00:00.",
    ),
    "key-mismatch": (_mismatch, "does not match the certificate in TABPY_CERTIFICATE_FILE"),
    "not-pem": (_not_pem, "does not hold a PEM certificate"),
    "encrypted-key": (_encrypted_key, "is encrypted: store it without a passphrase"),
    "missing-file": (
        _missing_cert,
        "Error using HTTPS: The parameter(s) TABPY_CERTIFICATE_FILE must point to an existing "
        "file: {tmp_path}/server.crt does not exist.",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_certificates_stop_start_up_with_one_line(
    tmp_path: Path, authority: Authority, case: str
) -> None:
    make, message = REFUSALS[case]
    settings = {"TABPY_STATE_PATH": str(tmp_path), **make(tmp_path, authority)}
    result = run_tabpy("--config", str(write_config(tmp_path, settings)), "--disable-auth-warning")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("tabpy: ")]
    assert len(errors) == 1, result.stderr
    assert message.format(tmp_path=tmp_path) in errors[0]
    assert "Traceback" not in result.stderr


# --- the README's HTTPS steps, as written -------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)
def test_readme_https_steps_work_as_written(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Make the certificate, write the config and call the server, all copied from the README.

    The only substitutions: the README's /etc/tabpy folder becomes a temporary one, its default
    port the server's port, and tabpy.example.com (which does not resolve here) localhost, a
    name the README's certificate also carries.
    """
    section_text = section(README.read_text(encoding="utf-8"), "### HTTPS")
    folder = tmp_path / "etc"
    folder.mkdir()  # the README's `sudo install -d -o "$USER" /etc/tabpy`

    def as_here(block: Block) -> Block:
        return block.replace("/etc/tabpy", str(folder))

    shell, config, check, client = (as_here(b) for b in blocks(section_text))
    assert [b.language for b in (shell, config, check, client)] == ["sh", "ini", "sh", "python"]

    made = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", shell.text],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    cert = folder / "server.crt"
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o600

    # The block as it stands, inline comments included, is the whole config file.
    conf = folder / "tabpy.conf"
    conf.write_text(config.text, encoding="utf-8")
    # ServerProcess runs the README's file instead of writing its own; the port and the state
    # folder come from the environment, which overrides the file.
    server = ServerProcess(tmp_path / "server", client={"verify": client_context(cert)})
    server.args = ["--config", str(conf), "--disable-auth-warning"]
    server.scheme = "https"
    server.extra_env = {"TABPY_PORT": "0", "TABPY_STATE_PATH": str(server.state_path)}
    request.addfinalizer(server.kill)
    server.start()
    assert "Setting minimum TLS version to TLSv1_2" in server.stderr.text

    port = str(server.port)
    local = without_proxy_for_localhost(os.environ)
    checked = subprocess.run(
        ["bash", "-e", "-c", check.replace(str(DEFAULT_PORT), port).text],
        env=local,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["server_version"] == tabpy.__version__

    # Without the certificate as CA, curl refuses, and the server says which client gave up.
    untrusted = subprocess.run(
        ["curl", "-fsS", f"https://localhost:{port}/info"],
        env=local,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert untrusted.returncode == 60, untrusted.stderr  # "SSL certificate problem"
    assert server.stderr.wait_for(
        re.compile(r"client 127\.0\.0\.1:\d+ does not trust the server's certificate"), 10
    ), server.stderr.text

    program = client.replace(str(DEFAULT_PORT), port).replace("tabpy.example.com", "localhost")
    ran = subprocess.run(
        [sys.executable, "-c", program.text],
        env=local,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "{}"  # nothing deployed yet
