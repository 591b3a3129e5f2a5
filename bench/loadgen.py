"""Closed-loop HTTP load: N keep-alive connections each sending the same POST back-to-back.

Uses `wrk` (C, LuaJIT) when installed; otherwise an asyncio raw-socket client (uvloop if present).
Both verify every response: status 200 and an exact expected body (or, with
``contains=True``, a body that contains the expected bytes, for replies that carry a per-request
field such as /query's ``uuid``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_LUA = r"""
wrk.method = "POST"
wrk.body = [==[@@BODY@@]==]
wrk.headers["Content-Type"] = "application/json"
@@HEADERS@@
local expected = [==[@@EXPECTED@@]==]
local contains = @@CONTAINS@@
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
  firstbad = ""
end

function response(status, headers, body)
  local good
  if contains then
    good = body ~= nil and string.find(body, expected, 1, true) ~= nil
  else
    good = body == expected
  end
  if status == 200 and good then
    ok = ok + 1
  else
    bad = bad + 1
    if firstbad == "" then firstbad = tostring(status) .. " " .. string.sub(body or "", 1, 120) end
  end
end

function done(summary, latency, requests)
  local okc, badc, fb = 0, 0, ""
  for _, t in ipairs(threads) do
    okc = okc + t:get("ok")
    badc = badc + t:get("bad")
    if fb == "" then fb = t:get("firstbad") end
  end
  fb = string.gsub(fb, '[^%w %p]', '?')
  fb = string.gsub(fb, '["\\]', "'")
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p90_us\": %d, " ..
    "\"p99_us\": %d, \"max_us\": %d, \"ok\": %d, \"bad\": %d, \"errors\": %d, " ..
    "\"firstbad\": \"%s\"}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, okc, badc,
    e.connect + e.read + e.write + e.timeout, fb))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def _run_measured(cmd: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd``; return its result and the CPU seconds (user + system) that it used.

    The CPU time comes from ``wait4`` on that one child, so no other child of the bench process
    (a server that exits, a client subprocess) can leak into it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(
            cmd,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    return result, usage.ru_utime + usage.ru_stime


def _summary(requests: int, duration_s: float, lat_s: list[float] | None = None, **kw) -> dict:
    out = {
        "requests": requests,
        "duration_s": duration_s,
        "rps": requests / duration_s if duration_s > 0 else 0.0,
    }
    out.update(kw)
    return out


def run_wrk(
    port: int,
    path: str,
    body: bytes,
    expected: bytes,
    connections: int,
    duration: float,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    contains: bool = False,
    cpus: set[int] | None = None,
) -> dict:
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    script = (
        _LUA.replace("@@BODY@@", body.decode())
        .replace("@@EXPECTED@@", expected.decode())
        .replace("@@CONTAINS@@", "true" if contains else "false")
        .replace("@@HEADERS@@\n", extra)
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        lua = f.name
    try:
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            lua,
            f"http://127.0.0.1:{port}{path}",
        ]
        if cpus:
            cmd = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd]
        out, cpu_s = _run_measured(cmd, timeout=duration + 60)
    finally:
        Path(lua).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed (rc={out.returncode}):\n{out.stdout}\n{out.stderr}")
    d = json.loads(line[len("BENCHJSON ") :])
    dur = d["duration_us"] / 1e6
    return _summary(
        d["requests"],
        dur,
        p50_ms=d["p50_us"] / 1e3,
        p90_ms=d["p90_us"] / 1e3,
        p99_ms=d["p99_us"] / 1e3,
        max_ms=d["max_us"] / 1e3,
        ok=d["ok"],
        bad=d["bad"] + d["errors"],
        first_bad=d["firstbad"],
        tool="wrk",
        connections=connections,
        loadgen_cpu_s=cpu_s,
        loadgen_cores=cpu_s / dur,
    )


# --- asyncio fallback --------------------------------------------------------------------------
async def _worker(
    port: int,
    req: bytes,
    expected: bytes,
    stop_at: float,
    lat: list[float],
    stats: dict,
    contains: bool = False,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    perf = time.perf_counter
    try:
        while perf() < stop_at:
            t0 = perf()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            i = head.lower().find(b"content-length:")
            if i < 0:
                raise RuntimeError("response without Content-Length")
            n = int(head[i + 15 : head.index(b"\r\n", i)])
            data = await reader.readexactly(n)
            lat.append(perf() - t0)
            if status == 200 and (expected in data if contains else data == expected):
                stats["ok"] += 1
            else:
                stats["bad"] += 1
                stats["first_bad"] = stats["first_bad"] or f"{status} {data[:120]!r}"
    except (OSError, asyncio.IncompleteReadError, RuntimeError) as e:
        stats["bad"] += 1
        stats["first_bad"] = stats["first_bad"] or repr(e)
    finally:
        writer.close()


async def _run_async(
    port, path, body, expected, connections, duration, headers=None, contains=False
):
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    req = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    lat: list[float] = []
    stats = {"ok": 0, "bad": 0, "first_bad": ""}
    c0 = time.process_time()
    t0 = time.perf_counter()
    stop_at = t0 + duration
    await asyncio.gather(
        *(_worker(port, req, expected, stop_at, lat, stats, contains) for _ in range(connections))
    )
    dur = time.perf_counter() - t0
    stats["loadgen_cpu_s"] = time.process_time() - c0
    stats["loadgen_cores"] = stats["loadgen_cpu_s"] / dur
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3 if lat else float("nan")

    return _summary(
        len(lat),
        dur,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=lat[-1] * 1e3 if lat else float("nan"),
        tool="asyncio",
        connections=connections,
        **stats,
    )


def run_asyncio(
    port: int,
    path: str,
    body: bytes,
    expected: bytes,
    connections: int,
    duration: float,
    headers: dict[str, str] | None = None,
    contains: bool = False,
    cpus: set[int] | None = None,
) -> dict:
    """The in-process client; ``cpus`` pins the bench process itself while it runs."""
    job = _run_async(port, path, body, expected, connections, duration, headers, contains)
    allowed = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            return asyncio.run(job)
        return uvloop.run(job)
    finally:
        if cpus:
            os.sched_setaffinity(0, allowed)


def run(
    port: int,
    path: str,
    body: bytes,
    expected: bytes,
    connections: int,
    duration: float,
    tool: str = "auto",
    headers: dict[str, str] | None = None,
    contains: bool = False,
    cpus: set[int] | None = None,
) -> dict:
    """``headers``: extra request headers (e.g. Authorization) sent with every request.

    ``contains``: a reply is good if it is 200 and its body contains ``expected`` (instead of
    being equal to it). ``cpus``: run the load generator on these CPUs only.

    The summary has ``requests``, ``duration_s``, ``rps``, latency percentiles, ``ok``/``bad``,
    ``connections`` and the load generator's own CPU (``loadgen_cpu_s``, ``loadgen_cores``).
    """
    if tool == "wrk" or (tool == "auto" and have_wrk()):
        # one wrk thread (one core at most) drives even 256 connections, and leaves the other
        # core to the servers
        return run_wrk(
            port,
            path,
            body,
            expected,
            connections,
            duration,
            headers=headers,
            contains=contains,
            cpus=cpus,
        )
    return run_asyncio(port, path, body, expected, connections, duration, headers, contains, cpus)
