"""``TABPY_ACCEPTORS = 2``: two server processes on one port, kept by a supervisor.

Each test sends its requests on fresh connections: the kernel spreads new connections over the
acceptors' ``SO_REUSEPORT`` sockets, and a kept-alive connection would stay with one of them.
Which acceptor answered is in the ``X-TabPy-Instance`` header (``<instance id>/<n>``).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudpickle
import httpx
import pytest
from deploy_support import pickled, upload
from live_server import ServerProcess, pid_alive, wait_for

SETTINGS = {"TABPY_ACCEPTORS": "2", "TABPY_WORKERS": "2", "TABPY_INSTANCE_ID": "node"}
SERVING = re.compile(r"2 acceptors serving on port \d+ \(pids (\d+), (\d+)\)")
INSTANCES = {"node/0", "node/1"}


def double(values: list[int]) -> list[int]:
    return [2 * v for v in values]


# The workers cannot import this test module: send the function's code, not its name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def start(launch: Callable[..., ServerProcess]) -> tuple[ServerProcess, list[int]]:
    server = launch(SETTINGS)
    serving = server.stderr.wait_for(SERVING, 60)
    assert serving is not None, server.stderr.text
    return server, [int(serving.group(1)), int(serving.group(2))]


def fresh(server: ServerProcess, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on a connection of its own."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.request(method, path, **kwargs)  # type: ignore[arg-type]


def evaluate(server: ServerProcess) -> httpx.Response:
    return fresh(server, "POST", "/evaluate", json={"script": "return 1", "data": {}})


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def in_flight(server: ServerProcess) -> int:
    """Requests in flight in the acceptors that answer /metrics, summed over both."""
    seen: dict[str, float] = {}
    for _ in range(20):
        reply = fresh(server, "GET", "/metrics")
        match = re.search(r"^tabpy_http_requests_in_flight (\S+)$", reply.text, re.M)
        if match:
            seen[reply.headers["X-TabPy-Instance"]] = float(match.group(1)) - 1  # this one
    return int(sum(seen.values()))


def answering(server: ServerProcess, instances: set[str]) -> Callable[[], bool]:
    """A condition: every one of ``instances`` has answered a trivial /evaluate with 200."""
    seen: set[str] = set()

    def check() -> bool:
        reply = evaluate(server)
        if reply.status_code == 200:
            seen.add(reply.headers["X-TabPy-Instance"])
        return instances <= seen

    return check


def test_both_acceptors_serve_and_a_deploy_through_one_is_served_by_the_other(
    launch: Callable[..., ServerProcess],
) -> None:
    server, pids = start(launch)
    assert children(server.pid) == set(pids)
    wait_for(answering(server, INSTANCES), 60, "both acceptors to answer")

    # Deploy on a kept-alive connection: one acceptor makes the change.
    sha256 = upload(server.http, pickled(double))
    created = server.http.post("/endpoints", json={"name": "double", "artifact": sha256})
    assert created.status_code == 201, created.text
    deployed_by = created.headers["X-TabPy-Instance"]

    served: dict[str, list[int]] = {}

    def both_serve_it() -> bool:
        reply = fresh(server, "POST", "/query/double", json={"data": [[1, 2]]})
        if reply.status_code == 200:
            served[reply.headers["X-TabPy-Instance"]] = reply.json()["response"]
        return set(served) == INSTANCES

    wait_for(both_serve_it, 60, "the endpoint on both acceptors")
    assert served == {"node/0": [2, 4], "node/1": [2, 4]}
    assert deployed_by in INSTANCES
    # Each acceptor reports its own metrics, under its own instance id.
    metrics = {
        reply.headers["X-TabPy-Instance"]: reply.text
        for reply in (fresh(server, "GET", "/metrics") for _ in range(40))
    }
    for instance, text in metrics.items():
        assert f'tabpy_instance_info{{instance_id="{instance}"}} 1.0' in text


def test_sigterm_stops_every_acceptor_and_the_supervisor_exits_0(
    launch: Callable[..., ServerProcess],
) -> None:
    server, pids = start(launch)
    wait_for(answering(server, INSTANCES), 60, "both acceptors to answer")
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr.text
    assert not any(pid_alive(pid) for pid in pids)
    for index in (0, 1):
        assert f"Acceptor {index} stopped" in server.stderr.text
    with pytest.raises(httpx.ConnectError):
        evaluate(server)


def test_a_killed_acceptor_leaves_the_service_up_and_is_replaced(
    launch: Callable[..., ServerProcess],
) -> None:
    server, pids = start(launch)
    wait_for(answering(server, INSTANCES), 60, "both acceptors to answer")
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in children(server.pid), 30, "the supervisor to reap it")
    # The survivor takes every new connection at once.
    for _ in range(20):
        reply = evaluate(server)
        assert reply.status_code == 200, reply.text
    restarted = re.compile(rf"Acceptor 1 \(pid {victim}\) exited with signal 9; restarting")
    assert server.stderr.wait_for(restarted, 30) is not None, server.stderr.text
    wait_for(lambda: len(children(server.pid)) == 2, 60, "a new acceptor 1")
    assert victim not in children(server.pid)
    wait_for(answering(server, INSTANCES), 60, "the new acceptor 1 to answer")


def test_acceptors_stop_when_the_supervisor_is_killed(
    launch: Callable[..., ServerProcess],
) -> None:
    server, pids = start(launch)
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 60, "the acceptors to stop")


def test_ctrl_c_to_the_process_group_lets_requests_in_flight_finish(
    launch: Callable[..., ServerProcess],
) -> None:
    """A terminal's Ctrl+C signals the whole foreground group: the supervisor passes it on, and
    the acceptors stop gracefully, answering what they hold. (Each acceptor has a process group
    of its own, so it gets the signal once: a second SIGINT would make it stop without waiting.
    Two signals sent this close together usually merge anyway, so this test cannot tell.)"""
    server, pids = start(launch)
    wait_for(answering(server, INSTANCES), 60, "both acceptors to answer")
    with ThreadPoolExecutor(max_workers=4) as pool:
        slow = [
            pool.submit(
                fresh,
                server,
                "POST",
                "/evaluate",
                json={"script": "import time\ntime.sleep(1.5)\nreturn 7", "data": {}},
            )
            for _ in range(4)
        ]
        wait_for(lambda: in_flight(server) >= 4, 30, "the four requests to be in flight")
        os.killpg(server.pid, signal.SIGINT)
        replies = [future.result(timeout=30) for future in slow]
    assert [reply.status_code for reply in replies] == [200] * 4
    assert [reply.json() for reply in replies] == [7] * 4
    assert server.wait() == 0, server.stderr.text
    assert not any(pid_alive(pid) for pid in pids)
