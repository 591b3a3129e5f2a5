"""Arrow Flight for Tableau Prep (``TABPY_ARROW_ENABLE``).

Modules, from the bottom up:

* ``segments``: tables in shared memory (memfds) that workers open by path;
* ``store``: the stored tables, bounded in bytes, with expiry;
* ``sessions`` and ``credentials``: Flight authentication, the HTTP server's rules;
* ``flight_errors``: the one mapping of errors to what Flight clients see;
* ``flight``: the Flight RPCs and actions;
* ``owners``: fetching a table another member of the fleet holds;
* ``service``: start and stop beside HTTP, and the table strategy of ``/evaluate``
  (``dataPath``, a :class:`tabpy.runtime.tables.TableEvaluator`);
* ``worker``: the worker's side of a ``dataPath`` job, a plug-in job handler.

The app wiring uses this module only: :func:`create_service` and :data:`WORKER_HANDLERS`.
The core imports nothing from this package.

pyarrow is an optional dependency (``pip install 'tabpyx[arrow]'``). Nothing imports it unless
Arrow is enabled: the server imports this package's other modules only then, and a worker
only when it gets a ``dataPath`` job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabpy import DISTRIBUTION_NAME

if TYPE_CHECKING:
    from tabpy.arrow.service import ArrowService
    from tabpy.config import Settings
    from tabpy.registry.store import Registry
    from tabpy.runtime.pool import WorkerPool

__all__ = ["TABLE_JOB", "WORKER_HANDLERS", "create_service"]

#: Works wherever the server was installed with pip: the extra's list comes from its metadata.
INSTALL_HINT = f"pip install '{DISTRIBUTION_NAME}[arrow]'"

#: The worker job handler that runs a script on a stored table.
TABLE_JOB = "arrow.evaluate_table"
#: Job handler name -> the worker module defining it (``PoolOptions.extensions``).
WORKER_HANDLERS = {TABLE_JOB: "tabpy.arrow.worker"}


def create_service(
    settings: Settings, auth: object, pool: WorkerPool, registry: Registry | None = None
) -> ArrowService:
    """The Arrow service (not yet listening); raises ``ConfigError`` if it cannot run here.

    ``registry`` receives the audit entries of Flight's ``shutdown``.
    """
    from tabpy.config import ConfigError  # here, so that workers importing TABLE_JOB skip it

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

    return ArrowService(settings, auth, pool, registry)
