"""PromQL helpers for the dashboard's JSON twins: every number a page shows comes from a query here.

A :class:`Window` is what a page asks about: the instant it shows (``time``, default now), the span of
its charts (``range``) and the chart step. :class:`Queries` runs PromQL on the app's engine at that
instant and hands back plain Python values; an empty answer is ``None`` (missing), never ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sightglass.api.envelope import APIError
from sightglass.config import parse_duration_ms
from sightglass.model import Matcher
from sightglass.promql.result import QueryError
from sightglass.timeutil import now_ms, parse_time_ms

RANGES = {"15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "24h": 86_400_000, "7d": 604_800_000}
MAX_RANGE_MS = 31 * 86_400_000
CHART_POINTS = 120  # points per chart line: enough for a laptop-wide chart, cheap to query


@dataclass(frozen=True, slots=True)
class Window:
    at_ms: int
    range_ms: int

    @property
    def start_ms(self) -> int:
        return self.at_ms - self.range_ms

    @property
    def step_ms(self) -> int:
        return max(10_000, self.range_ms // CHART_POINTS // 1000 * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {"at_ms": self.at_ms, "range_ms": self.range_ms, "step_ms": self.step_ms}


def parse_window(params: Mapping[str, str]) -> Window:
    """``time`` (RFC 3339, Unix seconds, ``now-1h``) and ``range`` (``1h`` or any duration)."""
    raw_t = params.get("time")
    try:
        at = parse_time_ms(raw_t) if raw_t else now_ms()
    except (ValueError, OverflowError) as e:
        raise APIError(f'invalid parameter "time": {e}') from None
    raw_r = params.get("range") or "1h"
    if raw_r in RANGES:
        rng = RANGES[raw_r]
    else:
        try:
            rng = parse_duration_ms(raw_r)
        except (ValueError, OverflowError) as e:
            raise APIError(f'invalid parameter "range": {e}') from None
    if rng <= 0 or rng > MAX_RANGE_MS:
        raise APIError(f'invalid parameter "range": {raw_r!r} must be between 1s and 31d')
    return Window(at, rng)


def host_of(labels: Mapping[str, str]) -> str:
    """The node a series is about: dcgm-exporter ``Hostname``/``hostname``, else ``instance``'s host."""
    h = labels.get("Hostname") or labels.get("hostname")
    if h:
        return h
    inst = labels.get("instance", "")
    return inst.rsplit(":", 1)[0] if ":" in inst else inst


def num(v: float | None) -> float | None:
    """JSON-safe number: NaN and infinities are missing."""
    if v is None or not math.isfinite(v):
        return None
    return float(v)


class Queries:
    """PromQL at one instant (``w.at_ms``) and over the window, on ``ctx.engine``."""

    def __init__(self, ctx: Any, w: Window) -> None:
        self.engine = ctx.engine
        self.store = ctx.store
        self.w = w
        self.ran: list[str] = []

    def _instant(self, promql: str) -> Any:
        self.ran.append(promql)
        try:
            return self.engine.instant(promql, self.w.at_ms)
        except QueryError as e:  # our own queries: a failure here is a bug, say which query
            raise APIError(f"dashboard query {promql!r} failed: {e}", "execution") from None

    def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        r = self._instant(promql)
        if r.result_type == "scalar":
            return [({}, r.scalar[1])] if r.scalar is not None else []
        return [(s.labels, s.value) for s in r.vector]

    def scalar(self, promql: str) -> float | None:
        """The single value of an aggregate, or None when nothing matched."""
        vec = self.vector(promql)
        return num(vec[0][1]) if vec else None

    def by(self, promql: str, *labels: str) -> dict[tuple[str, ...], float | None]:
        return {tuple(lab.get(k, "") for k in labels): num(v) for lab, v in self.vector(promql)}

    def by1(self, promql: str, label: str) -> dict[str, float | None]:
        return {k[0]: v for k, v in self.by(promql, label).items()}

    def range(self, promql: str, label: str | None = None) -> list[dict[str, Any]]:
        """Chart lines over the window: ``[{"name", "labels", "points": [[t_s, v|None], ...]}]``."""
        self.ran.append(promql)
        w = self.w
        try:
            r = self.engine.range(promql, w.start_ms, w.at_ms, w.step_ms)
        except QueryError as e:
            raise APIError(f"dashboard query {promql!r} failed: {e}", "execution") from None
        out = []
        for s in r.matrix:
            name = s.labels.get(label, "") if label else ", ".join(f"{k}={v}" for k, v in s.labels.items())
            pts = [[int(t) / 1000, num(float(v))] for t, v in zip(s.ts_ms, s.values, strict=True)]
            out.append({"name": name, "labels": s.labels, "points": pts})
        return out


def counter_rates(
    q: Queries, metric: str, window_ms: int, key: tuple[str, ...], *, per_second: bool = True
) -> dict[tuple[str, ...], float | None]:
    """Per-second rate of a counter over the window, per ``key`` labels, read from the store.

    The reset-adjusted increase between the first and last sample in ``(at - window, at]`` divided
    by their distance in time: for a counter growing steadily this is what PromQL's ``rate()``
    gives (it extrapolates the same increase to the window's edges), at a tenth of the engine's
    cost over thousands of series. A series with fewer than two samples has no rate (missing).
    ``per_second=False`` gives the increase itself (what happened, not extrapolated).
    """
    at = q.w.at_ms
    out: dict[tuple[str, ...], float | None] = {}
    for sd in q.store.select([Matcher("__name__", "=", metric)], at - window_ms + 1, at):
        ok = ~sd.stale
        v, t = sd.values[ok], sd.ts_ms[ok]
        if len(v) < 2 or t[-1] <= t[0] or sd.stale[-1]:
            continue
        d = v[1:] - v[:-1]
        inc = float(d[d >= 0].sum() + v[1:][d < 0].sum())  # a drop is a reset: count from zero
        lab = sd.key.label_dict()
        k = tuple(lab.get(x, "") for x in key)
        rate = inc / ((int(t[-1]) - int(t[0])) / 1000) if per_second else inc
        out[k] = (out.get(k) or 0.0) + rate
    return out


def latest(
    q: Queries, metric: str, window_ms: int, key: tuple[str, ...]
) -> dict[tuple[str, ...], float | None]:
    """The newest sample per ``key`` labels in ``(at - window, at]`` (PromQL ``last_over_time``)."""
    at = q.w.at_ms
    best: dict[tuple[str, ...], tuple[int, float]] = {}
    for sd in q.store.select([Matcher("__name__", "=", metric)], at - window_ms + 1, at):
        if sd.stale[-1]:
            continue
        lab = sd.key.label_dict()
        k = tuple(lab.get(x, "") for x in key)
        ts = int(sd.ts_ms[-1])
        if k not in best or ts > best[k][0]:
            best[k] = (ts, float(sd.values[-1]))
    return {k: num(v) for k, (_, v) in best.items()}
