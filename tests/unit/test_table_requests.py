"""Who recognises a ``dataPath`` request: the server for a small, plain one, a worker otherwise.

:func:`tabpy.runtime.tables.table_request` is pure; :class:`tabpy.server.evaluate.Evaluate`
runs here in-process with a recording pool and table evaluator, so each test sees which trips
a request made and with what.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tabpy.config import load_settings
from tabpy.errors import ExecutionFailed
from tabpy.registry.service_info import ServiceInfo
from tabpy.runtime.protocol import EvaluateMeta, Job, Outcome, QueryCheck, Reply, TableRequest
from tabpy.runtime.tables import RECOGNISED_MAX_BYTES, table_request
from tabpy.security.access import Authorization
from tabpy.security.principal import ANONYMOUS, Principal
from tabpy.server.context import ServerContext
from tabpy.server.evaluate import Evaluate


def body(value: Any) -> list[bytes]:
    return [json.dumps(value).encode()]


# --- what the server recognises ------------------------------------------------------------------


def test_a_plain_table_request_is_recognised() -> None:
    request = {"script": "return _arg1", "dataPath": "p-1", "data": {"_arg1": [1]}}
    assert table_request(body(request)) == TableRequest("return _arg1", "p-1")


def test_a_body_in_several_chunks_is_recognised() -> None:
    raw = json.dumps({"script": "return _arg1", "dataPath": "p-2"}).encode()
    assert table_request([raw[:7], raw[7:20], raw[20:]]) == TableRequest("return _arg1", "p-2")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"script": "return _arg1", "d\\u0061taPath": "p"}',  # the key spelled with an escape
        b'{"script": "return _arg1", "dataPath": "p", "x": NaN}',  # only Python's parser reads it
        b'{"dataPath": "p"}',  # no script
        b'{"script": "  ", "dataPath": "p"}',  # a blank script
        b'{"script": 1, "dataPath": "p"}',  # not a string
        b'{"script": "return 1", "dataPath": 5}',  # a path that is not a string
        b'["dataPath"]',
        b'{"script": "return 1", "data": {"dataPath": [1]}}',  # a JSON request, no table
        b'{"script": "return 1", "dataPath": "p"',  # cut short
        b"\xff\xfe",
    ],
)
def test_anything_else_is_left_to_a_worker(raw: bytes) -> None:
    assert table_request([raw]) is None


def test_a_large_body_is_left_to_a_worker() -> None:
    request = {"script": "return _arg1", "dataPath": "p", "data": {"_arg1": "x" * 70_000}}
    raw = json.dumps(request).encode()
    assert len(raw) > RECOGNISED_MAX_BYTES
    assert table_request([raw]) is None


# --- the trips /evaluate makes ---------------------------------------------------------------


class Pool:
    """Answers every job as a worker would: a table request for a ``dataPath`` body."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def submit(self, job: Job) -> Reply:
        self.jobs.append(job)
        assert isinstance(job.meta, EvaluateMeta)
        request = json.loads(b"".join(job.body))
        if "dataPath" in request:
            return Reply(Outcome.TABLE_REQUEST, table=TableRequest(request["script"], "p"))
        return Reply.ok(b"1")


class Tables:
    def __init__(self) -> None:
        self.calls: list[tuple[TableRequest, QueryCheck | None, str]] = []

    async def evaluate_table(
        self, request: TableRequest, may_query: QueryCheck | None = None, principal: str = ""
    ) -> bytes:
        self.calls.append((request, may_query, principal))
        return b'{"outputDataPath": "out"}'


def evaluate(
    tmp_path: Path,
    raw: bytes,
    tables: Tables | None,
    principal: Principal = ANONYMOUS,
    pool: Pool | None = None,
) -> tuple[bytes | bytearray, Pool]:
    settings = load_settings(None, {"TABPY_STATE_PATH": str(tmp_path)})
    pool = pool or Pool()
    context = ServerContext(
        settings,
        ServiceInfo("TabPy Server", "", "0", "", "", "", ""),
        pool=pool,  # type: ignore[arg-type]
        catalog=None,  # type: ignore[arg-type]
        auth=NoAuthentication(),  # type: ignore[arg-type]
        tables=tables,  # type: ignore[arg-type]
    )

    async def stream() -> AsyncIterator[bytes]:
        yield raw

    answer = Evaluate(context).answer(stream(), str(len(raw)), None, principal)
    return asyncio.run(answer), pool


class NoAuthentication:
    authorization = Authorization(enabled=False)


ALICE = Principal("basic", "alice")


def test_a_plain_table_request_goes_straight_to_the_tables(tmp_path: Path) -> None:
    tables = Tables()
    raw = json.dumps({"script": "return _arg1", "dataPath": "p-3"}).encode()
    answer, pool = evaluate(tmp_path, raw, tables, ALICE)
    assert answer == b'{"outputDataPath": "out"}'
    assert pool.jobs == []  # no parsing trip
    assert tables.calls == [(TableRequest("return _arg1", "p-3"), None, "basic:alice")]


def test_a_table_request_a_worker_finds_runs_for_the_same_caller(tmp_path: Path) -> None:
    tables = Tables()
    raw = b'{"script": "return _arg1", "d\\u0061taPath": "p"}'
    answer, pool = evaluate(tmp_path, raw, tables, ALICE)
    assert answer == b'{"outputDataPath": "out"}'
    assert [job.principal for job in pool.jobs] == ["basic:alice"]
    assert tables.calls == [(TableRequest("return _arg1", "p"), None, "basic:alice")]


def test_without_tables_every_body_goes_to_a_worker(tmp_path: Path) -> None:
    pool = Pool()
    raw = json.dumps({"script": "return 1", "dataPath": "p", "data": {}}).encode()
    # (A worker of a pool without tables never asks; this pool does, to show the route's guard.)
    with pytest.raises(ExecutionFailed) as refused:
        evaluate(tmp_path, raw, None, pool=pool)
    assert "no table evaluator" in str(refused.value.info)
    assert len(pool.jobs) == 1
