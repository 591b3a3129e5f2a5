"""The endpoint management routes: list, create, update, delete, roll back, list versions.

Each handler parses its request (:class:`~tabpy.registry.deploy_request.DeployRequest`
holds the deploy rules), makes one registry call and replies; errors are raised and
mapped to HTTP in :mod:`tabpy.server.http_errors`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import InvalidRequest
from tabpy.registry.deploy_request import DeployRequest, Source, parse_rollback, read_staged
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.registry_errors import EndpointNotFound
from tabpy.registry.store import Registry
from tabpy.server.context import ServerContext
from tabpy.server.json_body import read_json_object
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse


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
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        endpoint = self.context.catalog.endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(name)
        return RawResponse(json.dumps(endpoint.info()).encode(), 200, JSON)

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        # Against the database, not the catalog: another instance may have deployed it.
        deployed = await asyncio.to_thread(self.registry.names)
        deploy = DeployRequest.to_create(body, deployed, self.context.staging_path)
        return self._reply(await self._deploy(deploy), 201)

    async def update(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self._body(request)
        deployed = await asyncio.to_thread(self.registry.names)
        deploy = DeployRequest.to_update(name, body, deployed, self.context.staging_path)
        return self._reply(await self._deploy(deploy), 200)

    async def delete(self, request: Request) -> Response:
        await self._delete(request.path_params["name"])
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
        await self._delete(name)
        return Response(status_code=204)

    async def rollback(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = parse_rollback(await self._body(request))
        async with self._lock:
            restored = await asyncio.to_thread(self.registry.rollback, name, version)
            await self._settle(name)
        return self._reply(restored, 200)

    async def versions(self, request: Request) -> Response:
        history = await asyncio.to_thread(self.registry.versions, request.path_params["name"])
        body = [version.info() for version in history]
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def _body(self, request: Request) -> dict[str, object]:
        settings = self.context.settings
        return await read_json_object(
            request, settings.max_request_size_bytes, settings.gzip_enabled
        )

    async def _deploy(self, deploy: DeployRequest) -> Endpoint:
        async with self._lock:
            artifact = await self._store(deploy.source)
            endpoint = await asyncio.to_thread(self.registry.deploy, deploy, artifact)
            await self._settle(deploy.name)
        return endpoint

    async def _delete(self, name: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self.registry.delete, name)
            await self.context.catalog.refresh()
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
        await self.context.catalog.refresh()
        await self.context.catalog.wait_loaded(name)

    def _reply(self, endpoint: Endpoint, status: int) -> Response:
        body = json.dumps({endpoint.name: endpoint.info()}).encode()
        return RawResponse(body, status, JSON_UTF8)
