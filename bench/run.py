#!/usr/bin/env python
"""Side-by-side benchmark: our tabpy vs the reference TabPy 2.16.0.

    python bench/run.py [--only NAME ...] [--quick] [--record]

See bench/README.md. Run it with the project's venv python (it is also the interpreter used to
build the reference venv and to run our server).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import plots  # noqa: E402
import refvenv  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402,F401  (registers the workloads)
import workloads_arrow  # noqa: E402,F401  (registers the Arrow Flight round trip)
import workloads_auth  # noqa: E402,F401  (registers the authenticated workloads)
import workloads_authz  # noqa: E402,F401  (registers authz-overhead: TABPY_AUTHZ on vs off)
import workloads_query  # noqa: E402,F401  (registers /query, tabpy.query, deploy)
import workloads_scaling  # noqa: E402,F401  (registers connections, cores, rows)
from registry import WORKLOADS, Row, fmt_met, fmt_ratio  # noqa: E402

# [TabPy] settings for every pair; a workload's profile is applied on top.
# The generous timeout keeps the reference from answering 408 on the 1M-row workload.
BASE_SETTINGS = {"TABPY_EVALUATE_TIMEOUT": "300"}
# Profile keys for the harness itself, not [TabPy] settings: "@logging" is one of
# servers.LOGGING_MODES (default "warning": both servers log at WARNING).
HARNESS_KEYS = {"@logging": "warning"}
REF_READY_TIMEOUT = 90.0
BUSY_WARN = 0.25  # cores busy with other processes before/after the run -> warn about noise


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Ctx:
    """What a workload gets: the running pair, options, and a place to put results."""

    def __init__(self, name: str, pair: dict, args, rows: list, notes: list, points: dict):
        self.name, self.servers = name, pair
        self.quick, self.loadgen = args.quick, args.loadgen
        self._rows, self._notes, self._points = rows, notes, points

    def point(self, figure: str, side: str, **values) -> None:
        """One point for ``plots.py`` (figure name, "ours" or "reference", named values)."""
        self._points.setdefault(figure, {}).setdefault(side, []).append(values)

    def row(self, metric, ours, reference, ratio=None, target="info", met=None):
        self._rows.append(Row(self.name, metric, ours, reference, ratio, target, met))

    def note(self, text: str) -> None:
        log(text)
        self._notes.append(text)


# --- server pairs ------------------------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TABPY_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }


def _ref_server(
    label, workdir, port, settings, ref_info, ref_venv, logging="warning"
) -> servers.Server:
    state = workdir / "state"
    state.mkdir()
    cfg = workdir / "tabpy.conf"
    servers.write_ref_config(
        ref_info["pkg_dir"] / "tabpy_server" / "common" / "default.conf",
        cfg,
        workdir,
        {
            "TABPY_PORT": str(port),
            "TABPY_STATE_PATH": str(state),
            "TABPY_QUERY_OBJECT_PATH": str(workdir / "query_objects"),
            **settings,
        },
        logging,
    )
    cmd = [str(ref_venv / "bin" / "tabpy"), "--config", str(cfg), "--disable-auth-warning"]
    return servers.Server(label, "reference", cmd, workdir, port, _clean_env())


def _ours_server(args, workdir, port, settings, ref_info, logging="warning") -> servers.Server:
    if args.ours_cmd == "ref":  # debug: run the reference on the "ours" side too
        return _ref_server("ours", workdir, port, settings, ref_info, args.ref_venv, logging)
    state = workdir / "state"
    state.mkdir()
    cfg = workdir / "tabpy.conf"
    servers.write_ours_config(
        cfg, {"TABPY_PORT": str(port), "TABPY_STATE_PATH": str(state), **settings}, workdir, logging
    )
    if args.ours_cmd:
        cmd = [a.format(config=cfg, port=port) for a in shlex.split(args.ours_cmd)]
    else:
        cmd = [
            args.ours_python,
            "-m",
            "tabpy.cli.server",
            "--config",
            str(cfg),
            "--disable-auth-warning",
        ]
    env = _clean_env()
    # benchmark the snapshot of the working tree (or the live tree), even if not pip-installed
    env["PYTHONPATH"] = str(args.ours_src)
    return servers.Server("ours", "ours", cmd, workdir, port, env)


def start_pair(args, rundir: Path, tag: str, settings: dict, ref_info: dict, started: list) -> dict:
    """Start both servers with ``settings`` ([TabPy] keys, plus the HARNESS_KEYS)."""
    settings = dict(settings)
    logging = settings.pop("@logging", HARNESS_KEYS["@logging"])
    ports: set[int] = set()

    def port():
        while (p := servers.free_port()) in ports:
            pass
        ports.add(p)
        return p

    ref_dir, ours_dir = rundir / f"{tag}-reference", rundir / f"{tag}-ours"
    ref_dir.mkdir(parents=True)
    ours_dir.mkdir(parents=True)
    pair = {
        "reference": _ref_server(
            "reference", ref_dir, port(), settings, ref_info, args.ref_venv, logging
        ),
        "ours": _ours_server(args, ours_dir, port(), settings, ref_info, logging),
    }
    for side, srv in pair.items():
        log(f"starting {side} on port {srv.port}: {shlex.join(srv.cmd)}")
        srv.start()
        started.append(srv)
    try:
        pair["reference"].wait_ready(REF_READY_TIMEOUT)
        pair["ours"].wait_ready(args.ready_timeout)
    except servers.ServerError:
        for srv in pair.values():
            srv.stop()
        raise
    log(
        f"ready: reference {pair['reference'].startup_s:.1f}s, ours {pair['ours'].startup_s:.1f}s "
        "(process start to first 200 from /evaluate)"
    )
    return pair


# --- reporting ---------------------------------------------------------------------------------
HEAD = ("workload", "metric", "ours", "reference", "ratio", "target", "met?")


def _cells(r: Row) -> tuple[str, ...]:
    return (r.workload, r.metric, r.ours, r.reference, fmt_ratio(r.ratio), r.target, fmt_met(r.met))


def text_table(rows: list[Row]) -> str:
    data = [HEAD] + [_cells(r) for r in rows]
    w = [max(len(row[i]) for row in data) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in data]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def md_table(rows: list[Row]) -> str:
    def esc(s):
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(out)


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "mem": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "tabpy"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + (" + uncommitted changes in tabpy/" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def snapshot_tree(dest: Path) -> str:
    """Copy REPO/tabpy to dest/tabpy; return a short digest of its .py files' content."""
    shutil.copytree(
        REPO / "tabpy", dest / "tabpy", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    h = hashlib.sha256()
    for p in sorted((dest / "tabpy").rglob("*.py")):
        h.update(str(p.relative_to(dest)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def describe_ours(args) -> str:
    if args.ours_cmd == "ref":
        return "reference TabPy (--ours-cmd ref, harness self-test)"
    if args.ours_cmd:
        return f"`{args.ours_cmd}`"
    where = (
        f"snapshot of tabpy/ taken at start, sha256 of its .py files {args.ours_digest}"
        if args.ours_digest
        else "live working tree (--live-tree)"
    )
    return f"git {git_rev()} ({where})"


def _portable(text: str) -> str:
    """``text`` without this machine's paths: RESULTS.md is shared, its readers' paths differ."""
    return text.replace(sys.executable, "python").replace(f"{REPO}/", "").replace(str(REPO), ".")


def draw_plots(args, points, rundir: Path, started_at, background) -> list[tuple[Path, str]]:
    """PNGs into bench/plots/ with --record, into the work dir with --keep, else none."""
    if not points or not (args.record or args.keep):
        return []
    if not plots.available():
        log("matplotlib is not installed (pip install -e '.[bench]'): no plots drawn")
        return []
    outdir = BENCH / "plots" if args.record else rundir / "plots"
    title = (
        f"{started_at:%Y-%m-%d %H:%M} UTC{', --quick' if args.quick else ''}; "
        f"{background:.2f} cores busy elsewhere before the run"
    )
    drawn = plots.draw(points, outdir, prefix=f"{started_at:%Y%m%d-%H%M%S}-", title=title)
    for path, _ in drawn:
        log(f"plot: {path}")
    return drawn


def record(args, argv, rows, notes, errors, ref_info, started_at, interrupted, drawn=()) -> None:
    m = machine_info()
    cmd = shlex.join(["python", "bench/run.py", *argv])
    tool = (
        loadgen.wrk_version()
        if args.loadgen != "asyncio" and loadgen.have_wrk()
        else "asyncio raw-socket client"
    )
    ours = args.ours_desc
    parts = [
        f"\n## {started_at:%Y-%m-%d %H:%M:%S} UTC{' (--quick)' if args.quick else ''}"
        f"{' (INTERRUPTED)' if interrupted else ''}\n",
        f"Command: `{cmd}`\n",
        f"- Machine: nproc={m['nproc']}, CPU: {m['cpu']}, RAM {m['mem']}, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- Reference: tabpy {ref_info['version']} in {args.ref_venv}; ours: {ours}",
        f"- Load generator (throughput workloads): {tool}",
        "- Logging: both servers at WARNING through the same config logging sections, except "
        "in `trivial-default-logging` (each server's own default)\n",
        md_table(rows),
        "",
    ]
    if drawn:
        parts += [
            *(f"![{caption}]({path.relative_to(BENCH).as_posix()})" for path, caption in drawn),
            "",
        ]
    if errors:
        parts += ["Errors and warnings:", *(f"- {e}" for e in errors), ""]
    if notes:
        parts += [
            "<details><summary>details</summary>\n",
            *(f"- {n}" for n in notes),
            "\n</details>",
            "",
        ]
    path = BENCH / "RESULTS.md"
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\nAppended by `bench/run.py` (see bench/README.md). "
            "Ratios are ours / reference.\n"
        )
    with path.open("a") as f:
        f.write(_portable("\n".join(parts)))
    log(f"appended results to {path}")


# --- main --------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=sorted(WORKLOADS),
        help="run only these workloads: " + ", ".join(sorted(WORKLOADS)),
    )
    p.add_argument("--quick", action="store_true", help="shorter durations, fewer repetitions")
    p.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    # The old opt-out, now the default; still accepted so existing command lines keep working.
    p.add_argument("--no-record", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--ref-venv",
        type=Path,
        default=BENCH / ".ref-venv",
        help="reference virtualenv (created if missing/invalid)",
    )
    p.add_argument(
        "--ours-python",
        default=sys.executable,
        help="interpreter for `-m tabpy.cli.server` (default: this one)",
    )
    p.add_argument(
        "--ours-cmd",
        default=None,
        help="debug: command for the 'ours' side ({config} and {port} are substituted);"
        "\n'ref' runs the reference server on both sides (harness self-test)",
    )
    p.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="load generator of the throughput workloads (auto: wrk if installed)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for our server to answer /evaluate (default 180)",
    )
    p.add_argument(
        "--live-tree",
        action="store_true",
        help="run our server from the live working tree instead of a snapshot of tabpy/\n"
        "copied at start (the snapshot keeps concurrent edits out of a run)",
    )
    p.add_argument("--keep", action="store_true", help="keep bench/.work/<run> (configs, logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.ref_venv = args.ref_venv.resolve()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started_at = dt.datetime.now(dt.timezone.utc)
    selected = sorted((WORKLOADS[n] for n in (args.only or WORKLOADS)), key=lambda w: w.order)
    ref_info = refvenv.ensure(args.ref_venv, log=log)
    if args.loadgen != "asyncio" and not loadgen.have_wrk():
        log("wrk not found (apt-get install -y wrk); using the asyncio load generator")

    groups: dict[tuple, list] = {}
    for w in selected:
        groups.setdefault(w.profile_key, []).append(w)

    rundir = BENCH / ".work" / f"run-{started_at:%Y%m%d-%H%M%S}-{os.getpid()}"
    args.ours_src, args.ours_digest = REPO, None
    if not args.live_tree and not args.ours_cmd:
        args.ours_src = rundir / "src"
        args.ours_digest = snapshot_tree(args.ours_src)
    args.ours_desc = describe_ours(args)
    log(f"ours: {args.ours_desc}")
    rows: list[Row] = []
    points: dict = {}  # figure -> side -> points, for plots.py
    notes: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    started: list[servers.Server] = []
    interrupted = False
    background = background_before = servers.system_busy_cores()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"background CPU load before starting the servers: {background:.2f} cores busy")
    notes.append(
        f"background CPU busy (no servers running) before: {background:.2f} cores; "
        f"load average {load}"
    )
    if background > BUSY_WARN:
        msg = f"machine was busy before the run ({background:.2f} cores used by other "
        msg += "processes): numbers are noisy"
        warnings.append(msg)
        log("WARNING: " + msg)
    try:
        for gi, (key, wls) in enumerate(groups.items()):
            settings = {**BASE_SETTINGS, **dict(key)}
            tag = f"pair{gi}"
            log(f"== {tag}: {', '.join(w.name for w in wls)} with {settings}")
            try:
                pair = start_pair(args, rundir, tag, settings, ref_info, started)
            except servers.ServerError as e:
                errors.append(f"{tag} ({', '.join(w.name for w in wls)}): {e}".splitlines()[0])
                log(str(e))
                for w in wls:
                    rows.append(Row(w.name, "ERROR", "-", "-", None, "", False))
                continue
            if len(groups) == 1 or gi == 0:
                notes.append(
                    f"start-up to first /evaluate 200: reference "
                    f"{pair['reference'].startup_s:.1f}s, "
                    f"ours {pair['ours'].startup_s:.1f}s"
                )
            for w in wls:
                log(f"-- {w.name}: {w.doc}")
                n_rows = len(rows)
                try:
                    w.fn(Ctx(w.name, pair, args, rows, notes, points))
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    del rows[n_rows:]
                    rows.append(Row(w.name, "ERROR", "-", "-", None, "", False))
                    errors.append(f"{w.name}: {type(e).__name__}: {e}")
                    for side, srv in pair.items():
                        if not srv.alive() and srv.proc.returncode is not None:
                            errors.append(f"{side} server died (exit {srv.proc.returncode})")
            for srv in pair.values():
                srv.stop()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; stopping servers")
    finally:
        for srv in started:
            try:
                srv.stop()
            except Exception:  # noqa: BLE001
                traceback.print_exc()

    if not interrupted:
        background = servers.system_busy_cores()
        log(f"background CPU load after stopping the servers: {background:.2f} cores busy")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        notes.append(
            f"background CPU busy (no servers running) after: {background:.2f} cores; "
            f"load average {load}"
        )
        if background > BUSY_WARN:
            warnings.append(
                f"machine was busy after the run ({background:.2f} cores used by "
                "other processes): numbers are noisy"
            )
    print()
    print(text_table(rows))
    if errors:
        print("\nErrors:\n" + "\n".join(f"  - {e}" for e in errors))
    for w in warnings:
        print(f"WARNING: {w}")
    try:
        drawn = draw_plots(args, points, rundir, started_at, background_before)
    except Exception as e:  # noqa: BLE001  (a plot must not lose the run's numbers)
        traceback.print_exc()
        errors.append(f"plots: {type(e).__name__}: {e}")
        drawn = []
    if args.record and rows:
        record(
            args,
            argv,
            rows,
            notes,
            errors + [f"warning: {w}" for w in warnings],
            ref_info,
            started_at,
            interrupted,
            drawn,
        )
    if args.keep or errors:
        log(f"work dir kept: {rundir}")
    else:
        shutil.rmtree(rundir, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
