"""Basic authentication on the real server: status codes, headers, bodies, reload, throttle."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_server import ServerProcess, envelope, module_server, state_ini, wait_for
from security_support import basic, password_line

ALICE = basic("alice", "P@ssw0rd")
COLON = basic("colon", "ab:cd")
UNAUTHORIZED = envelope("Invalid credentials provided.", "Unauthorized request.")
REALM = 'Basic realm="My TabPy"'
TRIVIAL = {"script": "return [x + 1 for x in _arg1]", "data": {"_arg1": [1, 2]}}


def write_users(path: Path, *lines: str) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def warm(server: ServerProcess, authorization: str) -> None:
    wait_for(
        lambda: (
            server.http.post(
                "/evaluate", json=TRIVIAL, headers={"Authorization": authorization}
            ).status_code
            == 200
        ),
        30,
        "a worker to answer an authenticated /evaluate",
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("users")
    pwd_file = write_users(
        directory / "passwords.txt",
        "# TabPy users\n",
        password_line("alice", "P@ssw0rd"),
        "\n",
        password_line("colon", "ab:cd", legacy=False),
    )
    settings = {
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_WORKERS": "1",
        "TABPY_AUTH_MAX_FAILURES": "0",
        "TABPY_MAX_REQUEST_SIZE_MB": "1",
    }
    for running in module_server(
        tmp_path_factory, settings, warm=False, state_ini=state_ini({"Name": "My TabPy"})
    ):
        warm(running, ALICE)
        yield running


def get(server: ServerProcess, path: str, authorization: str | None = None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return server.http.get(path, headers=headers)


def test_no_credentials_is_401_with_challenge_and_envelope(server: ServerProcess) -> None:
    response = get(server, "/info")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == REALM
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == UNAUTHORIZED
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "authorization",
    [
        basic("alice", "wrong"),
        basic("nobody", "P@ssw0rd"),
        basic("colon", "ab"),
        "Bearer abc",
        "Basic !!!notb64",
        "Basic",
        "Basic  " + ALICE[6:],
        "Token abc",
    ],
    ids=["wrong-password", "unknown-user", "half-colon", "bearer", "not-base64", "no-value",
         "two-spaces", "other-scheme"],
)  # fmt: skip
def test_bad_credentials_are_401(server: ServerProcess, authorization: str) -> None:
    response = get(server, "/info", authorization)
    assert (response.status_code, response.content) == (401, UNAUTHORIZED)
    assert response.headers["WWW-Authenticate"] == REALM


@pytest.mark.parametrize(
    "authorization",
    [ALICE, basic("ALICE", "P@ssw0rd"), "basic " + ALICE[6:], COLON],
    ids=["alice", "uppercase-name", "lowercase-scheme", "password-with-colon"],
)
def test_good_credentials_are_200(server: ServerProcess, authorization: str) -> None:
    response = get(server, "/info", authorization)
    assert response.status_code == 200
    features = response.json()["versions"]["v1"]["features"]
    assert features["authentication"] == {"required": True, "methods": {"basic-auth": {}}}


def test_evaluate_needs_credentials(server: ServerProcess) -> None:
    assert server.http.post("/evaluate", json=TRIVIAL).status_code == 401
    response = server.http.post("/evaluate", json=TRIVIAL, headers={"Authorization": ALICE})
    assert (response.status_code, response.json()) == (200, [2, 3])


def test_credentials_are_checked_before_the_size_limit(server: ServerProcess) -> None:
    body = b'{"script": "return 1", "data": {"_arg1": "' + b"x" * 2_000_000 + b'"}}'
    assert server.http.post("/evaluate", content=body).status_code == 401
    authorized = server.http.post("/evaluate", content=body, headers={"Authorization": ALICE})
    assert authorized.status_code == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/status"),
        ("GET", "/endpoints"),
        ("GET", "/endpoints/anything"),
        ("DELETE", "/endpoints/anything"),
        ("GET", "/query/anything"),
        ("OPTIONS", "/query/anything"),
        ("GET", "/configurations/endpoint_upload_destination"),
    ],
)
def test_every_route_requires_credentials(server: ServerProcess, method: str, path: str) -> None:
    response = server.http.request(method, path)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == REALM
    authorized = server.http.request(method, path, headers={"Authorization": ALICE})
    assert authorized.status_code != 401


@pytest.mark.parametrize("path", ["/info", "/evaluate", "/status", "/endpoints"])
def test_preflight_needs_no_credentials(server: ServerProcess, path: str) -> None:
    assert server.http.options(path).status_code == 200


def test_unknown_path_and_wrong_method_are_not_hidden(server: ServerProcess) -> None:
    assert server.http.get("/no-such-page").status_code == 404
    assert server.http.get("/evaluate").status_code == 405


def test_credentials_sent_to_a_server_without_auth_get_406(
    default_server: ServerProcess,
) -> None:
    response = default_server.http.get("/info", headers={"Authorization": ALICE})
    assert response.status_code == 406
    assert response.headers["WWW-Authenticate"] == 'Basic realm="TabPy Server"'
    assert response.content == envelope(
        "Username or password provided when authentication not available.", "Not Acceptable"
    )


# --- reloading the password file -----------------------------------------------------------------


def status_of(server: ServerProcess, authorization: str) -> Callable[[], int]:
    return lambda: get(server, "/info", authorization).status_code


def tabpy_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabpy.cli.user", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_reload_on_change_keeps_last_good_file_and_on_sighup(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    pwd_file = write_users(tmp_path / "passwords.txt", password_line("alice", "P@ssw0rd"))
    server = launch({"TABPY_PWD_FILE": str(pwd_file), "TABPY_AUTH_MAX_FAILURES": "0"})
    bob = basic("bob", "s3cret")
    assert status_of(server, ALICE)() == 200
    assert status_of(server, bob)() == 401

    # An edit in place is picked up without a restart.
    with pwd_file.open("a", encoding="utf-8") as stream:
        stream.write(password_line("bob", "s3cret"))
    wait_for(lambda: status_of(server, bob)() == 200, 10, "bob to be accepted after the edit")

    # A broken file is refused: the previous users stay, and the log says why.
    good = pwd_file.read_text()
    pwd_file.write_text(good + "bob duplicate\n")
    # The file is checked when a request needs it (at most once a second).
    wait_for(
        lambda: (
            status_of(server, ALICE)() == 200
            and "line 3: Multiple entries for username bob" in server.stderr.text
        ),
        10,
        "the refused reload to be logged",
    )
    assert status_of(server, ALICE)() == 200
    assert status_of(server, bob)() == 200
    pwd_file.write_text(good)

    # tabpy-user rewrites the file atomically (a new inode): also picked up.
    assert tabpy_user("delete", "-u", "bob", "-f", str(pwd_file)).returncode == 0
    wait_for(lambda: status_of(server, bob)() == 401, 10, "bob to be refused after delete")

    # SIGHUP: same inode, same size and same modification time, so only the signal can
    # reveal the change.
    before = os.stat(pwd_file)
    new_alice = basic("alice", "N3w-pass")
    with pwd_file.open("r+", encoding="utf-8") as stream:
        stream.write(password_line("alice", "N3w-pass"))
    os.utime(pwd_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(pwd_file)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    server.send_signal(signal.SIGHUP)
    wait_for(lambda: status_of(server, new_alice)() == 200, 10, "the new password after SIGHUP")
    assert "Reloading passwords file" in server.stderr.text
    assert status_of(server, ALICE)() == 401


# --- throttling ----------------------------------------------------------------------------------


def test_repeated_failures_are_throttled(
    launch: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    pwd_file = write_users(
        tmp_path / "passwords.txt",
        password_line("alice", "P@ssw0rd"),
        password_line("bob", "s3cret"),
    )
    server = launch({"TABPY_PWD_FILE": str(pwd_file), "TABPY_AUTH_MAX_FAILURES": "3"})
    assert status_of(server, ALICE)() == 200  # now verified and cached
    wrong = basic("alice", "guess")
    assert [status_of(server, wrong)() for _ in range(3)] == [401, 401, 401]

    response = get(server, "/info", wrong)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.json()["message"] == "Too many failed authentication attempts from this client."
    assert re.fullmatch(
        r"Try again in \d+ seconds, with valid credentials\.", response.json()["info"]
    )

    # Credentials verified before keep working, and the lockout is per user name: bob's first
    # login from the same address is not blocked by failures as alice.
    assert status_of(server, ALICE)() == 200
    assert status_of(server, basic("bob", "s3cret"))() == 200
    assert "failed to authenticate 3 times" in server.stderr.text
