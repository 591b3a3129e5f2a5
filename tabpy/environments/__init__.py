"""Per-endpoint Python environments: specs, and building them with uv into a cache.

The application's wiring creates one :class:`Environments`; the registry validates specs with
:func:`parse_spec`; the catalog asks :class:`Environments` for a version's environment.
"""

from __future__ import annotations

from tabpy.environments.builder import BuildLimits, BuildPhase, Toolchain
from tabpy.environments.cache import BuiltEnvironment
from tabpy.environments.environment_errors import BuildFailed
from tabpy.environments.manager import BuildState, Environments, EnvironmentUsage
from tabpy.environments.spec import EnvironmentSpec, parse_spec

__all__ = [
    "BuildFailed",
    "BuildLimits",
    "BuildPhase",
    "BuildState",
    "BuiltEnvironment",
    "EnvironmentSpec",
    "EnvironmentUsage",
    "Environments",
    "Toolchain",
    "parse_spec",
]
