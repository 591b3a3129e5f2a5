"""A real fleet for tests: PostgreSQL, three instances on their own hosts, nginx in front.

Each instance runs in its own network namespace (``ip netns``), joined to a bridge in the test's
namespace by a veth pair, with its own address on a private /24; it listens on an ephemeral
port of that address. nginx runs in the test's namespace with the shipped
``deploy/nginx/fleet.conf``, its instance names replaced by those addresses. PostgreSQL is the
throwaway cluster of the ``postgres`` tests; the instances reach it through its Unix socket,
which a network namespace does not hide. Everything needs root (marker ``fleet``).

:class:`Load` is the traffic: a few threads sending ``/query`` and ``/evaluate`` through nginx
and counting every reply that is not a 200 as a failure, with what it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import httpx

from tabpy.config import DEFAULT_ARROWFLIGHT_PORT, DEFAULT_PORT
from tabpy.tabpy_tools.custom_query_object import CustomQueryObject
from tests.components import FLEET, missing
from tests.integration.live_server import (
    READY_LINE,
    START_TIMEOUT,
    _LineCollector,
    clean_environment,
    descendants,
    wait_for,
    write_config,
)
from tests.nginx_support import write_main_config

REPO = Path(__file__).resolve().parents[2]
FLEET_CONF = REPO / "deploy" / "nginx" / "fleet.conf"
#: What fleet.conf calls the instances, in order, and its two listening lines.
CONF_HOSTS = ("tabpy1", "tabpy2", "tabpy3")
#: The shipped config uses the servers' default ports, which the tests replace by ephemeral ones.
CONF_HTTP_LISTEN = f"listen {DEFAULT_PORT};"
CONF_FLIGHT_LISTEN = f"listen {DEFAULT_ARROWFLIGHT_PORT} http2;"
CONF_ACCESS_LOG = "/var/log/nginx/access.log"
#: What an instance logs once its Flight listener is up (``TABPY_ARROW_ENABLE``).
FLIGHT_LINE = re.compile(r"Arrow Flight listening on port (\d+)")


def require_fleet() -> str:
    """The nginx binary, once root, ``ip netns`` and nginx are known to be here."""
    if os.geteuid() != 0:
        missing(FLEET, "network namespaces need root")
    if shutil.which("ip") is None:
        missing(FLEET, "no ip command (iproute2)")
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing(FLEET, "no nginx on PATH or in /usr/sbin")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Network:
    """A bridge with one namespace per instance, each with its own address on a /24."""

    def __init__(self, hosts: int) -> None:
        tag = secrets.token_hex(3)
        self.bridge = f"tfb{tag}"
        self.prefix = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250) + 1}"
        self.gateway = f"{self.prefix}.1"
        self.namespaces = [f"tabpy-fleet-{tag}-{n}" for n in range(hosts)]
        self.addresses = [f"{self.prefix}.{10 + n}" for n in range(hosts)]
        self._veths = [f"tfv{tag}{n}" for n in range(hosts)]

    def __enter__(self) -> Network:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for namespace, address, veth in zip(
                self.namespaces, self.addresses, self._veths, strict=True
            ):
                inside = veth + "i"
                _ip("netns", "add", namespace)
                _ip("link", "add", veth, "type", "veth", "peer", "name", inside)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("link", "set", inside, "netns", namespace)
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
                _ip("-n", namespace, "link", "set", inside, "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for namespace in self.namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", namespace)  # takes its end of the veth pair along
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "delete", self.bridge)


class Instance:
    """One tabpy server inside a namespace; it keeps its port across restarts (nginx's view)."""

    def __init__(
        self, name: str, namespace: str, address: str, directory: Path, settings: dict[str, str]
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.address = address
        self.directory = directory
        self.settings = settings
        self.port = 0
        #: Whether this instance serves Arrow Flight (``TABPY_ARROW_ENABLE``).
        self.arrow = settings.get("TABPY_ARROW_ENABLE", "").lower() in ("1", "true", "yes", "on")
        #: The Flight port: any free one of this namespace at first (the log names it), then
        #: kept across restarts like :attr:`port`, since nginx's Flight upstream names it.
        self.flight_port = 0
        self.process: subprocess.Popen[str] | None = None
        self.stderr: _LineCollector | None = None
        self.http = httpx.Client(timeout=30)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def launch(self) -> None:
        """Start the process; :meth:`wait_started` waits for its listening line."""
        state = self.directory / "state"
        state.mkdir(parents=True, exist_ok=True)
        settings = {
            **self.settings,
            "TABPY_PORT": str(self.port),
            "TABPY_ARROWFLIGHT_PORT": str(self.flight_port),
            "TABPY_BIND_ADDRESS": self.address,
            "TABPY_ARROW_BIND_ADDRESS": self.address,
            "TABPY_STATE_PATH": str(state),
            "TABPY_INSTANCE_ID": self.name,
        }
        config = write_config(self.directory, settings)
        command = ["ip", "netns", "exec", self.namespace]
        command += [sys.executable, "-m", "tabpy.cli.server", "--config", str(config)]
        self.process = subprocess.Popen(
            [*command, "--disable-auth-warning"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            start_new_session=True,
        )
        self.stderr = _LineCollector(self.process.stderr)

    def wait_started(self) -> None:
        assert self.stderr is not None
        ready = self.stderr.wait_for(READY_LINE, START_TIMEOUT)
        if ready is None:
            raise AssertionError(f"{self.name} did not start; stderr:\n{self.stderr.text}")
        self.port = int(ready.group(1))
        if self.arrow:
            flight = self.stderr.wait_for(FLIGHT_LINE, START_TIMEOUT)
            if flight is None:
                log = self.stderr.text
                raise AssertionError(f"{self.name}: no Flight listener; stderr:\n{log}")
            self.flight_port = int(flight.group(1))
        wait_for(self.ready, START_TIMEOUT, f"{self.name} to be ready")

    def ready(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return self.http.get(self.url + "/ready").status_code == 200
        return False

    def signal(self, signum: int) -> None:
        """``SIGKILL`` takes the whole process group (a host that dies); others the server."""
        assert self.process is not None
        if signum == signal.SIGKILL:
            tree = descendants(self.process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        else:
            self.process.send_signal(signum)

    def wait_stopped(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(self.url + path)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(self.url + path, json=body)

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.http.put(self.url + path, json=body)

    def version_of(self, name: str) -> int | None:
        """The version of ``name`` this instance serves now (None: not deployed here)."""
        reply = self.get(f"/endpoints/{name}")
        if reply.status_code != 200:
            return None
        return int(reply.json()["version"])


def start_together(instances: list[Instance]) -> None:
    """Launch every instance at once (one empty database: they race to create it)."""
    for instance in instances:
        instance.launch()
    for instance in instances:
        instance.wait_started()


class Nginx:
    """nginx with the shipped fleet config, instance names replaced by real addresses."""

    def __init__(self, binary: str, directory: Path, instances: list[Instance]) -> None:
        self.binary = binary
        self.directory = directory
        self.instances = instances
        self.port = _free_port()
        self.flight_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def site(self) -> str:
        text = FLEET_CONF.read_text(encoding="utf-8")
        for documented in (*CONF_HOSTS, CONF_HTTP_LISTEN, CONF_FLIGHT_LISTEN, CONF_ACCESS_LOG):
            assert documented in text, f"deploy/nginx/fleet.conf no longer has {documented!r}"
        for host, instance in zip(CONF_HOSTS, self.instances, strict=True):
            text = text.replace(f"{host}:{DEFAULT_PORT}", f"{instance.address}:{instance.port}")
            # Without Flight, an address that refuses connections keeps the upstream valid.
            flight = instance.flight_port or 1
            text = text.replace(
                f"{host}:{DEFAULT_ARROWFLIGHT_PORT}", f"{instance.address}:{flight}"
            )
        text = text.replace(CONF_HTTP_LISTEN, f"listen 127.0.0.1:{self.port};")
        text = text.replace(CONF_FLIGHT_LISTEN, f"listen 127.0.0.1:{self.flight_port} http2;")
        return text.replace(CONF_ACCESS_LOG, str(self.directory / "access.log"))

    def __enter__(self) -> Nginx:
        directory = self.directory
        directory.chmod(0o755)  # nginx's workers run unprivileged when we are root
        (directory / "site.conf").write_text(self.site(), encoding="utf-8")
        write_main_config(directory, connections=1024)
        command = [self.binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = httpx.Client(base_url=self.url, timeout=5)

        def answers() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return client.get("/health").status_code == 200
            return False

        wait_for(answers, 30, "nginx to answer")
        client.close()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    def upstreams(self, request: str, since: int = 0) -> list[str]:
        """The instance address (``host:port``) that answered each ``request`` logged after
        byte ``since`` of the access log, in the order nginx finished them; ``request`` is a
        piece of the request line, e.g. ``"POST /evaluate "`` or ``"/DoPut "``."""
        with self.access_log.open("rb") as stream:
            stream.seek(since)
            text = stream.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            if request in line and (match := re.search(r" upstream=(.+?) upstream_status=", line)):
                found.append(match.group(1).split(",")[-1].strip())  # the last one tried
        return found

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- deploying ---------------------------------------------------------------------------------


def adder(step: int) -> bytes:
    """A pickled endpoint adding ``step`` to each value: a closure, so pickled by value."""

    def add(values: list[int]) -> list[int]:
        return [value + step for value in values]

    return cloudpickle.dumps(CustomQueryObject(add, f"adds {step}"))


def upload(instance: Instance, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    reply = instance.http.put(f"{instance.url}/artifacts/{sha256}", content=data)
    assert reply.status_code in (200, 201), reply.text
    return sha256


def deploy(instance: Instance, name: str, data: bytes) -> httpx.Response:
    """Create ``name``, or make a new version of it when it exists."""
    sha256 = upload(instance, data)
    if instance.get(f"/endpoints/{name}").status_code == 404:
        return instance.post("/endpoints", {"name": name, "artifact": sha256})
    return instance.put(f"/endpoints/{name}", {"artifact": sha256, "should_update_version": True})


# --- traffic -----------------------------------------------------------------------------------


@dataclass
class Load:
    """Threads sending ``/query/<endpoint>`` and ``/evaluate`` through nginx until stopped."""

    url: str
    endpoint: str
    threads: int = 4
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=60)

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    if (i + n) % 2:
                        reply = client.post(f"/query/{self.endpoint}", json={"data": [[i]]})
                        ok = reply.status_code == 200 and reply.json()["response"][0] > i
                    else:
                        script = {"script": "return _arg1[0] * 2", "data": {"_arg1": [i]}}
                        reply = client.post("/evaluate", json=script)
                        ok = reply.status_code == 200 and reply.json() == i * 2
                    outcome = "" if ok else f"{reply.status_code} {reply.text[:200]}"
                except httpx.HTTPError as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.sent += 1
                    if outcome:
                        self.failures.append(outcome)

    def run_for(self, seconds: float, during: Callable[[], None] | None = None) -> None:
        """Keep the load on for ``seconds``, calling ``during`` once after the first third."""
        started = time.monotonic()
        self._pause_until(started + seconds / 3)
        if during is not None:
            during()
        self._pause_until(started + seconds)

    def _pause_until(self, moment: float) -> None:
        while time.monotonic() < moment and not self._stop.is_set():
            self._stop.wait(min(0.05, max(0.0, moment - time.monotonic())))


# --- Tableau Prep ------------------------------------------------------------------------------


def prep_flow(nginx: Nginx, rows: int = 1000) -> str | None:
    """One Tableau Prep flow through the load balancer; None if it worked, else what failed.

    Prep puts its table with Flight (DoPut), calls ``/evaluate`` with its ``dataPath`` and
    fetches the output table (DoGet): three requests that round-robin may send to three
    different instances. For a fleet started with ``TABPY_ARROW_ENABLE`` (each instance keeps
    the Flight port it first got, which nginx's Flight upstream names).
    """
    import pyarrow as pa
    from pyarrow import flight

    table = pa.table({"a": list(range(rows)), "b": [0.5 * i for i in range(rows)]})
    client = flight.FlightClient(f"grpc+tcp://127.0.0.1:{nginx.flight_port}")
    try:
        results = list(client.do_action(flight.Action("getUniquePath", b"")))
        path = results[0].body.to_pybytes().decode()
        writer, _ = client.do_put(flight.FlightDescriptor.for_path(path), table.schema)
        writer.write_table(table, max_chunksize=256)
        writer.close()
        script = "_arg1['total'] = _arg1['a'] + _arg1['b']\nreturn _arg1"
        reply = httpx.post(
            nginx.url + "/evaluate", json={"script": script, "dataPath": path}, timeout=60
        )
        if reply.status_code != 200:
            return f"/evaluate: {reply.status_code} {reply.text[:200]}"
        output = reply.json()["outputDataPath"]
        info = client.get_flight_info(flight.FlightDescriptor.for_path(output))
        result = client.do_get(info.endpoints[0].ticket).read_all()
        expected = [1.5 * i for i in range(rows)]
        if result.column("total").to_pylist() != expected:
            return "the output table's total column is wrong"
        return None
    except Exception as exc:  # noqa: BLE001 - pyarrow maps gRPC codes to many types
        return f"Flight: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        client.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
