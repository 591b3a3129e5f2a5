"""Script and endpoint execution in isolated, long-lived worker processes.

The server process never runs user code and never parses data columns: request
bodies travel to a worker as raw bytes (``protocol``), the worker decodes, runs
and encodes (``evaluate``, ``encoding``), and the pool (``pool``) supervises the
workers, killing and replacing any that time out, run out of memory or crash.
"""
