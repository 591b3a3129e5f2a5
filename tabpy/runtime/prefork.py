"""Imported last by the fork server: keeps the preloaded modules' memory shared with workers.

Workers are forked from the fork server after it has imported the worker code, the libraries
scripts use (pandas and pyarrow are the bulk of it) and the server's main module, so their
memory pages start out shared. A page stays shared only until a process writes to it, and the
cycle collector writes to every object it examines. Collecting once here and then freezing
what is left (``gc.freeze``) takes those objects out of every later collection, in the fork
server and in each worker forked from it, so their pages are not copied just because the
collector ran.

multiprocessing runs the server's main module again in each worker (as ``__mp_main__``), and
``runpy`` warns when that module is already loaded, as it now is. The second run only defines
the module's functions again (its ``__main__`` block does not run), so the warning is
silenced here, for that message from ``runpy`` only.

This module has no API: the fork server's preload list names it, after the real modules.
"""

from __future__ import annotations

import gc
import warnings

__all__: list[str] = []

warnings.filterwarnings(
    "ignore",
    message=r".* found in sys\.modules after import of package .*",
    category=RuntimeWarning,
    module="runpy",
)
gc.collect()
gc.freeze()
