"""``TABPY_AUTHZ = on`` over HTTP, in-process: every route against every role, owners and
callers, bearer roles, the admin routes and the audit trail they write."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from starlette.routing import Route

from tabpy.registry.audit import Actor
from tabpy.server.app import api_routes
from tests.unit.authz_support import HOLDERS, USERS, Server, basic, bearer, running

# --- every route, every role -----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    #: The role it needs (None: authentication is enough).
    role: str | None
    body: Any = None
    #: What the deployed "add" (owned by dev) must be for the call to make sense.
    content: bytes | None = None

    def send(self, server: Server, headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {"headers": headers}
        if self.content is not None:
            kwargs["content"] = self.content
        elif self.body is not None:
            kwargs["json"] = self.body(server) if callable(self.body) else self.body
        return server.client.request(self.method, self.path, **kwargs)


def _new_endpoint(server: Server) -> dict[str, Any]:
    return {"name": f"new{time.monotonic_ns()}", "artifact": server.upload(b"new")}


ARTIFACT = b"uploaded"


CALLS = [
    Call("GET", "/info", None),
    Call("GET", "/status", None),
    Call("GET", "/endpoints", None),
    Call("GET", "/endpoints/", None),
    Call("GET", "/endpoints/add", None),
    Call("GET", "/endpoints/add/versions", None),
    Call("GET", "/endpoints/add/access", None),
    Call("GET", "/", None),
    Call("GET", "/health", None),
    Call("GET", "/ready", None),
    Call("GET", "/metrics", None),
    Call("GET", "/openapi.json", None),
    Call("POST", "/query/add", "caller", body={"data": {"x": 1}}),
    Call("GET", "/query/add", "caller"),
    Call("POST", "/evaluate", "evaluator", body={"script": "return 1", "data": {}}),
    Call("GET", "/configurations/endpoint_upload_destination", "deployer"),
    Call("PUT", f"/artifacts/{hashlib.sha256(ARTIFACT).hexdigest()}", "deployer", content=ARTIFACT),
    Call("POST", "/endpoints", "deployer", body=_new_endpoint),
    Call("PUT", "/endpoints/add", "deployer", body={"description": "changed"}),
    Call("POST", "/endpoints/add/rollback", "deployer", body={"version": 1}),
    Call("DELETE", "/endpoints/add", "deployer"),
    Call("DELETE", "/endpoints", "deployer", body={"name": "add"}),
    Call("GET", "/admin/principals", "admin"),
    Call("POST", "/admin/principals", "admin", body={"principal": "x", "role": "caller"}),
    Call("DELETE", "/admin/principals", "admin", body={"principal": "x", "role": "caller"}),
    Call("GET", "/admin/audit", "admin"),
]
#: Changes the owner of "add" may make, and an admin, but no other deployer.
OWNED = {("PUT", "/endpoints/add"), ("POST", "/endpoints/add/rollback"),
         ("DELETE", "/endpoints/add"), ("DELETE", "/endpoints")}  # fmt: skip


def test_every_api_route_is_in_the_matrix(tmp_path: Path) -> None:
    with running(tmp_path) as server:
        templates = {
            (method, route.path)
            for route in api_routes(server.context)
            if isinstance(route, Route)
            for method in route.methods or ()
            if method not in ("HEAD", "OPTIONS")
        }
    covered = {(call.method, call.path.replace("/add", "/{name}")) for call in CALLS}
    covered = {(m, "/artifacts/{sha256}" if p.startswith("/artifacts/") else p) for m, p in covered}
    assert templates == covered


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running(tmp_path) as started:
        yield started


def _ensure_add(server: Server) -> None:
    """ "add" deployed by dev, in two versions (so that a rollback has somewhere to go)."""
    if server.client.get("/endpoints/add", headers=basic("dev")).status_code == 200:
        return
    assert server.deploy("add").status_code == 201
    update = {"artifact": server.upload(b"add v2"), "should_update_version": True}
    reply = server.client.put("/endpoints/add", json=update, headers=basic("dev"))
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.path}")
def test_each_route_allows_its_role_and_refuses_the_others(server: Server, call: Call) -> None:
    for user in USERS:
        _ensure_add(server)
        reply = call.send(server, basic(user))
        owner_rule = (call.method, call.path) in OWNED and user not in ("dev", "root")
        allowed = call.role is None or user in HOLDERS[call.role]
        if allowed and not owner_rule:
            assert reply.status_code < 400, (user, reply.status_code, reply.text)
            continue
        assert reply.status_code == 403, (user, reply.status_code, reply.text)
        message = reply.json()["message"]
        if allowed:  # a deployer, but not an owner of "add"
            assert "only an owner of endpoint add or an admin" in message, message
        else:
            assert f"needs the {call.role} role" in message, message


# --- ownership -------------------------------------------------------------------------------


def test_a_new_endpoint_belongs_to_its_deployer(server: Server) -> None:
    assert (
        server.deploy("mine", owners=["group:Data-Science"], callers=["role:caller"]).status_code
        == 201
    )
    access = server.client.get("/endpoints/mine/access", headers=basic("nobody")).json()
    assert access == {"owners": ["group:data-science", "user:dev"], "callers": ["role:caller"]}


def test_rollback_by_a_deployer_who_does_not_own_the_endpoint_is_refused(server: Server) -> None:
    _ensure_add(server)
    refused = server.client.post(
        "/endpoints/add/rollback", json={"version": 1}, headers=basic("dev2")
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "Permission denied: only an owner of endpoint add or an admin may roll it back.",
        "info": 'Its owners: user:dev. User "dev2" is not one of them; an owner or an admin '
        'can add you with PUT /endpoints/<name> {"owners": [...]}.',
    }
    assert server.client.get("/endpoints/add", headers=basic("dev")).json()["version"] == 2
    # The owner may, and so may an admin; each makes a new version.
    for user, version in (("dev", 3), ("root", 4)):
        reply = server.client.post(
            "/endpoints/add/rollback", json={"version": 1}, headers=basic(user)
        )
        assert (reply.status_code, reply.json()["add"]["version"]) == (200, version)


def test_an_owner_can_share_an_endpoint_and_give_it_away(server: Server) -> None:
    _ensure_add(server)
    shared = server.client.put(
        "/endpoints/add", json={"owners": ["dev", "dev2"]}, headers=basic("dev")
    )
    assert shared.status_code == 200, shared.text
    assert (
        server.client.put(
            "/endpoints/add", json={"description": "by dev2"}, headers=basic("dev2")
        ).status_code
        == 200
    )
    given = server.client.put("/endpoints/add", json={"owners": ["dev2"]}, headers=basic("dev"))
    assert given.status_code == 200
    refused = server.client.delete("/endpoints/add", headers=basic("dev"))
    assert refused.status_code == 403
    assert server.client.delete("/endpoints/add", headers=basic("dev2")).status_code == 204


def test_endpoints_without_owners_are_changed_by_admins_only(server: Server) -> None:
    _ensure_add(server)
    assert (
        server.client.put("/endpoints/add", json={"owners": []}, headers=basic("dev")).status_code
        == 200
    )
    refused = server.client.delete("/endpoints/add", headers=basic("dev"))
    assert refused.status_code == 403
    assert "Its owners: none: only admins may change it" in refused.json()["info"]
    assert server.client.delete("/endpoints/add", headers=basic("root")).status_code == 204


def test_owners_and_callers_must_be_principals(server: Server) -> None:
    cases = [
        ({"owners": "dev"}, "owners must be a list of principals"),
        ({"owners": ["role:admin"]}, "a role cannot be given here"),
        ({"callers": ["role:boss"]}, "'boss' is not a role"),
        ({"callers": ["two words"]}, "without spaces"),
    ]
    for extra, message in cases:
        reply = server.deploy("bad", **extra)
        assert reply.status_code == 400 and message in reply.json()["message"], reply.text


# --- callers ---------------------------------------------------------------------------------


def test_an_endpoint_with_callers_answers_only_them(server: Server) -> None:
    assert server.deploy("private", callers=["tableau", "group:finance"]).status_code == 201
    ask = lambda headers: server.client.post("/query/private", json={"data": {}}, headers=headers)  # noqa: E731
    assert ask(basic("tableau")).status_code == 200
    assert ask(basic("root")).status_code == 200  # admins may do everything
    refused = ask(basic("analyst"))
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        "Permission denied: endpoint private may be queried only by its callers."
    )
    assert "group:finance, user:tableau" in refused.json()["info"]
    # Its owner needs the caller role like anyone else.
    assert "needs the caller role" in ask(basic("dev")).json()["message"]
    # A group named in callers lets its members in (a bearer token's groups claim).
    assert ask(bearer("carol", ["finance", "tableau-server"])).status_code == 200
    assert ask(bearer("dave", ["tableau-server"])).status_code == 403
    # Every caller again once the list is emptied.
    reset = server.client.put("/endpoints/private", json={"callers": []}, headers=basic("dev"))
    assert reset.status_code == 200
    assert ask(basic("analyst")).status_code == 200


def test_callers_by_role(server: Server) -> None:
    assert server.deploy("scored", callers=["role:evaluator"]).status_code == 201
    ask = lambda user: server.client.get("/query/scored", headers=basic(user)).status_code  # noqa: E731
    assert (ask("tableau"), ask("analyst"), ask("scientist")) == (200, 403, 403)


# --- bearer tokens ---------------------------------------------------------------------------


def test_bearer_roles_come_from_the_mapped_claim(server: Server) -> None:
    scientist = bearer("sci@example.com", ["data-science"])
    body = {"name": "from-token", "artifact": server.upload(b"t")}
    created = server.client.post("/endpoints", json=body, headers=scientist)
    assert created.status_code == 201, created.text
    access = server.client.get("/endpoints/from-token/access", headers=scientist).json()
    assert access["owners"] == ["user:sci@example.com"]
    refused = server.client.post("/evaluate", json={"script": "return 1"}, headers=scientist)
    assert refused.status_code == 403
    assert "needs the evaluator role" in refused.json()["message"]
    assert "TABPY_OAUTH_ROLE_MAP" in refused.json()["info"]
    # Unmapped groups give nothing; a token without the claim has no role.
    for headers in (bearer("x", ["marketing"]), bearer("y")):
        assert (
            server.client.post(
                "/evaluate", json={"script": "return 1"}, headers=headers
            ).status_code
            == 403
        )
    service = bearer("tableau-svc", ["tableau-server"])
    assert (
        server.client.post("/evaluate", json={"script": "return 1"}, headers=service).status_code
        == 200
    )
    admin = bearer("boss", ["TABPY-ADMINS"])  # claim values are compared without case
    assert server.client.get("/admin/audit", headers=admin).status_code == 200


def test_registry_grants_apply_to_token_subjects_and_groups(server: Server) -> None:
    headers = bearer("svc-42", ["etl"])
    assert server.client.get("/query/x", headers=headers).status_code == 403
    for principal in ("svc-42", "group:etl"):
        granted = server.client.post(
            "/admin/principals",
            json={"principal": principal, "role": "caller"},
            headers=basic("root"),
        )
        assert granted.status_code == 200
        assert server.client.get("/query/x", headers=headers).status_code == 404  # allowed; unknown
        server.client.request(
            "DELETE", "/admin/principals", json={"principal": principal, "role": "caller"},
            headers=basic("root"),
        )  # fmt: skip
        assert server.client.get("/query/x", headers=headers).status_code == 403


def test_endpoint_scopes_keep_their_meaning(tmp_path: Path) -> None:
    with running(tmp_path, TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES="true") as server:
        deployer = bearer("sci", ["data-science"], scope="tabpy tabpy:query")
        body = {"name": "x", "artifact": "0" * 64}
        reply = server.client.post("/endpoints", json=body, headers=deployer)
        assert (reply.status_code, reply.json()["message"]) == (
            403,
            "Token is missing a required endpoint scope.",
        )
        # The scope alone is not a role either.
        caller = bearer("sci", ["data-science"], scope="tabpy tabpy:query")
        assert (
            "needs the caller role"
            in server.client.get("/query/x", headers=caller).json()["message"]
        )


# --- the admin routes and the audit trail ----------------------------------------------------


def test_grants_over_http(server: Server) -> None:
    listing = server.client.get("/admin/principals", headers=basic("root")).json()
    assert listing["authz"] is True
    assert listing["principals"]["user:tableau"] == ["caller", "evaluator"]
    reply = server.client.post(
        "/admin/principals", json={"principal": "Nobody", "role": "Deployer"}, headers=basic("root")
    )
    assert reply.json() == {"principal": "user:nobody", "roles": ["deployer"], "changed": True}
    assert server.deploy("by-nobody", user="nobody").status_code == 201
    again = server.client.post(
        "/admin/principals", json={"principal": "nobody", "role": "deployer"}, headers=basic("root")
    )
    assert again.json()["changed"] is False
    bad = server.client.post("/admin/principals", json={"principal": "x"}, headers=basic("root"))
    assert bad.status_code == 400
    unknown = server.client.post(
        "/admin/principals", json={"principal": "x", "role": "owner"}, headers=basic("root")
    )
    assert unknown.status_code == 400 and "is not a role" in unknown.json()["message"]


def test_the_last_admin_cannot_be_revoked_over_http(server: Server) -> None:
    revoke = {"principal": "root", "role": "admin"}
    refused = server.client.request(
        "DELETE", "/admin/principals", json=revoke, headers=basic("root")
    )
    assert refused.status_code == 400 and "only admin grant" in refused.json()["message"]
    server.registry.grant("user:dev", "admin", Actor("local:test"))
    done = server.client.request("DELETE", "/admin/principals", json=revoke, headers=basic("root"))
    assert done.json() == {"principal": "user:root", "roles": [], "changed": True}
    assert server.client.get("/admin/audit", headers=basic("root")).status_code == 403


def test_allowed_and_refused_changes_are_audited(server: Server) -> None:
    started = time.time()
    _ensure_add(server)
    server.client.post("/endpoints/add/rollback", json={"version": 1}, headers=basic("dev2"))
    server.client.delete("/endpoints/add", headers=basic("analyst"))
    server.client.post(
        "/admin/principals", json={"principal": "a", "role": "caller"}, headers=basic("dev")
    )
    entries = server.audit(since=str(started))
    summary = [
        (e["principal"], e["action"], e["endpoint"], e["version"], e["outcome"]) for e in entries
    ]
    assert summary == [
        ("user:dev", "grant", None, None, "refused"),
        ("user:analyst", "delete", "add", None, "refused"),
        ("user:dev2", "rollback", "add", None, "refused"),
        ("user:dev", "update", "add", 2, "allowed"),
        ("user:dev", "deploy", "add", 1, "allowed"),
    ]
    newest = entries[0]
    assert newest["client"] == "testclient" and newest["request_id"]
    assert "needs the admin role" in newest["detail"]
    assert "only an owner of endpoint add" in entries[2]["detail"]
    # Filters: by principal (a bare name is a user), endpoint, action, outcome and time.
    assert [e["action"] for e in server.audit(principal="dev2")] == ["rollback"]
    assert {e["principal"] for e in server.audit(endpoint="add")} == {
        "user:dev",
        "user:dev2",
        "user:analyst",
    }
    assert len(server.audit(outcome="refused", since=str(started))) == 3
    assert server.audit(action="grant", outcome="allowed", since="2100-01-01") == []
    assert len(server.audit(until=str(started))) == sum(map(len, USERS.values()))  # set-up grants
    # Paging: newest first, "next" continues below the last id shown.
    first = server.client.get("/admin/audit", params={"limit": 2}, headers=basic("root")).json()
    assert [e["id"] for e in first["entries"]] == [entries[0]["id"], entries[1]["id"]]
    rest = server.client.get(
        "/admin/audit", params={"limit": 2, "before": first["next"]}, headers=basic("root")
    ).json()
    assert [e["id"] for e in rest["entries"]] == [entries[2]["id"], entries[3]["id"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"before": "x"}, "before must be a whole number"),
        ({"since": "yesterday"}, "since = 'yesterday' is not a time"),
        ({"action": "drop"}, "action must be one of deploy"),
        ({"outcome": "maybe"}, "outcome must be one of allowed, refused"),
    ],
)
def test_audit_filters_are_checked(server: Server, params: dict[str, str], message: str) -> None:
    reply = server.client.get("/admin/audit", params=params, headers=basic("root"))
    assert reply.status_code == 400 and message in reply.json()["message"], reply.text


def test_audit_events_are_counted_in_metrics(server: Server) -> None:
    _ensure_add(server)
    server.client.delete("/endpoints/add", headers=basic("analyst"))
    metrics = server.client.get("/metrics", headers=basic("nobody")).text
    assert 'tabpy_audit_events_total{action="deploy",outcome="allowed"} 1.0' in metrics
    assert 'tabpy_audit_events_total{action="delete",outcome="refused"} 1.0' in metrics
    assert 'tabpy_auth_failures_total{status="403"} 1.0' in metrics


def test_the_status_page_shows_admins_the_last_changes(server: Server) -> None:
    _ensure_add(server)
    page = server.client.get("/", headers=basic("root")).text
    assert "Recent changes" in page and "user:dev: update add version 2 (allowed)" in page
    assert "Recent changes" not in server.client.get("/", headers=basic("dev")).text


def test_grants_made_elsewhere_apply_within_a_poll(server: Server) -> None:
    """Another instance (or tabpy-user) changes the registry: this server notices by itself."""
    assert server.client.get("/query/x", headers=basic("nobody")).status_code == 403
    server.registry.grant("user:nobody", "caller", Actor("local:elsewhere"))
    wait_until(lambda: server.client.get("/query/x", headers=basic("nobody")).status_code == 404)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- compatibility ---------------------------------------------------------------------------


def test_with_authz_off_every_authenticated_user_may_do_everything(tmp_path: Path) -> None:
    with running(tmp_path, grants=False, TABPY_AUTHZ="off") as server:
        assert server.deploy("add", user="nobody").status_code == 201
        for user in ("analyst", "scientist"):
            reply = server.client.post(
                "/endpoints/add/rollback", json={"version": 1}, headers=basic(user)
            )
            assert reply.status_code == 200, reply.text
        assert (
            server.client.post(
                "/evaluate", json={"script": "return 1"}, headers=basic("dev")
            ).status_code
            == 200
        )
        assert server.client.get("/admin/audit", headers=basic("analyst")).status_code == 200
        assert server.client.get("/", headers=basic("root")).text.count("Recent changes") == 0
        # Changes are audited all the same, and the deployer is recorded as the owner.
        assert [e["action"] for e in server.audit()] == ["rollback", "rollback", "deploy"]
        assert server.registry.endpoint_access("add").owners == {"user:nobody"}


# --- tabpy.query inside a script -------------------------------------------------------------

SCRIPT = {"script": "return tabpy.query('secret', 2)", "data": {}}
ANSWERED = {"script": "return tabpy.query('secret', 2)['response']", "data": {}}


def doubled() -> bytes:
    namespace: dict[str, Any] = {"__name__": "__main__"}  # pickled by value, as from a script
    exec("def double(x):\n    return 2 * x\n", namespace)
    return bytes(cloudpickle.dumps(namespace["double"]))


@pytest.fixture(scope="module")
def with_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("scripts")
    with running(directory, workers=True, TABPY_OAUTH_ENFORCE_ENDPOINT_SCOPES="true") as server:
        deployed = server.deploy(
            "secret", data=doubled(), callers=["tableau", "group:tableau-server"]
        )
        assert deployed.status_code == 201, deployed.text
        yield server


def test_a_scripts_query_has_its_callers_rights(with_workers: Server) -> None:
    client = with_workers.client
    # tableau may query "secret": so may its scripts.
    assert client.post("/evaluate", json=ANSWERED, headers=basic("tableau")).json() == 4
    # scientist may run scripts but is not a caller: its script gets the HTTP refusal.
    refused = client.post("/evaluate", json=SCRIPT, headers=basic("scientist")).json()
    assert refused["message"] == (
        "Permission denied: querying deployed endpoints (/query) needs the caller role."
    )
    # A caller that is not among the endpoint's callers: the endpoint's refusal.
    with_workers.registry.grant("user:scientist", "caller", Actor("local:test"))
    wait_until(
        lambda: (
            "only by its callers"
            in client.post("/evaluate", json=SCRIPT, headers=basic("scientist")).json()["message"]
        )
    )
    # ['response'] on a refusal: the script fails, and its error says why.
    failed = client.post("/evaluate", json=ANSWERED, headers=basic("scientist"))
    assert failed.status_code == 404
    assert "The server refused: Permission denied: endpoint secret" in failed.json()["info"]


def test_a_scripts_query_needs_the_query_scope_when_scopes_are_enforced(
    with_workers: Server,
) -> None:
    client = with_workers.client
    script = {"script": "return tabpy.query('secret', 2)", "data": {}}
    for scope, expected in (
        ("tabpy tabpy:evaluate tabpy:query", 4),
        ("tabpy tabpy:evaluate", "Token is missing a required endpoint scope."),
    ):
        headers = bearer("svc", ["tableau-server"], scope=scope)
        reply = client.post("/evaluate", json=script, headers=headers).json()
        assert (reply["response"] if isinstance(expected, int) else reply["message"]) == expected
