"""Arrow Flight for Tableau Prep on the real server, with a real ``pyarrow.flight`` client.

Three servers: one without authentication (the RPCs, the actions and ``/evaluate`` with
``dataPath``, including a runaway script), one with a tiny store and a short time to live, and
one with HTTPS, Basic and OAuth (Flight over TLS, logins, session tokens, JWTs, ``shutdown``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.components import ARROW, require_module

pytestmark = pytest.mark.arrow
pa = require_module("pyarrow", ARROW)
flight = require_module("pyarrow.flight", ARROW)

from live_server import (  # noqa: E402
    ServerProcess,
    clean_environment,
    envelope,
    module_server,
    pid_alive,
    wait_for,
    write_config,
)
from security_support import (  # noqa: E402
    Authority,
    JwksServer,
    SigningKey,
    basic,
    claims,
    password_line,
    write_pair,
)

FLIGHT_LINE = re.compile(r"Arrow Flight listening on port (\d+)")
TIMEOUT = 3
ARROW = {
    "TABPY_ARROW_ENABLE": "true",
    "TABPY_ARROWFLIGHT_PORT": "0",
    "TABPY_ARROW_BIND_ADDRESS": "127.0.0.1",
    "TABPY_WORKERS": "1",
    "TABPY_EVALUATE_TIMEOUT": str(TIMEOUT),
}
ADD_TOTAL = "df = _arg1\ndf['total'] = df['a'] + df['b']\nreturn df"


def flight_port(server: ServerProcess) -> int:
    match = server.stderr.wait_for(FLIGHT_LINE, 30)
    assert match is not None, server.stderr.text
    return int(match.group(1))


def sample(rows: int = 1000) -> pa.Table:
    return pa.table({"a": list(range(rows)), "b": [0.5 * i for i in range(rows)]})


def put(client: flight.FlightClient, table: pa.Table, *, batch_rows: int | None = 256) -> str:
    """Store ``table`` under a path from ``getUniquePath``; return the path."""
    results = list(client.do_action(flight.Action("getUniquePath", b"")))
    path = results[0].body.to_pybytes().decode()
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(path), table.schema)
    writer.write_table(table, max_chunksize=batch_rows)
    writer.close()
    return path


def fetch(client: flight.FlightClient, path: str) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_path(path))
    return client.do_get(info.endpoints[0].ticket).read_all()


def evaluate(server: ServerProcess, script: str, path: str, **extra: object) -> object:
    return server.http.post("/evaluate", json={"script": script, "dataPath": path, **extra})


def segments(server: ServerProcess) -> int:
    """Shared-memory segments the server holds open: large tables, the one readied for the
    next upload (freed when uploads pause), so a count may fall below an earlier one, and an
    empty one kept for the next large result."""
    count = 0
    for fd in Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("/memfd:tabpy-arrow-")
        except OSError:
            continue
    return count


# --- no authentication ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, ARROW)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[flight.FlightClient]:
    with flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(server)}") as connection:
        yield connection


def test_info_and_log_report_arrow(server: ServerProcess) -> None:
    features = server.http.get("/info").json()["versions"]["v1"]["features"]
    assert features["arrow_enabled"] is True
    assert "grpc+tcp://127.0.0.1:" in server.stderr.text


def test_put_describe_list_and_fetch_once(client: flight.FlightClient) -> None:
    table = sample()
    path = put(client, table)
    descriptor = flight.FlightDescriptor.for_path(path)
    info = client.get_flight_info(descriptor)
    assert info.schema == table.schema
    assert info.total_records == 1000
    assert info.total_bytes > table.nbytes
    ticket = info.endpoints[0].ticket.ticket
    assert ticket == repr((1, None, (path.encode(),))).encode()  # TabPy's ticket format
    listed = {tuple(item.descriptor.path) for item in client.list_flights()}
    assert (path.encode(),) in listed

    assert client.do_get(info.endpoints[0].ticket).read_all() == table
    # Like TabPy, a missing table is a KeyError: clients catch pyarrow's ArrowKeyError.
    with pytest.raises(pa.ArrowKeyError, match="Flight not found"):
        client.do_get(info.endpoints[0].ticket).read_all()  # one-shot
    with pytest.raises(pa.ArrowKeyError, match="Flight not found"):
        client.get_flight_info(descriptor)


def test_put_replaces_and_command_descriptors_work(client: flight.FlightClient) -> None:
    descriptor = flight.FlightDescriptor.for_command(b"prep-output")
    for rows in (10, 20):
        writer, _ = client.do_put(descriptor, sample(rows).schema)
        writer.write_table(sample(rows))
        writer.close()
    info = client.get_flight_info(descriptor)
    assert info.total_records == 20
    assert client.do_get(info.endpoints[0].ticket).read_all() == sample(20)


def test_actions(client: flight.FlightClient) -> None:
    names = {action.type for action in client.list_actions()}
    assert names == {"getUniquePath", "clear", "healthcheck", "shutdown"}
    assert list(client.do_action(flight.Action("healthcheck", b""))) == []
    first = list(client.do_action(flight.Action("getUniquePath", b"")))[0].body.to_pybytes()
    second = list(client.do_action(flight.Action("getUniquePath", b"")))[0].body.to_pybytes()
    assert re.fullmatch(rb"[0-9a-f-]{36}", first) and first != second

    put(client, sample())
    put(client, sample())
    assert list(client.do_action(flight.Action("clear", b""))) == []
    assert list(client.list_flights()) == []
    with pytest.raises(pa.ArrowKeyError, match="Unknown action 'nope'"):
        list(client.do_action(flight.Action("nope", b"")))


def test_shutdown_is_refused_without_authentication(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    with pytest.raises(flight.FlightUnauthorizedError, match="TABPY_ARROW_ADMIN_USERS"):
        list(client.do_action(flight.Action("shutdown", b"")))
    assert list(client.do_action(flight.Action("healthcheck", b""))) == []


def test_data_path_round_trip(server: ServerProcess, client: flight.FlightClient) -> None:
    server.wait_until_warm()
    path = put(client, sample())
    # "data" is ignored when "dataPath" is given, as in TabPy.
    response = evaluate(server, ADD_TOTAL, path, data={"_arg1": [1]})
    assert response.status_code == 200, response.text
    output = response.json()["outputDataPath"]
    assert response.content == f'{{"outputDataPath": "{output}"}}'.encode()
    result = fetch(client, output)
    assert result.column_names == ["a", "b", "total"]
    assert result.column("total").to_pylist() == [1.5 * i for i in range(1000)]

    # The input was used up.
    again = evaluate(server, ADD_TOTAL, path)
    assert again.status_code == 500
    assert again.json()["message"] == "Error processing script"
    assert again.json()["info"].startswith("KeyError : 'Flight not found.'")
    assert "TABPY_ARROW_ENTRY_TTL_SECONDS" in again.json()["info"]


def test_data_path_results(server: ServerProcess, client: flight.FlightClient) -> None:
    server.wait_until_warm()
    # A dict of columns, from a table whose strings stay zero-copy in the worker.
    table = pa.table({"name": ["x", "yy", None] * 100, "n": list(range(300))})
    path = put(client, table, batch_rows=None)
    script = "return {'name': _arg1['name'].str.upper(), 'twice': (_arg1['n'] * 2).tolist()}"
    response = evaluate(server, script, path)
    assert response.status_code == 200, response.text
    result = fetch(client, response.json()["outputDataPath"])
    assert result.column("name").to_pylist() == ["X", "YY", None] * 100
    assert result.column("twice").to_pylist() == [2 * n for n in range(300)]

    response = evaluate(server, "return None", put(client, sample()))
    assert (response.status_code, response.content) == (200, b"null")

    response = evaluate(server, "return [1, 2]", put(client, sample()))
    assert response.status_code == 500
    assert response.json()["info"].startswith(
        "TypeError : a script called with dataPath must return a table"
    )

    response = server.http.post("/evaluate", json={"dataPath": put(client, sample())})
    assert response.content == envelope("Script is empty.")
    assert response.status_code == 400
    response = server.http.post("/evaluate", json={"script": "return 1", "dataPath": 7})
    assert response.status_code == 400
    assert "dataPath" in response.json()["message"]
    client.do_action(flight.Action("clear", b""))


@pytest.mark.parametrize(
    ("rows", "script", "result_rows"),
    [
        (1000, ADD_TOTAL, 1000),  # in memory both ways
        (200_000, ADD_TOTAL, 200_000),  # in segments both ways (over the input)
        (200_000, "return _arg1.head(10)", 10),  # a large table, a small result
        (1000, "return _arg1.sample(200_000, replace=True, random_state=1)", 200_000),
    ],
)
def test_tables_small_and_large_both_ways(
    server: ServerProcess, client: flight.FlightClient, rows: int, script: str, result_rows: int
) -> None:
    """Tables up to a megabyte travel with the job and its reply, larger ones in shared
    memory: every combination gives the table the script returned, and frees what it used."""
    server.wait_until_warm()
    # The server keeps an empty segment ready for the next large result: make it exist.
    assert evaluate(server, "return None", put(client, sample(10))).content == b"null"
    held = segments(server)
    table = sample(rows)
    response = evaluate(server, script, put(client, table, batch_rows=50_000))
    assert response.status_code == 200, response.text
    result = fetch(client, response.json()["outputDataPath"])
    assert result.num_rows == result_rows
    expected = table.to_pandas()
    if script == ADD_TOTAL:
        expected["total"] = expected["a"] + expected["b"]
    else:
        namespace: dict[str, object] = {}
        exec(f"def run(_arg1):\n    {script}", namespace)  # the same script, here
        expected = namespace["run"](expected)  # type: ignore[operator]
    assert result.to_pandas().equals(expected)
    wait_for(lambda: segments(server) <= held, 10, "the job's shared memory to be freed")


def test_data_path_is_found_by_parsing_not_by_scanning_bytes(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    """A JSON escape in the key, as any JSON encoder may write it, still names the table."""
    server.wait_until_warm()
    path = put(client, sample())
    body = '{"script": "return _arg1", "d\\u0061taPath": "' + path + '"}'
    response = server.http.post(
        "/evaluate", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert fetch(client, response.json()["outputDataPath"]) == sample()


def escaped(server: ServerProcess, script: str, path: str) -> object:
    """``evaluate`` with the key spelled with a JSON escape: the server leaves such a body to a
    worker, which finds the table request; a plain one the server recognises itself."""
    body = json.dumps({"script": script, "dataPath": path})
    content = body.replace('"dataPath"', '"d\\u0061taPath"').encode()
    return server.http.post(
        "/evaluate", content=content, headers={"Content-Type": "application/json"}
    )


def test_both_ways_to_a_table_answer_alike(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    """The trip the server skips changes no byte: the same result table, the same errors."""
    server.wait_until_warm()
    table = sample()
    results = []
    for send in (evaluate, escaped):
        response = send(server, ADD_TOTAL, put(client, table))
        assert response.status_code == 200, response.text
        assert re.fullmatch(rb'\{"outputDataPath": "[0-9a-f-]{36}"\}', response.content)
        results.append(fetch(client, response.json()["outputDataPath"]))
    assert results[0].equals(results[1], check_metadata=True)

    missing = [send(server, ADD_TOTAL, "no-such-table") for send in (evaluate, escaped)]
    assert [r.status_code for r in missing] == [500, 500]
    assert missing[0].content == missing[1].content
    assert missing[0].json()["info"].startswith("KeyError : 'Flight not found.'")

    failing = [send(server, "return 1 / 0", put(client, table)) for send in (evaluate, escaped)]
    assert failing[0].content == failing[1].content
    assert failing[0].json()["info"].startswith("ZeroDivisionError")


def test_runaway_prep_script_kills_only_its_worker(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    server.wait_until_warm()
    before = server.worker_pid()
    held = segments(server)
    response = evaluate(server, "while True:\n    pass", put(client, sample()))
    assert response.status_code == 408
    assert response.content == envelope(
        f"User defined script timed out. Timeout is set to {float(TIMEOUT)} s."
    )
    wait_for(lambda: not pid_alive(before), 10, "the runaway worker to be killed")
    wait_for(lambda: segments(server) <= held, 10, "the job's shared memory to be freed")

    response = evaluate(server, ADD_TOTAL, put(client, sample()))
    assert response.status_code == 200, response.text
    assert server.worker_pid() != before
    assert fetch(client, response.json()["outputDataPath"]).num_rows == 1000

    response = evaluate(server, "import os\nos._exit(3)", put(client, sample()))
    assert response.status_code == 500
    assert "WorkerCrashed" in response.json()["info"]
    wait_for(lambda: segments(server) <= held, 10, "the job's shared memory to be freed")
    server.wait_until_warm()


# --- limits --------------------------------------------------------------------------------------

TTL = 2


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = {
        **ARROW,
        "TABPY_ARROW_MAX_STORE_MB": "1",
        "TABPY_ARROW_ENTRY_TTL_SECONDS": str(TTL),
    }
    yield from module_server(tmp_path_factory, settings, warm=False)


def test_store_limit(small_server: ServerProcess) -> None:
    with flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(small_server)}") as client:
        big = pa.table({"x": [1.0] * 200_000})  # 1.6 MB
        with pytest.raises(flight.FlightServerError, match="TABPY_ARROW_MAX_STORE_MB = 1 MB"):
            put(client, big, batch_rows=20_000)
        assert list(client.list_flights()) == []
        # The refused upload gave its bytes back.
        path = put(client, pa.table({"x": [1.0] * 100_000}))
        assert fetch(client, path).num_rows == 100_000


def test_unfetched_tables_expire(small_server: ServerProcess) -> None:
    with flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(small_server)}") as client:
        path = put(client, sample())
        assert client.get_flight_info(flight.FlightDescriptor.for_path(path)).total_records
        wait_for(lambda: not list(client.list_flights()), TTL + 10, "the table to expire")
        wait_for(lambda: segments(small_server) == 0, 10, "its memory to be freed")
    # Asked for after it expired, the table is refused alike, whoever recognises the request.
    refusals = [send(small_server, ADD_TOTAL, path) for send in (evaluate, escaped)]
    assert [r.status_code for r in refusals] == [500, 500]
    assert refusals[0].content == refusals[1].content
    assert f"after {TTL} s if nobody fetches it" in refusals[0].json()["info"]
    # Logged just after the memory is freed: wait for the line rather than race it.
    wait_for(
        lambda: "TABPY_ARROW_ENTRY_TTL_SECONDS" in small_server.stderr.text, 10, "the log line"
    )


# --- HTTPS, Basic and OAuth ----------------------------------------------------------------------

ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("flight-key")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, key: SigningKey) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("secure")
    authority = Authority()
    (directory / "ca.pem").write_bytes(authority.pem())
    cert, private = authority.issue()
    cert_path, key_path = write_pair(directory, "server", cert, private)
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text(password_line("alice", "adm:in") + password_line("bob", "P@ssw0rd"))
    with JwksServer(authority, directory) as jwks:
        jwks.publish(key)
        settings = {
            **ARROW,
            "TABPY_TRANSFER_PROTOCOL": "https",
            "TABPY_CERTIFICATE_FILE": str(cert_path),
            "TABPY_KEY_FILE": str(key_path),
            "TABPY_PWD_FILE": str(pwd_file),
            "TABPY_OAUTH_ENABLED": "true",
            "TABPY_OAUTH_ISSUER": ISSUER,
            "TABPY_OAUTH_JWKS_URI": jwks.uri,
            "TABPY_OAUTH_ALLOW_NONPUBLIC_JWKS": "true",
            "TABPY_OAUTH_AUDIENCE": AUDIENCE,
            "TABPY_AUTH_MAX_FAILURES": "0",
            "TABPY_ARROW_ADMIN_USERS": "Alice",
        }
        ca = ssl.create_default_context(cafile=str(directory / "ca.pem"))
        for server in module_server(
            tmp_path_factory,
            settings,
            warm=False,
            env={"SSL_CERT_FILE": str(directory / "ca.pem")},
            client={"verify": ca, "auth": ("bob", "P@ssw0rd")},
        ):
            server.ca_pem = authority.pem()  # type: ignore[attr-defined]
            yield server


def secure_client(server: ServerProcess) -> flight.FlightClient:
    ca = server.ca_pem  # type: ignore[attr-defined]
    return flight.connect(f"grpc+tls://localhost:{flight_port(server)}", tls_root_certs=ca)


def headers(value: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", value.encode())])


def healthcheck(client: flight.FlightClient, options: flight.FlightCallOptions) -> list[object]:
    return list(client.do_action(flight.Action("healthcheck", b""), options))


def test_flight_refuses_missing_and_wrong_credentials(secure: ServerProcess) -> None:
    with secure_client(secure) as client:
        with pytest.raises(flight.FlightUnauthenticatedError, match="No credentials supplied"):
            list(client.list_flights())
        for value in (basic("bob", "wrong"), basic("nobody", "x"), "Bearer garbage", "Token x"):
            with pytest.raises(flight.FlightUnauthenticatedError, match="Invalid credentials"):
                healthcheck(client, headers(value))


def test_basic_login_hands_out_a_session_token(secure: ServerProcess) -> None:
    with secure_client(secure) as client:
        assert healthcheck(client, headers(basic("BOB", "P@ssw0rd"))) == []
        name, value = client.authenticate_basic_token("bob", "P@ssw0rd")
        assert name == b"authorization" and re.fullmatch(rb"Bearer [\w-]{43}", value)
        # A login while the token is fresh gets the same token back.
        assert client.authenticate_basic_token("bob", "P@ssw0rd")[1] == value
        assert healthcheck(client, headers(value.decode())) == []
        # A password with a colon works on Flight (TabPy's split-at-first-colon rule).
        assert healthcheck(client, headers(basic("alice", "adm:in"))) == []


def test_jwt_bearer_tokens(secure: ServerProcess, key: SigningKey) -> None:
    with secure_client(secure) as client:
        token = key.token(claims(ISSUER, AUDIENCE, "tabpy"))
        assert healthcheck(client, headers(f"Bearer {token}")) == []
        wrong = key.token(claims(ISSUER, "api://other", "tabpy"))
        with pytest.raises(flight.FlightUnauthenticatedError, match="Invalid credentials"):
            healthcheck(client, headers(f"Bearer {wrong}"))
        # Two different credentials in one call are refused.
        both = flight.FlightCallOptions(
            headers=[
                (b"authorization", f"Bearer {token}".encode()),
                (b"authorization", basic("bob", "P@ssw0rd").encode()),
            ]
        )
        with pytest.raises(flight.FlightUnauthenticatedError):
            healthcheck(client, both)


def test_data_path_over_https(secure: ServerProcess) -> None:
    secure.wait_until_warm()
    with secure_client(secure) as client:
        token = client.authenticate_basic_token("bob", "P@ssw0rd")
        options = flight.FlightCallOptions(headers=[token])
        table = sample()
        path = list(client.do_action(flight.Action("getUniquePath", b""), options))[0]
        descriptor = flight.FlightDescriptor.for_path(path.body.to_pybytes().decode())
        writer, _ = client.do_put(descriptor, table.schema, options)
        writer.write_table(table)
        writer.close()
        response = evaluate(secure, ADD_TOTAL, descriptor.path[0].decode())
        assert response.status_code == 200, response.text
        output = flight.FlightDescriptor.for_path(response.json()["outputDataPath"])
        info = client.get_flight_info(output, options)
        assert info.endpoints[0].locations[0].uri.startswith(b"grpc+tls://")
        assert client.do_get(info.endpoints[0].ticket, options).read_all().num_rows == 1000


def test_shutdown_needs_an_admin(secure: ServerProcess, key: SigningKey) -> None:
    with secure_client(secure) as client:
        shutdown = flight.Action("shutdown", b"")
        jwt = f"Bearer {key.token(claims(ISSUER, AUDIENCE, 'x'))}"
        for value in (basic("bob", "P@ssw0rd"), jwt):
            with pytest.raises(flight.FlightUnauthorizedError, match="TABPY_ARROW_ADMIN_USERS"):
                list(client.do_action(shutdown, headers(value)))
        results = list(client.do_action(shutdown, headers(basic("alice", "adm:in"))))
        assert [result.body.to_pybytes() for result in results] == [b"Shutdown!"]

        def refused() -> bool:
            try:
                healthcheck(client, headers(basic("alice", "adm:in")))
            except flight.FlightError:
                return True
            return False

        wait_for(refused, 10, "the Flight listener to stop")
    assert secure.http.get("/info").status_code == 200  # HTTP keeps running


# --- start-up ------------------------------------------------------------------------------------


def test_server_without_arrow_never_loads_pyarrow(default_server: ServerProcess) -> None:
    maps = Path(f"/proc/{default_server.pid}/maps").read_text()
    assert "libarrow" not in maps
    assert "Arrow Flight" not in default_server.stderr.text


def test_arrow_without_pyarrow_is_one_clear_line(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pyarrow is hidden by the test')\n")
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, {**ARROW, "TABPY_PORT": "0", "TABPY_STATE_PATH": str(state)})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tabpy.cli.server",
            "--config",
            str(config),
            "--disable-auth-warning",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_environment(), "PYTHONPATH": str(fake.parent)},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("tabpy: ")]
    assert len(errors) == 1, result.stderr
    assert "pyarrow is not installed" in errors[0]
    assert "pip install 'tabpyx[arrow]'" in errors[0]
    assert "Traceback" not in result.stderr


def test_sigterm_stops_flight_gracefully(launch: Callable[..., ServerProcess]) -> None:
    server = launch(ARROW)
    with flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(server)}") as client:
        put(client, sample())
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    log = server.stderr.text
    assert log.index("Arrow Flight stopped") < log.index("Shutting down TabPy")
