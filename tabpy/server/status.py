"""``GET /status`` and ``GET /configurations/endpoint_upload_destination``."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from tabpy.server.context import ServerContext
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse


class Status:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def status(self, request: Request) -> Response:
        states = self.context.catalog.states
        body = {name: state.as_json() for name, state in states.items()}
        return RawResponse(json.dumps(body).encode(), 200, JSON)

    async def upload_destination(self, request: Request) -> Response:
        body = json.dumps({"path": str(self.context.staging_path)}).encode()
        return RawResponse(body, 200, JSON_UTF8)
