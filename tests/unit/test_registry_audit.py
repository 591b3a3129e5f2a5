"""Grants, endpoint owners and callers, and the audit trail, on a real SQLite registry.

The audit entry of a change is written in the change's transaction: a failure on either side
leaves neither. A refused change writes its entry and nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tabpy.errors import PermissionDenied
from tabpy.registry import audit, grants
from tabpy.registry.audit import Actor, AuditQuery
from tabpy.registry.deploy_request import DeployRequest
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.grants import AccessChange, EndpointAccess
from tabpy.registry.registry_errors import LastAdmin, UnknownEndpoint
from tabpy.registry.store import Registry
from tabpy.registry.tables import audit_table

ALICE = Actor("user:alice", "10.0.0.7", "req-1")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    yield registry
    registry.close()


def create(registry: Registry, name: str, **options: object) -> Endpoint:
    data = name.encode()
    sha256 = hashlib.sha256(data).hexdigest()
    registry.put_artifact(sha256, data)
    request = DeployRequest.to_create({"name": name, "artifact": sha256}, set(), Path("/"))
    return registry.deploy(request, sha256, **options)  # type: ignore[arg-type]


def entries(registry: Registry, **filters: object) -> list[tuple[object, ...]]:
    found = registry.audit(AuditQuery(**filters))  # type: ignore[arg-type]
    return [(e.principal, e.action, e.endpoint, e.version, e.outcome) for e in found]


def test_a_change_and_its_entry_are_one_transaction(registry: Registry) -> None:
    create(registry, "add", actor=ALICE, access=AccessChange(frozenset({"user:alice"})))
    [entry] = registry.audit(AuditQuery())
    assert (entry.principal, entry.action, entry.endpoint, entry.version) == (
        "user:alice",
        "deploy",
        "add",
        1,
    )
    assert (entry.outcome, entry.client, entry.request_id) == ("allowed", "10.0.0.7", "req-1")
    assert entry.detail is not None and "owners: user:alice" in entry.detail
    assert registry.endpoint_access("add") == EndpointAccess(frozenset({"user:alice"}))


def test_no_change_without_its_entry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(audit, "insert_entry", failing)
    with pytest.raises(OSError):
        create(registry, "add", actor=ALICE)
    assert registry.snapshot()[1] == {}


def test_no_entry_without_its_change(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    create(registry, "add", actor=ALICE)
    real = audit.insert_entry

    def written_then_failing(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError("connection lost before the commit")

    monkeypatch.setattr(audit, "insert_entry", written_then_failing)
    with pytest.raises(OSError):
        registry.delete("add", actor=ALICE)
    assert "add" in registry.snapshot()[1]
    assert entries(registry) == [("user:alice", "deploy", "add", 1, "allowed")]


def test_a_refused_change_is_audited_and_not_made(registry: Registry) -> None:
    create(registry, "add", actor=ALICE, access=AccessChange(frozenset({"user:alice"})))
    seen: list[EndpointAccess] = []

    def refuse(access: EndpointAccess) -> None:
        seen.append(access)
        raise PermissionDenied("Permission denied: not yours.")

    bob = Actor("user:bob")
    with pytest.raises(PermissionDenied):
        registry.rollback("add", 1, actor=bob, authorize=refuse)
    with pytest.raises(PermissionDenied):
        registry.delete("add", actor=bob, authorize=refuse)
    # The check saw the owners as the transaction read them.
    assert seen == [EndpointAccess(frozenset({"user:alice"}))] * 2
    assert registry.get("add").version == 1
    assert entries(registry) == [
        ("user:bob", "delete", "add", None, "refused"),
        ("user:bob", "rollback", "add", None, "refused"),
        ("user:alice", "deploy", "add", 1, "allowed"),
    ]
    assert (
        registry.audit(AuditQuery(outcome="refused"))[0].detail == "Permission denied: not yours."
    )
    # An unknown endpoint is a 404 before any ownership question.
    with pytest.raises(UnknownEndpoint):
        registry.delete("nope", actor=bob, authorize=refuse)
    assert len(seen) == 2


def test_owners_and_callers_follow_the_endpoint(registry: Registry) -> None:
    revision = registry.access_revision()
    create(
        registry,
        "add",
        actor=ALICE,
        access=AccessChange(frozenset({"user:alice"}), frozenset({"role:caller"})),
    )
    assert registry.access_revision() > revision
    rules = registry.access_rules()
    assert (rules.owners, rules.callers) == ({"add": {"user:alice"}}, {"add": {"role:caller"}})
    # An update that does not mention them leaves them, and the access revision, as they are.
    revision = registry.access_revision()
    request = DeployRequest.to_update("add", {"description": "x"}, {"add"}, Path("/"))
    registry.deploy(request, None, actor=ALICE, access=AccessChange())
    assert registry.access_revision() == revision
    registry.delete("add", actor=ALICE)
    assert registry.access_revision() > revision
    rules = registry.access_rules()
    assert (rules.owners, rules.callers) == ({}, {})
    # The same name deployed again starts without the old owners.
    create(registry, "add")
    assert registry.endpoint_access("add") == EndpointAccess()


def test_grants_and_revocations(registry: Registry) -> None:
    calls: list[tuple[str, str]] = []
    registry.on_audit = lambda action, outcome: calls.append((action, outcome))
    assert registry.grant("user:alice", "admin", ALICE) is True
    assert registry.grant("user:alice", "admin", ALICE) is False
    assert registry.grant("group:ds", "deployer", ALICE) is True
    assert registry.grants() == {"user:alice": {"admin"}, "group:ds": {"deployer"}}
    with pytest.raises(LastAdmin, match="user:alice holds the only admin grant"):
        registry.revoke("user:alice", "admin", ALICE, keep_an_admin=True)
    assert registry.revoke("user:alice", "admin", ALICE) is True
    assert registry.revoke("user:alice", "admin", ALICE) is False
    assert calls == [("grant", "allowed"), ("grant", "allowed"), ("revoke", "allowed")]
    details = [e.detail for e in registry.audit(AuditQuery())]
    assert details == ["admin from user:alice", "deployer to group:ds", "admin to user:alice"]


def test_retention_removes_old_entries_only(registry: Registry) -> None:
    registry.record(ALICE, "shutdown", "allowed")
    registry.record(ALICE, "shutdown", "refused")
    with registry.engine.begin() as conn:
        old = audit.now_ms() - 40 * 86_400_000
        conn.execute(
            sa.update(audit_table).where(audit_table.c.outcome == "refused").values(at=old)
        )
    assert registry.prune_audit() == 0  # retention 0: keep forever
    registry.audit_retention_days = 30
    assert registry.prune_audit() == 1
    assert entries(registry) == [("user:alice", "shutdown", None, None, "allowed")]


def test_paging_and_filters(registry: Registry) -> None:
    for number in range(5):
        registry.record(Actor(f"user:u{number % 2}"), "shutdown", "allowed")
    ids = [e.id for e in registry.audit(AuditQuery())]
    assert ids == sorted(ids, reverse=True)
    assert [e.id for e in registry.audit(AuditQuery(limit=2, before=ids[1]))] == ids[2:4]
    assert len(registry.audit(AuditQuery(principal="user:u0"))) == 3


def test_an_old_server_sharing_the_registry_is_not_required_to_audit(registry: Registry) -> None:
    """Calls without an actor (the legacy import, an older caller) change and audit nothing."""
    create(registry, "add")
    registry.rollback("add", 1)
    registry.delete("add")
    assert registry.audit(AuditQuery()) == []


def test_the_access_revision_starts_at_zero_without_its_row(registry: Registry) -> None:
    with registry.engine.connect() as conn:
        assert grants.access_revision(conn) == 0
    registry.grant("user:a", "caller", ALICE)
    assert registry.access_revision() == 1
