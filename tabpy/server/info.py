"""``GET /info``: what Tableau reads to test the connection and discover features."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from tabpy import __version__
from tabpy.server.context import ServerContext
from tabpy.server.responses import JSON, RawResponse


def info_document(context: ServerContext) -> dict[str, object]:
    settings = context.settings
    features: dict[str, object] = {}
    authentication = authentication_feature(context)
    if authentication is not None:
        features["authentication"] = authentication
    features["evaluate_enabled"] = settings.evaluate_enabled
    features["gzip_enabled"] = settings.gzip_enabled
    features["arrow_enabled"] = settings.arrow_enabled
    info = context.service_info
    return {
        "description": info.description,
        "creation_time": info.creation_time,
        "state_path": str(settings.state_path),
        "server_version": __version__,
        "name": info.name,
        "versions": {"v1": {"features": features}},
    }


def authentication_feature(context: ServerContext) -> dict[str, object] | None:
    settings = context.settings
    methods: dict[str, object] = {}
    if settings.pwd_file is not None:
        methods["basic-auth"] = {}
    if settings.oauth_enabled:
        endpoint_scopes = list(
            dict.fromkeys(
                (
                    settings.oauth_query_scope,
                    settings.oauth_evaluate_scope,
                    settings.oauth_deploy_scope,
                )
            )
        )
        methods["oauth-jwt"] = {
            "required_scopes": list(settings.oauth_required_scopes),
            "endpoint_scopes": endpoint_scopes,
            "endpoint_scopes_enforced": settings.oauth_enforce_endpoint_scopes,
        }
    if not methods:
        return None
    return {"required": True, "methods": methods}


class Info:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        # Encoded once per service info: settings never change while the server runs, and
        # the shared name and description change only when the fleet's copy does.
        self._encoded_for = context.service_info
        self.body = json.dumps(info_document(context)).encode("ascii")

    async def handle(self, request: Request) -> Response:
        info = self.context.service_info
        if info is not self._encoded_for:
            self.body = json.dumps(info_document(self.context)).encode("ascii")
            self._encoded_for = info
        return RawResponse(self.body, 200, JSON)
