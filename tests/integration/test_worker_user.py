"""Workers can run as another, unprivileged OS user (``TABPY_WORKER_USER``).

The server runs as root and keeps its password file and registry readable by root only; its
workers run as ``nobody``, so a script can read neither, while scripts and endpoints work.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import client_for
from live_server import ServerProcess, module_server
from security_support import password_line

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

PROBE = """\
import os
def readable(path):
    try:
        with open(path, 'rb') as f:
            f.read(1)
        return True
    except OSError:
        return False
return {'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
        'home': os.environ.get('HOME'),
        'passwords': readable(_arg1), 'registry': readable(_arg2)}
"""


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    directory.chmod(0o700)
    (directory / "passwords.txt").write_text(password_line("alice", "pw"), encoding="utf-8")
    (directory / "passwords.txt").chmod(0o600)
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, secrets: Path) -> Iterator[ServerProcess]:
    settings = {
        "TABPY_PWD_FILE": str(secrets / "passwords.txt"),
        "TABPY_REGISTRY_URL": f"sqlite:///{secrets / 'registry.db'}",
        "TABPY_WORKERS": "1",
        "TABPY_WORKER_USER": "nobody",
    }
    yield from module_server(tmp_path_factory, settings, client={"auth": ("alice", "pw")})


def test_scripts_run_as_the_worker_user(server: ServerProcess, secrets: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    paths = {"_arg1": str(secrets / "passwords.txt"), "_arg2": str(secrets / "registry.db")}
    assert (secrets / "registry.db").exists()
    reply = server.evaluate(PROBE, paths)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "uid": nobody.pw_uid,
        "gid": nobody.pw_gid,
        "groups": [g for g in os.getgrouplist("nobody", nobody.pw_gid)],
        "home": nobody.pw_dir,
        "passwords": False,
        "registry": False,
    }


def test_endpoints_still_work(server: ServerProcess) -> None:
    with client_for(server) as client:
        client.set_credentials("alice", "pw")
        client.deploy("triple", lambda x: [3 * v for v in x], "triples", override=True)
    reply = server.http.post("/query/triple", json={"data": {"x": [1, 2]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"] == [3, 6]
