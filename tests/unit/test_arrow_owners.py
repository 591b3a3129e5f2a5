"""Moving a table from the fleet member holding it (tabpy.arrow.owners), without a network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.components import ARROW, require_module

pa = require_module("pyarrow", ARROW)

from tabpy.arrow.arrow_errors import TransferFailed  # noqa: E402
from tabpy.arrow.flight import path_key  # noqa: E402
from tabpy.arrow.owners import OwnerLookup, _receive  # noqa: E402
from tabpy.arrow.store import TableStore  # noqa: E402

pytestmark = pytest.mark.arrow


@dataclass
class Chunk:
    data: Any


class BrokenStream:
    """A peer's stream that sends one batch, then fails (the peer died part-way)."""

    def __init__(self, table: Any) -> None:
        self.schema = table.schema
        self.batch = table.to_batches()[0]

    def __iter__(self) -> Iterator[Chunk]:
        yield Chunk(self.batch)
        raise pa.ArrowIOError("Socket closed")


def test_a_peer_failing_part_way_is_a_transfer_failure_and_frees_what_arrived() -> None:
    store = TableStore(64 * 1024 * 1024, 60)
    table = pa.table({"a": list(range(1000))})
    with pytest.raises(TransferFailed) as failed:
        _receive("grpc+tcp://b:47113", BrokenStream(table), store, path_key("p"))
    assert "grpc+tcp://b:47113" in failed.value.message
    assert failed.value.retry_after == 1
    assert store.used == 0 and len(store) == 0


def test_nobody_to_ask_means_not_found() -> None:
    store = TableStore(1024, 60)
    assert OwnerLookup(store, None).fetch(path_key("p"), []) is None
