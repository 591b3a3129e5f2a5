"""Workload registry and result rows.

A workload is a function `fn(ctx) -> None` registered with `@workload(...)`. It talks to
`ctx.servers["ours"]` and `ctx.servers["reference"]` (both `servers.Server`, already started and
warmed up) and reports with `ctx.row(...)` / `ctx.note(...)`.

`profile` is a dict of extra `[TabPy]` settings: workloads with the same profile share one pair of
servers; a workload with a different profile gets its own freshly started pair (e.g. `runaway`
needs TABPY_EVALUATE_TIMEOUT = 1). Within a pair, workloads run in ascending `order`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Workload:
    name: str
    fn: Callable
    doc: str
    order: int
    profile: dict[str, str] = field(default_factory=dict)

    @property
    def profile_key(self) -> tuple:
        return tuple(sorted(self.profile.items()))


WORKLOADS: dict[str, Workload] = {}


def workload(name: str, *, order: int, profile: dict[str, str] | None = None):
    def deco(fn):
        WORKLOADS[name] = Workload(
            name,
            fn,
            (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "",
            order,
            dict(profile or {}),
        )
        return fn

    return deco


@dataclass
class Row:
    workload: str
    metric: str
    ours: str
    reference: str
    ratio: float | None = None  # ours / reference (or ours / baseline, see metric)
    target: str = ""
    met: bool | None = None  # None = informational


def fmt_ratio(r: float | None) -> str:
    if r is None or r != r:
        return "-"
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


def fmt_met(m: bool | None) -> str:
    return "-" if m is None else ("yes" if m else "NO")
