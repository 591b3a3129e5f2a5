"""Imported last by the fork server: keeps the preloaded modules' memory shared with workers.

Workers are forked from the fork server after it has imported the worker code and the
libraries scripts use (pandas and pyarrow are the bulk of it), so their memory pages start out
shared. A page stays shared only until a process writes to it, and the cycle collector writes
to every object it examines. Collecting once here and then freezing what is left
(``gc.freeze``) takes those objects out of every later collection, in the fork server and in
each worker forked from it, so their pages are not copied just because the collector ran.

This module has no API: the fork server's preload list names it, after the real modules.
"""

from __future__ import annotations

import gc

__all__: list[str] = []

gc.collect()
gc.freeze()
