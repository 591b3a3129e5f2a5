"""``PUT /artifacts/<sha256>``: upload a pickled object over HTTP.

TabPy's client writes the pickle to a folder the server must also see, which
only works on one machine or a shared mount.  Here the client uploads the bytes
and names them by their SHA-256; the server recomputes the hash, so a
truncated or altered upload is refused, and stores them in the registry.
Deploys then refer to the artifact by hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from starlette.requests import Request
from starlette.responses import Response

from tabpy.errors import InvalidRequest
from tabpy.registry.endpoint import check_sha256
from tabpy.server.body import read_body
from tabpy.server.context import ServerContext
from tabpy.server.responses import JSON_UTF8, RawResponse


class Artifacts:
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    async def put(self, request: Request) -> Response:
        settings = self.context.settings
        expected = check_sha256(request.path_params["sha256"])
        chunks = await read_body(request, settings.max_request_size_bytes, settings.gzip_enabled)
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise InvalidRequest(
                "Upload integrity check failed",
                f"The body's SHA-256 is {actual} but the URL names {expected}; "
                "upload the complete object again.",
            )
        data = b"".join(chunks)
        created = await asyncio.to_thread(self.context.catalog.registry.put_artifact, actual, data)
        body = json.dumps({"sha256": actual, "size": len(data)}).encode()
        return RawResponse(body, 201 if created else 200, JSON_UTF8)
