"""One caller's script cannot change what another caller's requests run under.

alice's script monkeypatches ``json.dumps``, sets a builtin, writes ``os.environ`` and
``sys.modules`` and leaves a thread running, on every worker (two at once, each holding its
worker until both have started). bob's later requests, on every worker, see none of it: each
worker alice used is replaced by a clean one from the template before bob's code runs.
With ``TABPY_ISOLATE_CALLERS = false`` (TabPy's shared behaviour) bob sees all of it, which
also shows the probe would notice.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import ServerProcess, module_server
from security_support import password_line

WORKERS = 2

POISON = """\
import builtins, json, os, sys, threading, time, types
json.dumps = lambda *args, **kwargs: '"alice"'
builtins.alice_was_here = True
os.environ['ALICE'] = 'was here'
sys.modules['alice_module'] = types.ModuleType('alice_module')
threading.Thread(target=time.sleep, args=(3600,), name='alice-thread', daemon=True).start()
# Hold this worker until the other request has one too, so both workers get poisoned.
open(_arg1 + str(os.getpid()), 'w').close()
deadline = time.time() + 10
while len([n for n in os.listdir(_arg2) if n.startswith('mark')]) < 2 and time.time() < deadline:
    time.sleep(0.01)
return os.getpid()
"""

PROBE = """\
import builtins, json, os, sys, threading, time
time.sleep(0.2)  # overlap bob's requests, so they spread over the workers
return {
    'pid': os.getpid(),
    'dumps': json.dumps([1]),
    'builtin': hasattr(builtins, 'alice_was_here'),
    'environ': os.environ.get('ALICE'),
    'module': 'alice_module' in sys.modules,
    'thread': any(t.name == 'alice-thread' for t in threading.enumerate()),
}
"""

CLEAN = {"dumps": "[1]", "builtin": False, "environ": None, "module": False, "thread": False}


def start(tmp_path_factory: pytest.TempPathFactory, isolate: str) -> Iterator[ServerProcess]:
    secrets = tmp_path_factory.mktemp("secrets")
    passwords = secrets / "passwords.txt"
    passwords.write_text(password_line("alice", "a-pw") + password_line("bob", "b-pw"))
    settings = {
        "TABPY_PWD_FILE": str(passwords),
        "TABPY_WORKERS": str(WORKERS),
        "TABPY_ISOLATE_CALLERS": isolate,
    }
    yield from module_server(tmp_path_factory, settings, client={"auth": ("bob", "b-pw")})


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start(tmp_path_factory, "true")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start(tmp_path_factory, "false")


def run_as(server: ServerProcess, user: str, script: str, data: dict[str, object]) -> list:
    """Send ``WORKERS`` concurrent requests as ``user``; return their JSON results."""
    auth = (user, "a-pw" if user == "alice" else "b-pw")

    def call(_: int) -> object:
        with httpx.Client(base_url=server.url, timeout=30, auth=auth) as client:
            reply = client.post("/evaluate", json={"script": script, "data": data})
        assert reply.status_code == 200, reply.text
        return reply.json()

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as executor:
        return list(executor.map(call, range(WORKERS)))


def poison_every_worker(server: ServerProcess, tmp_path: Path) -> set[int]:
    data = {"_arg1": str(tmp_path / "mark"), "_arg2": str(tmp_path)}
    pids = {int(pid) for pid in run_as(server, "alice", POISON, data)}
    assert len(pids) == WORKERS, f"alice's scripts did not reach every worker: {pids}"
    return pids


def recycled(server: ServerProcess) -> float:
    metrics = server.http.get("/metrics").text
    recycled_default = r'\{cause="recycled",environment="default"\}'
    match = re.search(r"tabpy_worker_restarts_total" + recycled_default + r" (\S+)", metrics)
    assert match, metrics
    return float(match.group(1))


def test_bob_never_runs_under_alices_changes(isolated: ServerProcess, tmp_path: Path) -> None:
    alice_workers = poison_every_worker(isolated, tmp_path)
    for _ in range(3):
        results = run_as(isolated, "bob", PROBE, {})
        for result in results:
            assert {k: v for k, v in result.items() if k != "pid"} == CLEAN
            assert result["pid"] not in alice_workers
    assert recycled(isolated) >= WORKERS


def test_one_caller_never_pays_for_isolation(isolated: ServerProcess) -> None:
    before = recycled(isolated)
    for _ in range(5):
        run_as(isolated, "bob", "return 1", {})
    assert recycled(isolated) == before


def test_shared_workers_when_isolation_is_off(shared: ServerProcess, tmp_path: Path) -> None:
    alice_workers = poison_every_worker(shared, tmp_path)
    results = run_as(shared, "bob", PROBE, {})
    assert {result["pid"] for result in results} <= alice_workers
    assert all(result["thread"] and result["builtin"] for result in results)
