"""The authorization vocabulary and decisions, without a server: roles, references, the route
table, token claims, the settings, and :class:`Authorization` over a stand-in registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tabpy.config import ConfigError, Settings, load_settings
from tabpy.errors import InvalidRequest, PermissionDenied
from tabpy.security import access
from tabpy.security.access import Authorization
from tabpy.security.principal import Principal
from tabpy.security.roles import (
    parse_reference,
    parse_role,
    references_of,
    roles_from_claim,
    route_role,
    validate_authz_settings,
)
from tabpy.security.tokens import claim_values

# --- vocabulary ------------------------------------------------------------------------------


def test_references_have_one_stored_form() -> None:
    assert parse_reference("Alice") == "user:alice"
    assert parse_reference(" user:Alice ") == "user:alice"
    assert parse_reference("GROUP:Data-Science") == "group:data-science"
    assert parse_reference("role:Caller") == "role:caller"
    assert parse_reference("auth0|5f7c") == "user:auth0|5f7c"
    for bad, message in [
        ("", "non-empty string"),
        (3, "non-empty string"),
        ("group:", "must be non-empty"),
        ("two words", "without spaces"),
        ("role:boss", "'boss' is not a role"),
        ("x" * 300, "the limit is 255"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            parse_reference(bad)
    with pytest.raises(InvalidRequest, match="a role cannot be given here"):
        parse_reference("role:admin", roles_allowed=False)


def test_roles() -> None:
    assert parse_role(" Deployer ") == "deployer"
    with pytest.raises(InvalidRequest, match="use one of admin, deployer, caller, evaluator"):
        parse_role("owner")


def test_references_of_a_principal() -> None:
    principal = Principal("bearer", "Sub-1", roles=frozenset({"caller"}), groups=frozenset({"ds"}))
    assert references_of(principal) == {"user:sub-1", "group:ds", "role:caller"}
    assert references_of(Principal("none")) == frozenset()


@pytest.mark.parametrize(
    ("path", "method", "role"),
    [
        ("/query/add", "POST", "caller"),
        ("/query/add", "GET", "caller"),
        ("/query/add", "OPTIONS", None),
        ("/evaluate", "POST", "evaluator"),
        ("/endpoints", "POST", "deployer"),
        ("/endpoints", "DELETE", "deployer"),
        ("/endpoints/add", "PUT", "deployer"),
        ("/endpoints/add/rollback", "POST", "deployer"),
        ("/endpoints/add", "GET", None),
        ("/endpoints/add/access", "GET", None),
        ("/artifacts/abc", "PUT", "deployer"),
        ("/configurations/endpoint_upload_destination", "GET", "deployer"),
        ("/admin/audit", "GET", "admin"),
        ("/admin/principals", "POST", "admin"),
        ("/admin/anything/added/later", "GET", "admin"),
        ("/info", "GET", None),
        ("/status", "GET", None),
        ("/queryx", "POST", None),
    ],
)
def test_route_roles(path: str, method: str, role: str | None) -> None:
    assert route_role(path, method) == role


def test_roles_from_a_claim() -> None:
    assert roles_from_claim(["Admin", "marketing"], None) == {"admin"}
    mapping = (("tabpy-admins", "admin"), ("tableau", "caller"), ("tableau", "evaluator"))
    assert roles_from_claim(["TABLEAU"], mapping) == {"caller", "evaluator"}
    # With a map, a value that happens to be a role name grants nothing by itself.
    assert roles_from_claim(["admin"], mapping) == frozenset()


def test_claim_values() -> None:
    claims = {"groups": ["a", "b", 3], "role": "x", "realm_access": {"roles": ["r"]}, "n": 5}
    assert claim_values(claims, "groups") == {"a", "b"}
    assert claim_values(claims, "role") == {"x"}
    assert claim_values(claims, "realm_access.roles") == {"r"}
    assert claim_values(claims, "n") == frozenset()
    assert claim_values(claims, "missing.deeper") == frozenset()


# --- settings --------------------------------------------------------------------------------


def settings(tmp_path: Path, **values: str) -> Settings:
    return load_settings(None, {"TABPY_STATE_PATH": str(tmp_path), **values})


def test_settings_parse_and_default_off(tmp_path: Path) -> None:
    default = settings(tmp_path)
    assert (default.authz, default.oauth_role_map, default.audit_retention_days) == (False, (), 0)
    made = settings(
        tmp_path,
        TABPY_AUTHZ="on",
        TABPY_OAUTH_ROLE_MAP="a=b=Admin, , tableau=caller",
        TABPY_AUDIT_RETENTION_DAYS="90",
    )
    assert made.authz is True and made.audit_retention_days == 90
    assert made.oauth_role_map == (("a=b", "admin"), ("tableau", "caller"))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"TABPY_OAUTH_ROLE_MAP": "admins"}, "is not <claim value>=<role>"),
        ({"TABPY_OAUTH_ROLE_MAP": "=admin"}, "is not <claim value>=<role>"),
        ({"TABPY_AUDIT_RETENTION_DAYS": "-1"}, "or 0 to keep the audit trail forever"),
        ({"TABPY_AUTHZ": "sometimes"}, "is not a boolean"),
    ],
)
def test_bad_settings(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **values)


def test_settings_that_cannot_work_together(tmp_path: Path) -> None:
    pwd = tmp_path / "p.txt"
    pwd.write_text("a b\n")
    cases = [
        ({"TABPY_AUTHZ": "on"}, "TABPY_AUTHZ = on needs authentication"),
        (
            {"TABPY_OAUTH_ROLES_CLAIM": "groups", "TABPY_OAUTH_ROLE_MAP": "x=owner, y=boss"},
            "maps to boss, owner, which are not roles",
        ),
        ({"TABPY_OAUTH_ROLE_MAP": "x=admin"}, "TABPY_OAUTH_ROLES_CLAIM is not"),
    ]
    for values, message in cases:
        with pytest.raises(ConfigError, match=message):
            validate_authz_settings(settings(tmp_path, **values))
    validate_authz_settings(settings(tmp_path, TABPY_AUTHZ="on", TABPY_PWD_FILE=str(pwd)))


# --- decisions -------------------------------------------------------------------------------


@dataclass
class Rules:
    revision: int = 1
    grants: Mapping[str, Collection[str]] = field(default_factory=dict)
    owners: Mapping[str, Collection[str]] = field(default_factory=dict)
    callers: Mapping[str, Collection[str]] = field(default_factory=dict)


class Source:
    """A registry stand-in that counts how often the rules are read."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.reads = 0

    def access_revision(self) -> int:
        return self.rules.revision

    def access_rules(self) -> Rules:
        self.reads += 1
        return self.rules


def enforcing(rules: Rules, **options: object) -> tuple[Authorization, Source]:
    source = Source(rules)
    authorization = Authorization(enabled=True, source=source, **options)  # type: ignore[arg-type]
    asyncio.run(authorization.refresh())
    return authorization, source


def test_off_allows_everything_and_changes_no_principal() -> None:
    authorization = Authorization(enabled=False)
    nobody = Principal("basic", "nobody")
    assert authorization.resolve(nobody) is nobody
    authorization.require_role(nobody, "admin")
    authorization.require_owner(nobody, "add", {"user:someone"}, "remove it")
    assert authorization.query_refusal(nobody, "add") is None


def test_basic_roles_come_from_grants_and_are_cached_per_rules() -> None:
    authorization, source = enforcing(Rules(grants={"user:alice": {"deployer"}}))
    alice = authorization.resolve(Principal("basic", "alice"))
    assert alice.roles == {"deployer"}
    assert authorization.resolve(Principal("basic", "alice")) is alice  # no new lookup
    source.rules = Rules(revision=2, grants={"user:alice": {"caller"}})
    asyncio.run(authorization.refresh())
    assert authorization.resolve(Principal("basic", "alice")).roles == {"caller"}
    asyncio.run(authorization.refresh())  # same revision: not read again
    assert source.reads == 2


def test_bearer_roles_merge_the_claim_and_the_grants() -> None:
    rules = Rules(grants={"group:etl": {"caller"}, "user:svc": {"evaluator"}})
    authorization, _ = enforcing(rules, role_map=(("ds", "deployer"),))
    principal = authorization.resolve(Principal("bearer", "svc"), ["DS", "etl"])
    assert principal.roles == {"deployer", "caller", "evaluator"}
    assert principal.groups == {"ds", "etl"}


def test_refusals_name_the_missing_role_or_ownership() -> None:
    authorization, _ = enforcing(Rules(owners={"add": {"user:dev"}}, callers={"add": {"group:x"}}))
    analyst = Principal("basic", "analyst", roles=frozenset({"caller"}))
    with pytest.raises(PermissionDenied) as refused:
        authorization.require_role(analyst, "deployer")
    assert refused.value.message == (
        "Permission denied: deploying, updating and removing endpoints needs the deployer role."
    )
    assert refused.value.info.startswith('User "analyst" has caller. An admin can grant it:')
    other = Principal("basic", "dev2", roles=frozenset({"deployer"}))
    with pytest.raises(PermissionDenied, match="only an owner of endpoint add or an admin"):
        authorization.require_owner(other, "add", {"user:dev"}, "update it")
    owner = Principal("basic", "dev", roles=frozenset({"deployer"}))
    authorization.require_owner(owner, "add", {"user:dev"}, "update it")
    admin = Principal("basic", "root", roles=frozenset({"admin"}))
    authorization.require_owner(admin, "add", set(), "update it")
    refusal = authorization.query_refusal(analyst, "add")
    assert refusal is not None and "may be queried only by its callers" in refusal.message
    assert authorization.query_refusal(analyst, "other") is None
    # An owner of the endpoint is one of its callers (with the caller role).
    owning_caller = Principal("basic", "dev", roles=frozenset({"caller"}))
    assert authorization.query_refusal(owning_caller, "add") is None


def test_a_failing_registry_keeps_the_last_rules(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(access, "POLL_SECONDS", 0.01)
    authorization, source = enforcing(Rules(grants={"user:a": {"caller"}}))

    def broken() -> int:
        raise OSError("database is down")

    async def watch_briefly() -> None:
        await authorization.start()
        source.access_revision = broken  # type: ignore[method-assign]
        await asyncio.sleep(0.05)
        await authorization.close()

    asyncio.run(watch_briefly())
    assert authorization.rules.grants == {"user:a": {"caller"}}
    assert "Reading the access rules from the registry failed: database is down" in caplog.text


class ListeningFeed:
    """A change feed that is listening; the test tells it of changes."""

    listening = True

    def __init__(self) -> None:
        self.subscribers: list[Callable[[str], None]] = []

    def subscribe(self, subscriber: Callable[[str], None]) -> None:
        self.subscribers.append(subscriber)

    def tell(self, topic: str) -> None:
        for subscriber in self.subscribers:
            subscriber(topic)


def test_a_listening_feed_replaces_polling_of_the_rules() -> None:
    rules = Rules(grants={"user:a": {"caller"}})
    source = Source(rules)
    revisions_read: list[int] = []
    read_revision = source.access_revision

    def counted() -> int:
        revisions_read.append(1)
        return read_revision()

    source.access_revision = counted  # type: ignore[method-assign]
    authorization = Authorization(enabled=True)
    feed = ListeningFeed()
    authorization.read_rules_from(source, feed)  # type: ignore[arg-type]

    async def scenario() -> None:
        await authorization.start()
        try:
            before = len(revisions_read)
            await asyncio.sleep(3 * access.POLL_SECONDS)
            assert len(revisions_read) == before  # listening: no polling
            source.rules = Rules(revision=2, grants={"user:a": {"caller", "deployer"}})
            await asyncio.to_thread(feed.tell, "endpoints")  # not about access: ignored
            await asyncio.to_thread(feed.tell, "access")  # from the feed's thread
            deadline = asyncio.get_running_loop().time() + 5
            while authorization.rules.revision != 2:
                assert asyncio.get_running_loop().time() < deadline, "rules not re-read"
                await asyncio.sleep(0.01)
        finally:
            await authorization.close()

    asyncio.run(scenario())
    assert authorization.rules.grants["user:a"] == {"caller", "deployer"}
