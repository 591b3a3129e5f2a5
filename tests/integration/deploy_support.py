"""Deploying test functions to a live server, by our client or by raw HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

import cloudpickle
import httpx

from tabpy.tabpy_tools.client import Client
from tabpy.tabpy_tools.custom_query_object import CustomQueryObject


def client_for(server: Any) -> Client:
    return Client(server.url + "/", deploy_timeout=30)


def upload(http: httpx.Client, data: bytes) -> str:
    """PUT the bytes to /artifacts and return their SHA-256."""
    sha256 = hashlib.sha256(data).hexdigest()
    response = http.put(f"/artifacts/{sha256}", content=data)
    assert response.status_code in (200, 201), response.text
    return sha256


def pickled(function: Any, description: str = "") -> bytes:
    return cloudpickle.dumps(CustomQueryObject(function, description))


def deploy_raw(http: httpx.Client, name: str, data: bytes, **fields: Any) -> httpx.Response:
    """Create an endpoint from raw artifact bytes (for objects the client would refuse)."""
    return http.post("/endpoints", json={"name": name, "artifact": upload(http, data), **fields})
