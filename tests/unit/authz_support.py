"""An in-process server with ``TABPY_AUTHZ`` on: Basic users holding each role, bearer tokens.

The authenticator is the real one (Basic over a real password file, bearer tokens checked
against a JWKS document held in memory), the registry is a real SQLite file, and the worker
pool is a stand-in that answers every job with ``null``: these tests are about who may call
what, not about running code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from tabpy.config import Settings, load_settings
from tabpy.registry.audit import Actor
from tabpy.registry.service_info import ServiceInfo
from tabpy.registry.store import Registry
from tabpy.runtime.catalog import Catalog
from tabpy.runtime.directory import EndpointDirectory
from tabpy.runtime.pool import PoolOptions, WorkerPool
from tabpy.runtime.protocol import Job, Reply
from tabpy.security.access import Authorization
from tabpy.security.authenticator import Authenticator
from tabpy.security.basic import BasicVerifier
from tabpy.security.jwks import JwksCache
from tabpy.security.oauth import BearerVerifier
from tabpy.security.password_store import PasswordStore
from tabpy.security.passwords import legacy_hash
from tabpy.security.verification_cache import VerificationCache
from tabpy.server.app import create_app
from tabpy.server.context import ServerContext

PASSWORD = "P@ssw0rd"
ISSUER = "https://idp.example.com/"
AUDIENCE = "api://tabpy"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())

#: Basic users and the roles granted to them in the registry.
USERS: Mapping[str, tuple[str, ...]] = {
    "root": ("admin",),
    "dev": ("deployer",),
    "dev2": ("deployer",),
    "tableau": ("caller", "evaluator"),
    "analyst": ("caller",),
    "scientist": ("evaluator",),
    "nobody": (),
}
#: Role -> the users holding it (an admin holds every role in effect).
HOLDERS: Mapping[str, frozenset[str]] = {
    role: frozenset(user for user, roles in USERS.items() if role in roles or "admin" in roles)
    for role in ("admin", "deployer", "caller", "evaluator")
}
#: The role map of the bearer tests: values of the ``groups`` claim -> roles.
ROLE_MAP = (
    "tabpy-admins=admin, data-science=deployer, tableau-server=caller, tableau-server=evaluator"
)


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(subject: str, groups: list[str] | None = None, scope: str = "tabpy") -> dict[str, str]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "scope": scope,
        "iat": now,
        "exp": now + 300,
    }
    if groups is not None:
        claims["groups"] = groups
    token = jwt.encode(claims, SIGNING_KEY, algorithm="ES256", headers={"kid": "k1"})
    return {"Authorization": f"Bearer {token}"}


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    pwd_file = tmp_path / "passwords.txt"
    pwd_file.write_text("".join(f"{u} {legacy_hash(u, PASSWORD)}\n" for u in USERS))
    environ = {
        "TABPY_STATE_PATH": str(tmp_path),
        "TABPY_PWD_FILE": str(pwd_file),
        "TABPY_AUTHZ": "on",
        "TABPY_OAUTH_ENABLED": "true",
        "TABPY_OAUTH_ISSUER": ISSUER,
        "TABPY_OAUTH_JWKS_URI": "https://idp.example.com/jwks",
        "TABPY_OAUTH_AUDIENCE": AUDIENCE,
        "TABPY_OAUTH_REQUIRED_SCOPES": "tabpy",
        "TABPY_OAUTH_ROLES_CLAIM": "groups",
        "TABPY_OAUTH_ROLE_MAP": ROLE_MAP,
        **extra,
    }
    return load_settings(None, environ)


def authenticator(settings: Settings, registry: Registry) -> Authenticator:
    """The real authenticator, its JWKS served from memory (no network)."""
    assert settings.pwd_file is not None
    store = PasswordStore(settings.pwd_file)
    store.load()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    document = {"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}
    jwks = JwksCache(settings.oauth_jwks_uri or "", fetch=lambda *_: document)
    return Authenticator(
        basic=BasicVerifier(store, VerificationCache(lifetime=600)),
        bearer=BearerVerifier(settings, jwks),
        enforce_endpoint_scopes=settings.oauth_enforce_endpoint_scopes,
        authorization=Authorization.from_settings(settings, registry),
    )


def grant_roles(registry: Registry) -> None:
    setup = Actor("local:test")
    for user, roles in USERS.items():
        for role in roles:
            registry.grant(f"user:{user}", role, setup)


class AnswersNull:
    """A worker pool whose every job (load checks included) succeeds at once with ``null``."""

    size = 1
    ready_workers = 1
    restarts: dict[str, int] = {}
    containment = None  # no worker processes to contain
    options = PoolOptions(size=1)

    def __init__(self) -> None:
        self.directory = EndpointDirectory()

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def submit(self, job: Job) -> Reply:
        return Reply.ok(b"null")


@dataclass
class Server:
    client: TestClient
    registry: Registry
    context: ServerContext

    def upload(self, data: bytes, user: str = "dev") -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        reply = self.client.put(f"/artifacts/{sha256}", content=data, headers=basic(user))
        assert reply.status_code in (200, 201), reply.text
        return sha256

    def deploy(self, name: str, user: str = "dev", data: bytes | None = None, **fields: Any) -> Any:
        """Deploy ``data`` (by default the name's bytes, which only the stand-in pool "runs")."""
        artifact = self.upload(name.encode() if data is None else data, user)
        body = {"name": name, "artifact": artifact, **fields}
        return self.client.post("/endpoints", json=body, headers=basic(user))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        reply = self.client.get("/admin/audit", params=filters, headers=basic("root"))
        assert reply.status_code == 200, reply.text
        entries: list[dict[str, Any]] = reply.json()["entries"]
        return entries


@contextmanager
def running(
    tmp_path: Path, *, grants: bool = True, workers: bool = False, **extra: str
) -> Iterator[Server]:
    """The app with ``extra`` settings; ``workers``: a real worker pool (scripts run)."""
    settings = settings_for(tmp_path, **extra)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    if grants:
        grant_roles(registry)
    pool: Any = WorkerPool(PoolOptions(size=1)) if workers else AnswersNull()
    context = ServerContext(
        settings,
        ServiceInfo("TabPy Server", "", "0", "", "", "", ""),
        pool=pool,
        catalog=Catalog(registry, pool),
        auth=authenticator(settings, registry),
    )
    try:
        with TestClient(create_app(context)) as client:
            yield Server(client, registry, context)
    finally:
        registry.close()
