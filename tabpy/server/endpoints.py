"""The endpoint management routes: list, create, update, delete, roll back, list versions.

Each handler parses its request (:class:`~tabpy.registry.deploy_request.DeployRequest`
holds the deploy rules), makes one registry call and replies; errors are raised and
mapped to HTTP in :mod:`tabpy.server.http_errors`.

Every change names who made it (its audit entry is written in the change's transaction) and,
for an existing endpoint, how to check that they may: an owner or an admin
(:meth:`~tabpy.security.access.Authorization.require_owner`, run inside the transaction). A
deploy may set the endpoint's ``owners`` (users or ``group:<name>``) and ``callers`` (users,
groups or ``role:<name>``); a new endpoint's deployer is always among its owners.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import InvalidRequest, NotSupported
from tabpy.registry.deploy_request import DeployRequest, Source, parse_rollback, read_staged
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.grants import AccessChange, EndpointAccess
from tabpy.registry.registry_errors import EndpointNotFound, UnknownEndpoint
from tabpy.registry.store import Authorize, Registry
from tabpy.security.roles import USER_PREFIX, parse_reference
from tabpy.server.actors import actor_of, principal_of
from tabpy.server.context import ServerContext
from tabpy.server.json_body import read_json_object
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse, encode_json


class Endpoints:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        # One deploy at a time per server: the registry serialises writes
        # anyway, and this keeps load checks in the order of the changes.
        self._lock = asyncio.Lock()

    @property
    def registry(self) -> Registry:
        return self.context.catalog.registry

    async def list(self, request: Request) -> Response:
        body = {name: e.info() for name, e in self.context.catalog.endpoints.items()}
        return RawResponse(encode_json(body), 200, JSON)

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        endpoint = self.context.catalog.endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(name)
        return RawResponse(encode_json(endpoint.info()), 200, JSON)

    async def access(self, request: Request) -> Response:
        """``GET /endpoints/<name>/access``: its owners and callers (empty: every caller)."""
        found = await asyncio.to_thread(self.registry.endpoint_access, request.path_params["name"])
        return RawResponse(encode_json(found.as_json()), 200, JSON)

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        # Against the database, not the catalog: another instance may have deployed it.
        deployed = await asyncio.to_thread(self.registry.names)
        deploy = DeployRequest.to_create(body, deployed, self.context.staging_path)
        access = access_change(body)
        deployer = principal_of(request)
        if deployer.user is not None:  # a new endpoint belongs to whoever deployed it
            owners = {USER_PREFIX + deployer.user.lower(), *(access.owners or ())}
            access = AccessChange(frozenset(owners), access.callers)
        endpoint = await self._deploy(request, deploy, access)
        return self._reply(endpoint, 201, await self._fleet_wait(endpoint.name))

    async def update(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self._body(request)
        deployed = await asyncio.to_thread(self.registry.names)
        deploy = DeployRequest.to_update(name, body, deployed, self.context.staging_path)
        endpoint = await self._deploy(request, deploy, access_change(body))
        return self._reply(endpoint, 200, await self._fleet_wait(endpoint.name))

    async def delete(self, request: Request) -> Response:
        await self._delete(request, request.path_params["name"])
        return Response(status_code=204)

    async def delete_named(self, request: Request) -> Response:
        """``DELETE /endpoints`` with ``{"name": ...}``: for a name too long for a URL.

        Older servers accepted names of any length, and a URL holding one may exceed what
        the server (or a proxy) accepts; this form still removes such an endpoint.
        """
        name = (await self._body(request)).get("name")
        if not isinstance(name, str):
            raise InvalidRequest(
                'Send {"name": "<endpoint name>"}, or use DELETE /endpoints/<name>.'
            )
        await self._delete(request, name)
        return Response(status_code=204)

    async def rollback(self, request: Request) -> Response:
        name = _storable(request.path_params["name"])
        version = parse_rollback(await self._body(request))
        actor = actor_of(request.scope, principal_of(request))
        authorize = self._owner_check(request, name, "roll it back")
        async with self._lock:
            restored = await asyncio.to_thread(
                self.registry.rollback, name, version, actor=actor, authorize=authorize
            )
            await self._settle(name)
        return self._reply(restored, 200, await self._fleet_wait(name))

    async def versions(self, request: Request) -> Response:
        name = _storable(request.path_params["name"])
        history = await asyncio.to_thread(self.registry.versions, name)
        body = [version.info() for version in history]
        return RawResponse(encode_json(body), 200, JSON)

    def _require_environments(self) -> None:
        """Refuse ``requirements`` now (501) on a server that cannot build environments.

        Accepted, the version would only fail later as ``LoadFailed``; a refusal at deploy
        names the fix while the deployer is there, and changes nothing in the registry.
        """
        environments = self.context.catalog.environments
        reason = (
            "This server does not build environments. Install the envs extra "
            "(pip install 'tabpyx[envs]') and restart the server, or deploy without requirements."
            if environments is None
            else environments.unavailable()
        )
        if reason is not None:
            raise NotSupported(reason)

    async def _body(self, request: Request) -> dict[str, object]:
        settings = self.context.settings
        return await read_json_object(
            request, settings.max_request_size_bytes, settings.gzip_enabled
        )

    async def _deploy(
        self, request: Request, deploy: DeployRequest, access: AccessChange
    ) -> Endpoint:
        if deploy.environment is not None:
            self._require_environments()
        actor = actor_of(request.scope, principal_of(request))
        authorize = None if deploy.creates else self._owner_check(request, deploy.name, "update it")
        async with self._lock:
            artifact = await self._store(deploy.source)
            endpoint = await asyncio.to_thread(
                self.registry.deploy,
                deploy,
                artifact,
                actor=actor,
                access=access,
                authorize=authorize,
            )
            await self._settle(deploy.name)
        return endpoint

    async def _delete(self, request: Request, name: str) -> None:
        actor = actor_of(request.scope, principal_of(request))
        authorize = self._owner_check(request, name, "remove it")
        _storable(name)
        async with self._lock:
            await asyncio.to_thread(self.registry.delete, name, actor=actor, authorize=authorize)
            await self._refresh()
        if name not in (".", "..") and Path(name).name == name:  # one folder, never a path
            staged = self.context.staging_path / "endpoints" / name
            await asyncio.to_thread(shutil.rmtree, staged, True)

    async def _store(self, source: Source | None) -> str | None:
        """The SHA-256 of the new version's object, copying a staged pickle in if needed."""
        if source is None or source.src_path is None:
            return None if source is None else source.artifact
        sha256, data = await asyncio.to_thread(read_staged, source.src_path)
        await asyncio.to_thread(self.registry.put_artifact, sha256, data)
        return sha256

    async def _settle(self, name: str) -> None:
        """Mirror the change and wait for the new version's load check, like TabPy."""
        await self._refresh()
        await self.context.catalog.wait_loaded(name)

    async def _refresh(self) -> None:
        """Mirror the change here at once: the catalog, and the owners and callers."""
        await self.context.catalog.refresh()
        await self.context.auth.authorization.refresh()

    async def _fleet_wait(self, name: str) -> Sequence[str] | None:
        """Wait (``TABPY_DEPLOY_WAIT_SECONDS`` at most) for the fleet's other members to load
        the revision this instance now serves; those that have not yet, None if alone."""
        fleet = self.context.fleet
        if fleet is None:
            return None
        revision = self.context.catalog.revision
        return await fleet.wait_loaded(name, revision, self.context.settings.deploy_wait_seconds)

    def _owner_check(self, request: Request, name: str, doing: str) -> Authorize:
        authorization = self.context.auth.authorization
        principal = principal_of(request)

        def check(access: EndpointAccess) -> None:
            authorization.require_owner(principal, name, access.owners, doing)

        return check

    def _reply(
        self, endpoint: Endpoint, status: int, not_loaded: Sequence[str] | None = None
    ) -> Response:
        """The endpoint as TabPy describes it; in a fleet, plus ``members_not_loaded``: the
        members that had not loaded this version when the wait ended (TabPy's clients ignore
        keys they do not know)."""
        info = endpoint.info()
        if not_loaded is not None:
            info["members_not_loaded"] = not_loaded
        return RawResponse(encode_json({endpoint.name: info}), status, JSON_UTF8)


def _storable(name: str) -> str:
    """``name``, if an endpoint can have it; else the registry's "does not exist".

    PostgreSQL refuses NUL in text, even in a query (a 500 instead of a 404), and deploys
    refuse such names, so no registry holds one: there is nothing to look up.
    """
    if "\x00" in name:
        raise UnknownEndpoint(name)
    return name


def access_change(body: Mapping[str, Any]) -> AccessChange:
    """The ``owners`` and ``callers`` a deploy body sets (None where it says nothing)."""
    return AccessChange(
        _references(body, "owners", roles_allowed=False), _references(body, "callers")
    )


def _references(
    body: Mapping[str, Any], field: str, *, roles_allowed: bool = True
) -> frozenset[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list):
        kinds = (
            "users or group:<name>" if not roles_allowed else "users, group:<name> or role:<name>"
        )
        raise InvalidRequest(f"{field} must be a list of principals: {kinds}.")
    return frozenset(parse_reference(item, roles_allowed=roles_allowed) for item in value)
