"""Two servers sharing one PostgreSQL registry: the scale-out set-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import client_for
from live_server import running_server, wait_for
from postgres_support import postgres_cluster

pytestmark = pytest.mark.postgres


def triple(values: list[int]) -> list[int]:
    return [3 * v for v in values]


def test_deploy_on_one_server_serves_on_another(tmp_path: Path) -> None:
    with (
        postgres_cluster() as url,
        running_server(tmp_path / "a", {"TABPY_REGISTRY_URL": url, "TABPY_WORKERS": "1"}) as a,
        running_server(tmp_path / "b", {"TABPY_REGISTRY_URL": url, "TABPY_WORKERS": "1"}) as b,
    ):
        with client_for(a) as client:
            client.deploy("triple", triple)
        wait_for(
            lambda: (
                b.http.get("/status").json().get("triple", {}).get("status") == "LoadSuccessful"
            ),
            5.0,
            "server B to load the endpoint deployed on server A",
        )
        reply = b.http.post("/query/triple", json={"data": [[1, 2]]})
        assert reply.status_code == 200
        assert reply.json()["response"] == [3, 6]
        script = b.evaluate("return tabpy.query('triple', _arg1)['response']", {"_arg1": [5]})
        assert script.json() == [15]
        # Deleting on B unloads it on A too.
        assert b.http.delete("/endpoints/triple").status_code == 204
        wait_for(
            lambda: a.http.post("/query/triple", json={"data": [[1]]}).status_code == 404,
            5.0,
            "server A to notice the deletion made on server B",
        )


@pytest.fixture(autouse=True)
def _no_leftover_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
