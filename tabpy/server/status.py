"""``GET /status`` and ``GET /configurations/endpoint_upload_destination``."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import Response

from tabpy.registry.members import Member, now_ms
from tabpy.registry.store import unavailable_errors
from tabpy.server.context import ServerContext
from tabpy.server.responses import JSON, JSON_UTF8, RawResponse


class Status:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def status(self, request: Request) -> Response:
        """TabPy's body: each endpoint's load state here. With ``?members=1`` (a fleet view,
        new): that body under ``"endpoints"``, and every live member's own load state."""
        states = self.context.catalog.states
        body = {name: state.as_json() for name, state in states.items()}
        if request.query_params.get("members", "0").lower() in ("0", "false", "no"):
            return RawResponse(json.dumps(body).encode(), 200, JSON)
        fleet = self.context.fleet
        found: list[Member] = []
        if fleet is not None:
            with unavailable_errors():
                found = await asyncio.to_thread(fleet.read_members)
        now = now_ms()
        view = {
            "instance_id": self.context.settings.instance_id,
            "endpoints": body,
            "members": [member.as_json(now) for member in found],
        }
        return RawResponse(json.dumps(view).encode(), 200, JSON)

    async def upload_destination(self, request: Request) -> Response:
        body = json.dumps({"path": str(self.context.staging_path)}).encode()
        return RawResponse(body, 200, JSON_UTF8)
