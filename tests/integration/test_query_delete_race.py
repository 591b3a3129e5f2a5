"""A query that races the deletion of its endpoint gets the old answer or a 404, never a 500.

50 concurrent ``/query`` calls and one ``DELETE`` of the same endpoint, several rounds: a
call either ran the endpoint (200, its answer) or found it gone (404). The failure this
guards against was 500 ``Load failed: LookupError``: the server read the endpoint list, the
delete removed the object, and the server published the endpoint without one.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
from deploy_support import deploy_raw, pickled
from live_server import ServerProcess, module_server

CALLS = 50
ROUNDS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from module_server(tmp_path_factory, {"TABPY_WORKERS": "2"})


def test_queries_racing_a_delete_get_the_answer_or_404(server: ServerProcess) -> None:
    data = pickled(lambda x: 2 * x)  # by value: the workers cannot import this module
    statuses: dict[int, int] = {}
    for round_number in range(ROUNDS):
        name = f"race{round_number}"
        deployed = deploy_raw(server.http, name, data)
        assert deployed.status_code in (200, 201), deployed.text

        def query(_: int, name: str = name) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                return client.post(f"/query/{name}", json={"data": [21]})

        def delete(name: str = name) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                return client.delete(f"/endpoints/{name}")

        with concurrent.futures.ThreadPoolExecutor(16) as executor:
            queries = [executor.submit(query, i) for i in range(CALLS // 2)]
            removal = executor.submit(delete)
            queries += [executor.submit(query, i) for i in range(CALLS - CALLS // 2)]
            assert removal.result().status_code in (200, 204), removal.result().text
            for future in queries:
                reply = future.result()
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                assert reply.status_code in (200, 404), reply.text
                if reply.status_code == 200:
                    assert reply.json()["response"] == 42
    assert sum(statuses.values()) == CALLS * ROUNDS
