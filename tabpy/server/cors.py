"""CORS headers, configured in ``state.ini`` as TabPy does."""

from __future__ import annotations

from tabpy.registry.service_info import ServiceInfo


def cors_headers(info: ServiceInfo) -> dict[str, str]:
    """Only the non-empty values are sent, verbatim."""
    values = {
        "Access-Control-Allow-Origin": info.cors_allow_origin,
        "Access-Control-Allow-Headers": info.cors_allow_headers,
        "Access-Control-Allow-Methods": info.cors_allow_methods,
    }
    return {name: value for name, value in values.items() if value}
