"""The endpoint management routes: list, create, update, delete, roll back."""

from __future__ import annotations

import asyncio
import json
import shutil

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import InvalidRequest
from tabpy.registry.endpoint import Endpoint
from tabpy.registry.registry_errors import EndpointExists, EndpointNotFound, UnknownEndpoint
from tabpy.registry.store import Registry
from tabpy.server.context import ServerContext
from tabpy.server.deployments import (
    Source,
    changed_fields,
    check_fields,
    new_endpoint,
    read_staged,
    require_name,
    source_of,
)
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
        if not name:
            return await self.list(request)
        endpoint = self.context.catalog.endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(name)
        return RawResponse(json.dumps(endpoint.info()).encode(), 200, JSON)

    async def create(self, request: Request) -> Response:
        body = await self._body(request)
        name = require_name(body)
        if name in self.context.catalog.endpoints:
            raise EndpointExists(name)
        check_fields(body)
        source = source_of(body, name, self.context.staging_path)
        if source is None and body.get("type", "model") != "alias":
            raise InvalidRequest("src_path is required to add/update an endpoint.")
        endpoint = new_endpoint(body, name)
        async with self._lock:
            artifact = await self._store(source)
            created = await asyncio.to_thread(self.registry.create, endpoint, artifact)
            await self._settle(name)
        return self._reply(created, 201)

    async def update(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self._body(request)
        if name not in self.context.catalog.endpoints:
            raise UnknownEndpoint(name)
        check_fields(body)
        new_version = bool(body.get("should_update_version"))
        source = source_of(body, name, self.context.staging_path) if new_version else None
        if new_version and source is None:
            raise InvalidRequest("src_path is required to add/update an endpoint.")
        async with self._lock:
            artifact = await self._store(source)
            updated = await asyncio.to_thread(
                self.registry.update, name, changed_fields(body), artifact, new_version
            )
            await self._settle(name)
        return self._reply(updated, 200)

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not name:
            raise InvalidRequest("endpoint name is required: DELETE /endpoints/<name>")
        async with self._lock:
            await asyncio.to_thread(self.registry.delete, name)
            await self.context.catalog.refresh()
        staged = self.context.staging_path / "endpoints" / name
        await asyncio.to_thread(shutil.rmtree, staged, True)
        return Response(status_code=204)

    async def rollback(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await self._body(request)
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidRequest('Send {"version": <number>} with the version to restore.')
        async with self._lock:
            restored = await asyncio.to_thread(self.registry.rollback, name, version)
            await self._settle(name)
        return self._reply(restored, 200)

    async def versions(self, request: Request) -> Response:
        name = request.path_params["name"]
        history = await asyncio.to_thread(self.registry.versions, name)
        body = [
            {
                "version": v.version,
                "artifact": v.artifact,
                "size": v.size,
                "created_at": v.created_at,
            }
            for v in history
        ]
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def _body(self, request: Request) -> dict[str, object]:
        settings = self.context.settings
        return await read_json_object(
            request, settings.max_request_size_bytes, settings.gzip_enabled
        )

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
