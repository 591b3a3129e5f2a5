"""The Arrow Flight adapter of the authenticator, without a Flight server: TabPy's messages,
session tokens issued and checked through the authenticator, and the shared throttle."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

pytest.importorskip("pyarrow.flight")

from tabpy.arrow.credentials import (  # noqa: E402
    FLIGHT_ADDRESS,
    Caller,
    FlightCredentials,
    Rejected,
)
from tabpy.security.authenticator import Authenticator  # noqa: E402
from tabpy.security.basic import BasicVerifier  # noqa: E402
from tabpy.security.password_store import PasswordStore  # noqa: E402
from tabpy.security.passwords import legacy_hash  # noqa: E402
from tabpy.security.principal import ANONYMOUS, Principal  # noqa: E402
from tabpy.security.throttle import FailureThrottle  # noqa: E402


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def pwd_file(tmp_path: Path) -> Path:
    path = tmp_path / "passwords.txt"
    path.write_text(f"bob {legacy_hash('bob', 'P@ssw0rd')}\n")
    return path


@pytest.fixture
def auth(pwd_file: Path) -> Authenticator:
    store = PasswordStore(pwd_file)
    store.load()
    made = Authenticator(basic=BasicVerifier(store), throttle=FailureThrottle(2))
    yield made  # type: ignore[misc]
    made.close()


def check(credentials: FlightCredentials, header: str | None) -> Caller | str:
    """The caller, or the message the client would be given."""
    try:
        return asyncio.run(credentials.check(header))
    except Rejected as refusal:
        return str(refusal)


def test_without_authentication_every_call_is_anonymous() -> None:
    credentials = FlightCredentials(Authenticator())
    assert not credentials.required
    assert check(credentials, basic("bob", "x")) == Caller(ANONYMOUS)
    assert check(FlightCredentials(object()), None) == Caller(ANONYMOUS)


def test_tabpy_messages(auth: Authenticator) -> None:
    credentials = FlightCredentials(auth)
    assert check(credentials, None) == "No credentials supplied"
    for header in (basic("bob", "wrong"), "Bearer garbage", "Token x"):
        assert check(credentials, header) == "Invalid credentials"
    assert check(credentials, "Token y") == (
        "Invalid credentials: too many failed logins, try again in 60 s"
    )
    # The failures above were counted under Flight's one address, per user name.
    assert auth.throttle.retry_after(FLIGHT_ADDRESS, None) == 60
    assert auth.throttle.retry_after(FLIGHT_ADDRESS, "bob") is None


def test_basic_login_gives_a_session_token_tied_to_the_password(
    auth: Authenticator, pwd_file: Path
) -> None:
    credentials = FlightCredentials(auth)
    login = check(credentials, basic("bob", "P@ssw0rd"))
    assert isinstance(login, Caller) and login.principal == Principal("basic", "bob")
    assert login.token is not None
    session = check(credentials, f"Bearer {login.token}")
    assert session == Caller(Principal("basic", "bob"))  # no new token for a session call
    pwd_file.write_text(f"bob {legacy_hash('bob', 'changed')}\n")
    auth.reload()
    assert check(credentials, f"Bearer {login.token}") == "Invalid credentials"


# --- the credentials members send each other (tabpy.arrow.owners) ------------------------------


def test_internal_credentials_come_from_their_file(tmp_path: Path) -> None:
    from tabpy.arrow.owners import internal_authorization
    from tabpy.config import ConfigError

    path = tmp_path / "internal"
    assert internal_authorization(None) is None
    path.write_text("tabpy-internal:pa:ss\n")
    assert internal_authorization(path) == b"Basic " + base64.b64encode(b"tabpy-internal:pa:ss")
    path.write_text("Bearer abc.def.ghi\n")
    assert internal_authorization(path) == b"Bearer abc.def.ghi"
    path.write_text("just-a-password\n")
    with pytest.raises(ConfigError, match="neither user:password") as refused:
        internal_authorization(path)
    assert "just-a-password" not in str(refused.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        internal_authorization(tmp_path / "missing")
