"""PNG plots of how cost grows, both servers on the same axes (matplotlib, bench-only).

Drawn from the points that the workloads hand to ``ctx.point(figure, side, **values)``:

* ``connections``: requests/s, p99 latency and server CPU per request against concurrent
  connections;
* ``rows``: /evaluate latency against rows per request, with the in-process floor;
* ``arrow``: Arrow Flight round-trip time against rows;
* ``cores``: requests/s with the server pinned to 1 and to 2 cores.

matplotlib is optional (``pip install -e '.[bench]'``): without it the run still completes
and says that it drew nothing.
"""

from __future__ import annotations

from pathlib import Path

#: How each side is drawn, the same in every figure.
STYLE = {
    "ours": {"color": "tab:blue", "marker": "o", "label": "ours"},
    "reference": {"color": "tab:orange", "marker": "s", "label": "TabPy 2.16"},
}
SIDES = ("ours", "reference")

Points = dict[str, dict[str, list[dict]]]  # figure -> side -> points


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _plain_log_axis(plt, axis) -> None:
    """Ticks of a log axis as plain numbers (20, 50, 100), not as powers of ten."""
    fmt = plt.matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(plt.matplotlib.ticker.NullFormatter())


def _series(points: list[dict], x: str, *ys: str) -> tuple[list, ...]:
    ordered = sorted(points, key=lambda p: p[x])
    return tuple([p[k] for p in ordered] for k in (x, *ys))


def _errorbar_ms(ax, side: str, x: list, mid: list, lo: list, hi: list) -> None:
    """``mid`` (seconds) as a line in ms, with bars from ``lo`` to ``hi``."""
    below = [(m - a) * 1e3 for m, a in zip(mid, lo, strict=True)]
    above = [(b - m) * 1e3 for m, b in zip(mid, hi, strict=True)]
    ax.errorbar(x, [m * 1e3 for m in mid], yerr=[below, above], capsize=3, **STYLE[side])


def _connections(plt, data: dict[str, list[dict]], title: str):
    fig, (left, right, cpu) = plt.subplots(1, 3, figsize=(15, 4.2))
    for side in SIDES:
        if side not in data:
            continue
        x, rps, p99, us = _series(data[side], "connections", "rps", "p99_ms", "server_us_per_req")
        left.plot(x, rps, **STYLE[side])
        right.plot(x, p99, **STYLE[side])
        cpu.plot(x, us, **STYLE[side])
    for ax in (left, right, cpu):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p["connections"] for ps in data.values() for p in ps}))
        _plain_log_axis(plt, ax.xaxis)
        ax.set_xlabel("concurrent keep-alive connections")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    left.set_ylabel("requests/s (trivial /evaluate)")
    left.set_ylim(bottom=0)
    right.set_ylabel("p99 latency (ms)")
    right.set_yscale("log")
    _plain_log_axis(plt, right.yaxis)
    cpu.set_ylabel("server-process CPU per request (µs)")
    cpu.set_ylim(bottom=0)
    fig.suptitle(f"Throughput, p99 latency and server CPU per request against connections\n{title}")
    return fig


def _rows(plt, data: dict[str, list[dict]], title: str):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    floor = None
    for side in SIDES:
        if side not in data:
            continue
        x, med, lo, hi, fl = _series(data[side], "rows", "median_s", "min_s", "max_s", "floor_s")
        _errorbar_ms(ax, side, x, med, lo, hi)
        floor = (x, [v * 1e3 for v in fl])
    if floor:
        ax.plot(*floor, color="gray", linestyle="--", label="in-process floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_axis(plt, ax.yaxis)
    ax.set_xlabel("rows per request (two float columns)")
    ax.set_ylabel("latency (ms), median, bars: min-max")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"/evaluate latency against rows\n{title}", fontsize=10)
    return fig


def _arrow(plt, data: dict[str, list[dict]], title: str):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for side in SIDES:
        if side not in data:
            continue
        x, tot, lo, hi = _series(data[side], "rows", "total_s", "min_s", "max_s")
        _errorbar_ms(ax, side, x, tot, lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_axis(plt, ax.yaxis)
    ax.set_xlabel("rows (5 columns)")
    ax.set_ylabel("round trip (ms): put + evaluate + get, median, bars: min-max")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"Arrow Flight round trip against rows\n{title}", fontsize=10)
    return fig


def _cores(plt, data: dict[str, list[dict]], title: str):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ks = sorted({p["cores"] for ps in data.values() for p in ps})
    width = 0.38
    for i, side in enumerate(s for s in SIDES if s in data):
        by_k = {p["cores"]: p["rps"] for p in data[side]}
        xs = [j + (i - 0.5) * width for j in range(len(ks))]
        bars = ax.bar(xs, [by_k.get(k, 0) for k in ks], width, **_bar_style(side))
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(ks)), [f"{k} core{'s' if k > 1 else ''}" for k in ks])
    ax.set_ylabel("requests/s (trivial /evaluate, 16 conns)")
    ax.legend()
    ax.set_title(f"Throughput with the server tree pinned\n{title}", fontsize=10)
    return fig


def _bar_style(side: str) -> dict:
    return {"color": STYLE[side]["color"], "label": STYLE[side]["label"]}


FIGURES = {
    "connections": (
        "throughput, p99 latency and server CPU per request against connections",
        _connections,
    ),
    "rows": ("/evaluate latency against rows per request", _rows),
    "arrow": ("Arrow Flight round trip against rows", _arrow),
    "cores": ("throughput pinned to 1 and 2 cores", _cores),
}


def draw(points: Points, outdir: Path, prefix: str = "", title: str = "") -> list[tuple[Path, str]]:
    """Write one PNG per figure that has points; return (path, caption) pairs."""
    if not points or not available():
        return []
    plt = _pyplot()
    outdir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (caption, fn) in FIGURES.items():
        data = points.get(name)
        if not data:
            continue
        fig = fn(plt, data, title)
        fig.tight_layout()
        path = outdir / f"{prefix}{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append((path, caption))
    return out
