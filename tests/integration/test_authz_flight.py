"""``TABPY_AUTHZ = on`` over Arrow Flight: every call against every role, ``shutdown`` for admins
(and the deprecated ``TABPY_ARROW_ADMIN_USERS`` alias), audited; a Prep script's
``tabpy.query`` with its caller's rights."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.components import ARROW, require_module

pytestmark = pytest.mark.arrow
pa = require_module("pyarrow", ARROW)
flight = require_module("pyarrow.flight", ARROW)

from live_server import ServerProcess, clean_environment, wait_for  # noqa: E402
from security_support import basic, password_line  # noqa: E402
from test_arrow_flight import ARROW as ARROW_SETTINGS  # noqa: E402
from test_arrow_flight import flight_port, sample  # noqa: E402

PASSWORD = "P@ssw0rd"
ROLES = {
    "root": ["admin"],
    "prep": ["evaluator"],
    "tableau": ["caller", "evaluator"],
    "dev": ["deployer"],
    "nobody": [],
    "legacy": [],  # listed in TABPY_ARROW_ADMIN_USERS only
}


def tabpy_user(config: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tabpy.cli.user", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("authz-flight")
    pwd_file = directory / "passwords.txt"
    pwd_file.write_text("".join(password_line(user, PASSWORD) for user in ROLES))
    settings = {
        **ARROW_SETTINGS,
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_AUTHZ": "on",
        "TABPY_ARROW_ADMIN_USERS": "legacy",
    }
    up = ServerProcess(directory, settings, client={"auth": ("root", PASSWORD)})
    config = Path(up.args[up.args.index("--config") + 1])
    try:
        for user, roles in ROLES.items():
            for role in roles:
                tabpy_user(config, "grant", "-u", user, "--role", role)
        up.start()
        yield up
    finally:
        up.kill()


def options(user: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", basic(user, PASSWORD).encode())])


@pytest.fixture
def client(server: ServerProcess) -> Iterator[flight.FlightClient]:
    with flight.connect(f"grpc+tcp://127.0.0.1:{flight_port(server)}") as connection:
        yield connection


def calls(client: flight.FlightClient) -> dict[str, Callable[[str], object]]:
    """Each Flight call, made as a user; "root" puts the tables the others look for."""
    table = sample(10)

    def do_put(user: str) -> object:
        descriptor = flight.FlightDescriptor.for_path(f"put-by-{user}")
        writer, _ = client.do_put(descriptor, table.schema, options(user))
        writer.write_table(table)
        return writer.close()

    def described(user: str) -> object:
        path = put_as(client, "root") if user == "root" else "x"
        return client.get_flight_info(flight.FlightDescriptor.for_path(path), options(user))

    def do_get(user: str) -> object:
        key = "(1, None, (b'missing',))"
        return client.do_get(flight.Ticket(key.encode()), options(user)).read_all()

    def action(name: str) -> Callable[[str], object]:
        return lambda user: list(client.do_action(flight.Action(name, b""), options(user)))

    return {
        "DoPut": do_put,
        "GetFlightInfo": described,
        "DoGet": do_get,
        "ListFlights": lambda user: list(client.list_flights(b"", options(user))),
        "ListActions": lambda user: client.list_actions(options(user)),
        "action:getUniquePath": action("getUniquePath"),
        "action:clear": action("clear"),
        "action:healthcheck": action("healthcheck"),
    }


NEEDS = {
    "DoPut": "evaluator",
    "GetFlightInfo": "evaluator",
    "DoGet": "evaluator",
    "ListFlights": "evaluator",
    "ListActions": None,
    "action:getUniquePath": "evaluator",
    "action:clear": "evaluator",
    "action:healthcheck": None,
}


def test_each_flight_call_needs_its_role(client: flight.FlightClient) -> None:
    for name, call in calls(client).items():
        role = NEEDS[name]
        for user, roles in ROLES.items():
            allowed = role is None or role in roles or "admin" in roles
            if allowed:
                # A missing table (KeyError) is an answer too: the call was let through.
                with contextlib.suppress(KeyError, flight.FlightServerError):
                    call(user)
            else:
                with pytest.raises(flight.FlightUnauthorizedError) as refused:
                    call(user)
                assert f"needs the {role} role" in str(refused.value), (name, user)


def test_a_prep_scripts_queries_have_its_callers_rights(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    server.wait_until_warm()
    deployed = server.http.post(
        "/endpoints",
        json={"name": "rows", "artifact": upload(server), "callers": ["tableau"]},
    )
    assert deployed.status_code == 201, deployed.text
    script = (
        "answer = tabpy.query('rows', len(_arg1))\n"
        "return {'answer': [str(answer.get('response', answer.get('message')))]}"
    )
    for user, expected in (("tableau", "10"), ("prep", "Permission denied")):
        path = put_as(client, user)
        reply = server.http.post(
            "/evaluate", json={"script": script, "dataPath": path}, auth=(user, PASSWORD)
        )
        assert reply.status_code == 200, reply.text
        info = client.get_flight_info(
            flight.FlightDescriptor.for_path(reply.json()["outputDataPath"]), options(user)
        )
        result = client.do_get(info.endpoints[0].ticket, options(user)).read_all()
        assert result.column("answer").to_pylist()[0].startswith(expected), (user, result)


def upload(server: ServerProcess) -> str:
    import cloudpickle

    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def rows(n):\n    return n\n", namespace)
    data = cloudpickle.dumps(namespace["rows"])
    sha256 = hashlib.sha256(data).hexdigest()
    assert server.http.put(f"/artifacts/{sha256}", content=data).status_code in (200, 201)
    return sha256


def put_as(client: flight.FlightClient, user: str) -> str:
    path = list(client.do_action(flight.Action("getUniquePath", b""), options(user)))[0]
    name = path.body.to_pybytes().decode()
    table = sample(10)
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(name), table.schema, options(user))
    writer.write_table(table)
    writer.close()
    return name


def test_shutdown_is_for_admins_and_audited(
    server: ServerProcess, client: flight.FlightClient
) -> None:
    shutdown = flight.Action("shutdown", b"")
    for user in ("prep", "dev", "nobody"):
        with pytest.raises(flight.FlightUnauthorizedError, match="needs the admin role"):
            list(client.do_action(shutdown, options(user)))
    refused = server.http.get("/admin/audit", params={"action": "shutdown"}).json()["entries"]
    assert [(e["principal"], e["outcome"], e["client"]) for e in refused] == [
        ("user:nobody", "refused", "arrow-flight"),
        ("user:dev", "refused", "arrow-flight"),
        ("user:prep", "refused", "arrow-flight"),
    ]
    # The deprecated list still works, and says so in the log.
    assert "TABPY_ARROW_ADMIN_USERS is deprecated" in server.stderr.text
    results = list(client.do_action(shutdown, options("legacy")))
    assert [result.body.to_pybytes() for result in results] == [b"Shutdown!"]

    def stopped() -> bool:
        try:
            list(client.do_action(flight.Action("healthcheck", b""), options("root")))
        except flight.FlightError:
            return True
        return False

    wait_for(stopped, 10, "the Flight listener to stop")
    allowed = server.http.get("/admin/audit", params={"outcome": "allowed", "action": "shutdown"})
    assert [e["principal"] for e in allowed.json()["entries"]] == ["user:legacy"]
    metrics = server.http.get("/metrics").text
    assert 'tabpy_audit_events_total{action="shutdown",outcome="refused"} 3.0' in metrics
