"""Arrow Flight for Tableau Prep (``TABPY_ARROW_ENABLE``), SPEC 9.

Modules, from the bottom up:

* ``segments``: tables in shared memory (memfds) that workers open by path;
* ``store``: the stored tables, bounded in bytes, with expiry;
* ``sessions`` and ``credentials``: Flight authentication, the HTTP server's rules;
* ``flight``: the Flight RPCs and actions;
* ``service``: start and stop beside HTTP, and ``/evaluate`` with ``dataPath``;
* ``worker``: the worker's side of a ``dataPath`` job.

pyarrow is an optional dependency (``pip install 'tabpyx[arrow]'``). Nothing imports it unless
Arrow is enabled: the server imports this package's other modules only then, and a worker
only when it gets a ``dataPath`` job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabpy import DISTRIBUTION_NAME
from tabpy.config import ConfigError, Settings

if TYPE_CHECKING:
    from tabpy.arrow.service import ArrowService
    from tabpy.runtime.pool import WorkerPool

__all__ = ["create_service"]

#: Works wherever the server was installed with pip: the extra's list comes from its metadata.
INSTALL_HINT = f"pip install '{DISTRIBUTION_NAME}[arrow]'"


def create_service(settings: Settings, auth: object, pool: WorkerPool) -> ArrowService:
    """The Arrow service (not yet listening); raises ``ConfigError`` if it cannot run here."""
    try:
        import pyarrow.flight  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"TABPY_ARROW_ENABLE is true but pyarrow is not installed ({err}): "
            f"run {INSTALL_HINT}, or set TABPY_ARROW_ENABLE to false."
        ) from None
    import os

    if not hasattr(os, "memfd_create"):
        raise ConfigError(
            "TABPY_ARROW_ENABLE needs Linux (tables reach the workers through memfd shared "
            "memory): set TABPY_ARROW_ENABLE to false on this system."
        )
    from tabpy.arrow.service import ArrowService

    return ArrowService(settings, auth, pool)
