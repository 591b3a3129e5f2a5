"""Running scripts and endpoints in isolated, long-lived worker processes: the core.

The server process never runs user code and never parses data columns: request bodies travel
to a worker as raw bytes, and the worker decodes, runs and encodes. Nothing here knows about
HTTP or Arrow: transports map the :mod:`tabpy.errors` exceptions raised here, and feature
packages plug in through :mod:`~tabpy.runtime.tables` and :mod:`~tabpy.runtime.job_handlers`.

Worker side (standard library, cloudpickle and orjson only; pandas and pyarrow optional):

* ``protocol``: the typed messages between server and workers, and their framing;
* ``worker``: the worker process's entry point and loop;
* ``evaluate`` and ``query``: the ``/evaluate`` and ``/query`` contracts;
* ``scripts``, ``namespace``, ``encoding``: wrapping, running and encoding a script;
* ``script_api`` and ``endpoint_cache``: ``tabpy.query`` and the endpoint objects a worker holds;
* ``job_handlers``: jobs that feature packages plug into the worker;
* ``runtime_errors``: the errors of user code and how they are described;
* ``template``: the warm process that forks a pool's workers, in the server's interpreter or
  another Python environment's.

Server side:

* ``pool``: supervises the workers and talks to them; ``outcomes`` turns replies into errors;
* ``launchers``: what a pool expects of the process its workers come from (a ``template``);
* ``pools``: the default pool and one pool per Python environment in use, started on demand;
* ``environments``: an environment's interpreter, and the worker runtime copied into it;
* ``directory``: what the workers may run (endpoint versions and their objects' bytes);
* ``catalog``: mirrors the registry into the directory and checks that new versions load;
* ``tables``: the protocol of a table strategy for ``/evaluate`` (Arrow implements it).
"""
