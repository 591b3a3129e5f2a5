"""Workers hold none of the server's secrets: no TABPY_* variables, no registry connection.

The server is configured the way a service manager would do it, through the environment, with
a password file and a registry URL. A script must find neither, nor the registry's database
among its open files, and endpoints still reach it (from the server, not the registry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import client_for
from live_server import ServerProcess, module_server
from security_support import password_line

PROBE = """\
import os
def initial_environment(pid):
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            return f.read()
    except OSError:
        return b''
open_files = []
for fd in os.listdir('/proc/self/fd'):
    try:
        open_files.append(os.readlink(f'/proc/self/fd/{fd}'))
    except OSError:
        pass
secrets = [s.encode() for s in (_arg1, _arg2)]
return {
    'variables': sorted(k for k in os.environ if k.startswith('TABPY_')),
    'in_values': [s for s in (_arg1, _arg2) if any(s in v for v in os.environ.values())],
    'in_own_environ': any(s in initial_environment('self') for s in secrets),
    'in_template_environ': any(s in initial_environment(os.getppid()) for s in secrets),
    'registry_open': [f for f in open_files if 'registry' in f],
}
"""


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "passwords.txt").write_text(password_line("alice", "P@ssw0rd"), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, secrets_dir: Path) -> Iterator[ServerProcess]:
    env = {
        "TABPY_PWD_FILE": str(secrets_dir / "passwords.txt"),
        "TABPY_REGISTRY_URL": f"sqlite:///{secrets_dir / 'registry.db'}",
        "TABPY_WORKERS": "1",
    }
    yield from module_server(tmp_path_factory, env=env, client={"auth": ("alice", "P@ssw0rd")})


def test_scripts_cannot_read_the_servers_settings(server: ServerProcess, secrets_dir: Path) -> None:
    pwd_file = str(secrets_dir / "passwords.txt")
    registry_url = f"sqlite:///{secrets_dir / 'registry.db'}"
    # The server itself was given both (so the checks below are not vacuous).
    with open(f"/proc/{server.pid}/environ", "rb") as environ:
        assert registry_url.encode() in environ.read()

    reply = server.evaluate(PROBE, {"_arg1": pwd_file, "_arg2": registry_url})

    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "variables": [],
        "in_values": [],
        "in_own_environ": False,
        "in_template_environ": False,
        "registry_open": [],
    }


def test_endpoints_reach_workers_without_a_registry_connection(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.set_credentials("alice", "P@ssw0rd")
        client.deploy("triple", lambda x: 3 * x)
    reply = server.evaluate("return tabpy.query('triple', 4)['response']")
    assert (reply.status_code, reply.content) == (200, b"12")
    query = server.http.post("/query/triple", json={"data": [5]})
    assert query.json()["response"] == 15
