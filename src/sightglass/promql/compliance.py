"""Compare Sightglass' PromQL answers with a real Prometheus on the same data.

``python -m sightglass.promql.compliance`` generates a deterministic dataset (counters with resets,
gauges, classic histograms, series with gaps, series that stop and start), writes it as OpenMetrics,
builds TSDB blocks from it with ``promtool tsdb create-blocks-from openmetrics``, starts ``prometheus``
on them, loads the same samples into a fresh Sightglass store and runs every query of
:func:`queries` as instant queries at several times and as range queries against both. Results are
compared the way the prometheus/compliance tester does: series sorted by labels (unless the query
orders them), timestamps exact, values within a small relative tolerance, NaN equal to NaN, and two
errors count as agreement.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from sightglass.model import SampleBatch, SeriesKey
from sightglass.promql.engine import Engine, parse
from sightglass.promql.result import QueryError

T0_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z
INTERVAL_MS = 15_000
SAMPLES = 480  # two hours
REL_TOL = 1e-6
ABS_TOL = 1e-9
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf)
INSTANCES = ("i0", "i1", "i2")


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    ts_ms: np.ndarray
    values: np.ndarray


@dataclass
class Family:
    name: str
    type: str
    series: list[Series] = field(default_factory=list)


def _grid(start: int = 0, end: int = SAMPLES) -> np.ndarray:
    return T0_MS + np.arange(start, end, dtype=np.int64) * INTERVAL_MS


def _counter(rng: np.random.Generator, n: int, resets: tuple[int, ...] = ()) -> np.ndarray:
    inc = np.round(rng.gamma(2.0, 3.0, n), 3)
    vals = np.cumsum(inc) + 100
    for r in resets:
        vals[r:] -= vals[r] - np.round(rng.uniform(0, 5), 3)
    return np.round(vals, 3)


def dataset(seed: int = 7) -> list[Family]:
    """The deterministic test data: families in OpenMetrics order."""
    rng = np.random.default_rng(seed)
    fams: list[Family] = []

    req = Family("demo_requests", "counter")
    for inst in INSTANCES:
        for method in ("get", "post"):
            ts = _grid()
            if inst == "i2" and method == "post":  # scrape jitter
                ts = ts + rng.integers(-2000, 2000, len(ts))
            resets = (200, 350) if (inst, method) == ("i0", "get") else ((300,) if inst == "i1" else ())
            req.series.append(
                Series(
                    "demo_requests_total",
                    {"instance": inst, "method": method},
                    ts,
                    _counter(rng, len(ts), resets),
                )
            )
    fams.append(req)

    temp = Family("demo_cpu_temp_celsius", "gauge")
    for inst in INSTANCES:
        for core in ("0", "1"):
            vals = np.round(60 + np.cumsum(rng.normal(0, 0.5, SAMPLES)), 2)
            temp.series.append(Series(temp.name, {"instance": inst, "core": core}, _grid(), vals))
    fams.append(temp)

    signed = Family("demo_signed_value", "gauge")
    for inst in INSTANCES:
        vals = np.round(np.sin(np.arange(SAMPLES) / 17 + len(inst) + INSTANCES.index(inst)) * 3, 3)
        signed.series.append(Series(signed.name, {"instance": inst}, _grid(), vals))
    fams.append(signed)

    gappy = Family("demo_gappy_value", "gauge")
    for inst, gaps in (("i0", ((120, 180), (320, 360))), ("i1", ((40, 44),)), ("i2", ((0, 60),))):
        keep = np.ones(SAMPLES, dtype=bool)
        for a, b in gaps:
            keep[a:b] = False
        vals = np.round(rng.uniform(0, 100, SAMPLES), 2)
        gappy.series.append(Series(gappy.name, {"instance": inst}, _grid()[keep], vals[keep]))
    fams.append(gappy)

    stopping = Family("demo_stopping", "counter")
    for inst, end in (("i0", 240), ("i1", 360), ("i2", SAMPLES)):
        stopping.series.append(
            Series("demo_stopping_total", {"instance": inst}, _grid(0, end), _counter(rng, end))
        )
    fams.append(stopping)

    starting = Family("demo_starting_value", "gauge")
    for inst, begin in (("i0", 120), ("i1", 300)):
        vals = np.round(rng.uniform(-10, 10, SAMPLES - begin), 2)
        starting.series.append(Series(starting.name, {"instance": inst}, _grid(begin), vals))
    fams.append(starting)

    cpus = Family("demo_num_cpus", "gauge")
    info = Family("demo_instance_info", "gauge")
    for k, inst in enumerate(INSTANCES):
        cpus.series.append(
            Series(cpus.name, {"instance": inst}, _grid(), np.full(SAMPLES, float(4 * (k + 1))))
        )
        zone = "a" if k < 2 else "b"
        info.series.append(Series(info.name, {"instance": inst, "zone": zone}, _grid(), np.ones(SAMPLES)))
    fams += [cpus, info]

    hist = Family("demo_latency_seconds", "histogram")
    for inst in INSTANCES:
        obs = rng.poisson(20, SAMPLES).astype(np.float64)
        shares = rng.dirichlet(np.ones(len(BUCKETS)), SAMPLES)
        per_bucket = np.round(obs[:, None] * shares, 0)
        if inst == "i2":
            per_bucket[300] = 0
        cum = np.cumsum(np.cumsum(per_bucket, axis=1), axis=0)
        sums = np.cumsum(np.round(obs * rng.uniform(0.2, 0.8, SAMPLES), 3))
        if inst == "i2":  # a restart: everything drops back
            cum[300:] -= cum[300]
            sums[300:] -= sums[300]
        for j, le in enumerate(BUCKETS):
            le_s = "+Inf" if math.isinf(le) else repr(le)
            hist.series.append(
                Series(hist.name + "_bucket", {"instance": inst, "le": le_s}, _grid(), cum[:, j])
            )
        hist.series.append(Series(hist.name + "_sum", {"instance": inst}, _grid(), np.round(sums, 3)))
        hist.series.append(Series(hist.name + "_count", {"instance": inst}, _grid(), cum[:, -1].copy()))
    fams.append(hist)
    return fams


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def to_openmetrics(fams: list[Family]) -> str:
    lines = []
    for fam in fams:
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for s in fam.series:
            lab = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            for t, v in zip(s.ts_ms, s.values, strict=True):
                lines.append(f"{s.name}{{{lab}}} {_fmt(float(v))} {int(t) // 1000}.{int(t) % 1000:03d}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def to_batch(fams: list[Family]) -> SampleBatch:
    keys: list[SeriesKey] = []
    idx: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for fam in fams:
        for s in fam.series:
            idx.append(np.full(len(s.ts_ms), len(keys), dtype=np.int64))
            keys.append(SeriesKey.of(s.name, s.labels))
            ts.append(s.ts_ms.astype(np.int64))
            vals.append(s.values.astype(np.float64))
    return SampleBatch(keys, np.concatenate(idx), np.concatenate(ts), np.concatenate(vals))


def _m(minutes: float) -> int:
    return T0_MS + int(minutes * 60_000)


def queries() -> list[str]:
    """The compared expressions (instant and range)."""
    sel = [
        "demo_requests_total",
        'demo_requests_total{method="get"}',
        'demo_requests_total{method!="get"}',
        'demo_requests_total{instance=~"i[01]"}',
        'demo_requests_total{instance!~"i1|i2"}',
        '{__name__=~"demo_cpu.*"}',
        "demo_cpu_temp_celsius offset 5m",
        f"demo_cpu_temp_celsius @ {_m(20) / 1000:.3f}",
        "demo_cpu_temp_celsius @ start()",
        "demo_gappy_value",
        "demo_stopping_total",
        "demo_starting_value",
        "demo_latency_seconds_bucket",
        "-demo_signed_value",
    ]
    counters = ["demo_requests_total", "demo_stopping_total", "demo_latency_seconds_count"]
    rng_funcs = []
    for c in counters:
        for f in ("rate", "increase", "irate", "resets"):
            for r in ("1m", "5m"):
                rng_funcs.append(f"{f}({c}[{r}])")
    rng_funcs += [
        "rate(demo_requests_total[10m] offset 3m)",
        "rate(demo_requests_total[45s])",
        f"rate(demo_requests_total[5m] @ {_m(61) / 1000:.3f})",
        "increase(demo_requests_total[5m] @ end())",
        "delta(demo_cpu_temp_celsius[5m])",
        "delta(demo_gappy_value[2m])",
        "idelta(demo_cpu_temp_celsius[1m])",
        "deriv(demo_cpu_temp_celsius[5m])",
        "deriv(demo_requests_total[3m])",
        "predict_linear(demo_cpu_temp_celsius[10m], 600)",
        "predict_linear(demo_requests_total[5m] offset 2m, 300)",
        "changes(demo_gappy_value[10m])",
        "changes(demo_num_cpus[10m])",
        "resets(demo_signed_value[10m])",
    ]
    for f in ("avg", "min", "max", "sum", "count", "stddev", "stdvar", "last", "present"):
        rng_funcs.append(f"{f}_over_time(demo_cpu_temp_celsius[5m])")
        rng_funcs.append(f"{f}_over_time(demo_gappy_value[2m])")
    rng_funcs += [
        "quantile_over_time(0.9, demo_cpu_temp_celsius[5m])",
        "quantile_over_time(0.5, demo_gappy_value[10m])",
        "stddev_over_time(demo_num_cpus[5m])",
        'absent_over_time(demo_gappy_value{instance="i0"}[2m])',
        'absent_over_time(nonexistent_metric{job="x"}[5m])',
        "last_over_time(demo_stopping_total[10m])",
    ]
    aggs = []
    for a in ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"):
        aggs.append(f"{a} by (instance) (demo_cpu_temp_celsius)")
    aggs += [
        "sum(demo_cpu_temp_celsius)",
        "sum without (core) (demo_cpu_temp_celsius)",
        "avg without (instance, core) (demo_cpu_temp_celsius)",
        "sum by (instance) (rate(demo_requests_total[5m]))",
        "sum by (method) (increase(demo_requests_total[10m]))",
        "count(demo_gappy_value)",
        "topk(2, demo_cpu_temp_celsius)",
        "bottomk(2, demo_cpu_temp_celsius)",
        "topk by (instance) (1, demo_cpu_temp_celsius)",
        "bottomk(1, rate(demo_requests_total[5m]))",
        "quantile(0.75, demo_cpu_temp_celsius)",
        "quantile by (core) (0.1, demo_cpu_temp_celsius)",
        'count_values("cpus", demo_num_cpus)',
        'count_values without (instance) ("v", demo_num_cpus)',
        "sum by (le) (rate(demo_latency_seconds_bucket[5m]))",
        'max by (__name__) ({__name__=~"demo_(cpu_temp_celsius|signed_value)"})',
    ]
    hist = [
        "histogram_quantile(0.9, rate(demo_latency_seconds_bucket[5m]))",
        "histogram_quantile(0.5, sum by (le) (rate(demo_latency_seconds_bucket[5m])))",
        "histogram_quantile(0.99, sum by (le, instance) (increase(demo_latency_seconds_bucket[10m])))",
        "histogram_quantile(0.01, demo_latency_seconds_bucket)",
        "histogram_quantile(1.5, rate(demo_latency_seconds_bucket[5m]))",
        "histogram_quantile(-1, rate(demo_latency_seconds_bucket[5m]))",
        "rate(demo_latency_seconds_sum[5m]) / rate(demo_latency_seconds_count[5m])",
    ]
    binops = [
        "demo_cpu_temp_celsius * 2",
        "2 - demo_cpu_temp_celsius",
        "demo_cpu_temp_celsius > 60",
        "demo_cpu_temp_celsius > bool 60",
        "60 < demo_cpu_temp_celsius",
        "60 >= bool demo_cpu_temp_celsius",
        "demo_signed_value != 0",
        "demo_signed_value % 2",
        "demo_signed_value ^ 2",
        "2 ^ 3 ^ 2",
        "1 + 2 * 3 - 4 / 2",
        "5 % 3 > bool 1",
        "demo_requests_total / on(instance) group_left demo_num_cpus",
        "demo_num_cpus * on(instance) group_right demo_requests_total",
        "demo_cpu_temp_celsius + ignoring(core) group_left demo_num_cpus",
        "demo_num_cpus * on(instance) group_left(zone) demo_instance_info",
        'rate(demo_requests_total{method="get"}[5m])'
        ' / ignoring(method) rate(demo_requests_total{method="post"}[5m])',
        'demo_requests_total{method="get"} > on(instance) demo_requests_total{method="post"}',
        'demo_requests_total{method="get"} > bool ignoring(method) demo_requests_total{method="post"}',
        'demo_requests_total and demo_requests_total{method="get"}',
        "demo_requests_total and on(instance) demo_gappy_value",
        "demo_gappy_value or demo_signed_value",
        "demo_gappy_value or on(instance) demo_num_cpus",
        "demo_requests_total unless on(instance) demo_gappy_value",
        "demo_signed_value unless demo_signed_value < 0",
        "demo_cpu_temp_celsius + on(instance) demo_requests_total",
        "sum by (instance) (demo_cpu_temp_celsius) / on(instance) demo_num_cpus",
        "demo_num_cpus == 4",
        "demo_signed_value - demo_signed_value offset 1m",
    ]
    funcs = [
        "abs(demo_signed_value)",
        "ceil(demo_signed_value)",
        "floor(demo_signed_value)",
        "round(demo_signed_value)",
        "round(demo_cpu_temp_celsius, 0.5)",
        "sqrt(demo_cpu_temp_celsius)",
        "exp(demo_signed_value)",
        "ln(demo_cpu_temp_celsius)",
        "log2(demo_num_cpus)",
        "log10(demo_cpu_temp_celsius)",
        "sgn(demo_signed_value)",
        "clamp(demo_signed_value, -1, 1)",
        "clamp(demo_signed_value, 1, -1)",
        "clamp_min(demo_signed_value, 0)",
        "clamp_max(demo_signed_value, 0.5)",
        'label_replace(demo_cpu_temp_celsius, "host", "h-$1", "instance", "i(.*)")',
        'label_replace(demo_cpu_temp_celsius, "core", "", "core", "0")',
        'label_replace(demo_cpu_temp_celsius, "instance", "x", "", "")',
        'label_join(demo_cpu_temp_celsius, "id", "/", "instance", "core")',
        "sort(demo_cpu_temp_celsius)",
        "sort_desc(demo_cpu_temp_celsius)",
        "timestamp(demo_gappy_value)",
        "timestamp(demo_cpu_temp_celsius offset 1m)",
        "timestamp(sum(demo_cpu_temp_celsius))",
        "time()",
        "vector(7)",
        "vector(time())",
        "scalar(sum(demo_num_cpus))",
        "scalar(demo_num_cpus)",
        'demo_num_cpus * scalar(demo_num_cpus{instance="i0"})',
        'absent(nonexistent_metric{job="x", env="y"})',
        "absent(demo_cpu_temp_celsius)",
        'absent(demo_stopping_total{instance="i0"})',
        "day_of_week()",
        "day_of_month()",
        "days_in_month()",
        "hour()",
        "minute()",
        "month()",
        "year()",
        "hour(timestamp(demo_gappy_value))",
        "minute(demo_num_cpus * 1000)",
        "day_of_week(demo_num_cpus * 86400 * 3)",
        "hour(vector(1 / 0))",
        "year(vector(-1.5))",
        "day_of_year(demo_num_cpus * 1e15)",
        "minute(demo_signed_value / 0)",
    ]
    subq = [
        "max_over_time(rate(demo_requests_total[1m])[10m:1m])",
        "avg_over_time(demo_cpu_temp_celsius[5m:30s])",
        "rate(demo_requests_total[5m:1m])",
        "deriv(sum(demo_requests_total)[10m:])",
        "min_over_time(demo_cpu_temp_celsius[10m:2m] offset 3m)",
        "sum_over_time(vector(1)[5m:1m])",
        f"max_over_time(demo_gappy_value[10m:1m] @ {_m(40) / 1000:.3f})",
    ]
    edge = [
        "demo_signed_value atan2 demo_signed_value offset 1m",
        "demo_cpu_temp_celsius offset -2m",
        "max_over_time(deriv(rate(demo_requests_total[2m])[6m:1m])[10m:2m])",
        f"avg_over_time(rate(demo_requests_total[1m] @ {_m(50) / 1000:.3f})[5m:1m])",
        "sum by (instance) (rate(demo_requests_total[5m])) > bool 1",
        "-1 * demo_num_cpus",
        "count(count by (instance) (demo_cpu_temp_celsius))",
        "group by (zone) (demo_instance_info)",
        "stddev(demo_num_cpus)",
        "stdvar by (instance) (demo_num_cpus)",
        "quantile(0.5, demo_gappy_value)",
        "topk(1, demo_gappy_value)",
        "avg_over_time(demo_stopping_total[10m])",
        "irate(demo_gappy_value[5m])",
        "demo_num_cpus / 0",
        "0 / 0",
        "-demo_num_cpus % 3",
        "ln(demo_signed_value)",
        "sqrt(demo_signed_value)",
        "absent(sum(nonexistent_metric))",
        'label_replace(demo_num_cpus, "a", "$2-${1}x", "instance", "(i)(.)")',
        "timestamp(demo_cpu_temp_celsius @ start())",
        "hour(vector(1234567))",
        'histogram_quantile(0.5, demo_latency_seconds_bucket{le!="+Inf"})',
        "histogram_quantile(0.9, rate(demo_latency_seconds_bucket[30s]))",
        "demo_requests_total offset 1h",
        "rate(demo_stopping_total[5m])",
        "sum(rate(demo_stopping_total[5m]))",
        "count_over_time(demo_starting_value[30m])",
        "delta(demo_starting_value[10m])",
    ]
    return sel + rng_funcs + aggs + hist + binops + funcs + subq + edge


_GAUGES = (
    "demo_cpu_temp_celsius",
    "demo_signed_value",
    "demo_gappy_value",
    "demo_starting_value",
    "demo_num_cpus",
    'demo_cpu_temp_celsius{core="1"}',
    'demo_gappy_value{instance!="i1"}',
)
_COUNTERS = (
    "demo_requests_total",
    "demo_stopping_total",
    "demo_latency_seconds_count",
    "demo_latency_seconds_sum",
    'demo_requests_total{method="post"}',
)
_RANGES = ("30s", "1m", "2m", "5m", "7m30s", "10m", "1h")
_MODS = ("", " offset 1m", " offset 7m", " offset -30s")
_GAUGE_FUNCS = (
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
    "delta", "idelta", "deriv", "changes", "resets",
)  # fmt: skip
_COUNTER_FUNCS = ("rate", "irate", "increase", "resets", "changes")
_AGGS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar")
_GROUPINGS = ("", " by (instance)", " without (instance)", " by (core)", " without ()", " by (method)")
_BINOPS = ("+", "-", "*", "/", ">", "<", ">=", "==", "!=", "and", "or", "unless", "> bool", "%")


def generated_queries(n: int, seed: int = 1) -> list[str]:
    """``n`` random nestings of selectors, range functions, subqueries, aggregations and operators.

    ``topk``/``bottomk``/``sort`` are left out: on the many equal values of this data (counts,
    changes) which series wins a tie depends on Prometheus' heap, which is not part of its semantics.
    """
    import random

    rnd = random.Random(seed)

    def leaf() -> str:
        k = rnd.random()
        if k < 0.3:
            return rnd.choice(_GAUGES) + rnd.choice(_MODS)
        if k < 0.6:
            fn, sel = rnd.choice(_COUNTER_FUNCS), rnd.choice(_COUNTERS)
            return f"{fn}({sel}[{rnd.choice(_RANGES)}]{rnd.choice(_MODS)})"
        if k < 0.85:
            return (
                f"{rnd.choice(_GAUGE_FUNCS)}({rnd.choice(_GAUGES)}[{rnd.choice(_RANGES)}]{rnd.choice(_MODS)})"
            )
        rng, step = rnd.choice(("1m", "5m", "10m")), rnd.choice(("", "30s", "1m", "2m"))
        return f"{rnd.choice(_GAUGE_FUNCS)}({rnd.choice(_GAUGES)}[{rng}:{step}])"

    def expr(depth: int) -> str:
        k = rnd.random()
        if depth > 1 or k < 0.35:
            return leaf()
        if k < 0.65:
            return f"{rnd.choice(_AGGS)}{rnd.choice(_GROUPINGS)} ({expr(depth + 1)})"
        if k < 0.75:
            return f"quantile({rnd.choice((0, 0.25, 0.5, 0.9, 1))}, {expr(depth + 1)})"
        if k < 0.9:
            match = rnd.choice(("", "on(instance) ", "ignoring(core) "))
            return f"{expr(depth + 1)} {rnd.choice(_BINOPS)} {match}{expr(depth + 1)}"
        op, num = rnd.choice(("*", "+", ">", "<", "/")), rnd.choice(("2", "0.5", "60", "-1"))
        return f"{expr(depth + 1)} {op} {num}"

    wrappers = (
        "abs({})", "ceil({})", "sqrt({})", "ln({})", "exp({} / 100)", "clamp({}, -1, 50)", "clamp_min({}, 0)",
        "round({}, 0.1)", "sgn({})", "timestamp({})", "absent({})", "scalar({})", "vector(scalar({}))",
        'label_replace({}, "x", "$1", "instance", "i(.)")', "-({})", "{} * on(instance) group_left demo_num_cpus",
        "demo_num_cpus * on(instance) group_right {}", "{} / ignoring(core) group_left(zone) demo_instance_info",
        'count_values("v", round({}))', "hour({})", "{} atan2 2", "{} ^ 0.5",
        "{} > bool on(instance) group_left demo_num_cpus",
    )  # fmt: skip
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        q = expr(0)
        if rnd.random() < 0.3:
            q = rnd.choice(wrappers).format(q)
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


MATRIX_ONLY = [
    "demo_cpu_temp_celsius[1m]",
    "demo_requests_total[2m] offset 1m",
    "demo_gappy_value[1m]",
    "sum(demo_num_cpus)[5m:2m]",
]

INSTANT_TIMES = (_m(7.5), _m(33), _m(61), _m(64.75), _m(122))  # 64.75: 5m after demo_stopping i0 ends
RANGE = (_m(3), _m(128), 60_000)
RANGE_ODD = (_m(1) + 1234, _m(125), 37_000)


@dataclass
class Outcome:
    kind: str  # "instant" or "range"
    query: str
    at: str
    ok: bool
    unsupported: bool = False
    detail: str = ""


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= ABS_TOL + REL_TOL * max(abs(a), abs(b))


def _val(s: str) -> float:
    return float(s.replace("Inf", "inf"))


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def compare(expected: dict[str, Any], got: dict[str, Any], ordered: bool) -> str:
    """An empty string when the two ``data`` payloads agree, else what differs."""
    if expected["resultType"] != got["resultType"]:
        return f"result type {got['resultType']} != {expected['resultType']}"
    rt, er, gr = expected["resultType"], expected["result"], got["result"]
    if rt in ("scalar", "string"):
        if float(er[0]) != float(gr[0]):
            return f"timestamp {gr[0]} != {er[0]}"
        if rt == "string":
            return "" if er[1] == gr[1] else f"{gr[1]!r} != {er[1]!r}"
        return "" if _close(_val(er[1]), _val(gr[1])) else f"{gr[1]} != {er[1]}"
    if not ordered:
        er = sorted(er, key=lambda s: _key(s["metric"]))
        gr = sorted(gr, key=lambda s: _key(s["metric"]))
    if len(er) != len(gr):
        want = [s["metric"] for s in er]
        have = [s["metric"] for s in gr]
        return f"{len(gr)} series != {len(er)}; expected {want[:4]}, got {have[:4]}"
    for e, g in zip(er, gr, strict=True):
        if e["metric"] != g["metric"]:
            return f"labels {g['metric']} != {e['metric']}"
        ep = [e["value"]] if rt == "vector" else e["values"]
        gp = [g["value"]] if rt == "vector" else g["values"]
        if len(ep) != len(gp):
            ets = [p[0] for p in ep]
            gts = [p[0] for p in gp]
            missing = sorted(set(ets) - set(gts))[:3]
            extra = sorted(set(gts) - set(ets))[:3]
            return f"{e['metric']}: {len(gp)} points != {len(ep)} (missing {missing}, extra {extra})"
        for (et, ev), (gt, gv) in zip(ep, gp, strict=True):
            if float(et) != float(gt):
                return f"{e['metric']}: timestamp {gt} != {et}"
            if not _close(_val(ev), _val(gv)):
                return f"{e['metric']} @{et}: {gv} != {ev}"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prometheus(openmetrics: Path, workdir: Path, binary: str = "prometheus") -> Iterator[str]:
    """Build blocks with promtool and serve them with a real Prometheus; yields its base URL."""
    tsdb = workdir / "tsdb"
    promtool = shutil.which("promtool") or "promtool"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(tsdb)],
        check=True,
        capture_output=True,
    )
    cfg = workdir / "prometheus.yml"
    cfg.write_text("global:\n  evaluation_interval: 1m\n")
    port = _free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--storage.tsdb.path={tsdb}",
            f"--config.file={cfg}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
            "--query.lookback-delta=5m",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start; see {workdir / 'prometheus.log'}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _sightglass(engine: Engine, query: str, kind: str, args: tuple[int, ...]) -> dict[str, Any]:
    try:
        res = engine.instant(query, args[0]) if kind == "instant" else engine.range(query, *args)
    except QueryError as e:
        return {"status": "error", "errorType": e.error_type, "error": str(e)}
    except Exception as e:  # a crash is a difference, reported like one
        return {"status": "error", "errorType": "internal", "error": f"crash: {type(e).__name__}: {e}"}
    return {"status": "success", "data": res.to_api()}


def _prom(client: httpx.Client, url: str, query: str, kind: str, args: tuple[int, ...]) -> dict[str, Any]:
    if kind == "instant":
        params = {"query": query, "time": f"{args[0] / 1000:.3f}"}
        r = client.post(url + "/api/v1/query", data=params)
    else:
        params = {"query": query, "start": f"{args[0] / 1000:.3f}", "end": f"{args[1] / 1000:.3f}"}
        params["step"] = f"{args[2] / 1000:.3f}"
        r = client.post(url + "/api/v1/query_range", data=params)
    body: dict[str, Any] = r.json()
    return body


def run(
    workdir: Path, *, binary: str = "prometheus", verbose: bool = False, generated: int = 100, seed: int = 1
) -> list[Outcome]:
    """Run the whole comparison; returns one outcome per (query, time)."""
    from sightglass.store.duckdb import DuckDBStore, StoreOptions

    fams = dataset()
    om = workdir / "data.om"
    om.write_text(to_openmetrics(fams))
    outcomes: list[Outcome] = []
    with DuckDBStore(workdir / "sightglass", options=StoreOptions(compact_every_s=3600)) as store:
        store.append(to_batch(fams))
        engine = Engine(store)
        with prometheus(om, workdir, binary) as url, httpx.Client(timeout=30) as client:
            cases: list[tuple[str, str, tuple[int, ...]]] = []
            for q in queries():
                for t in INSTANT_TIMES:
                    cases.append((q, "instant", (t,)))
                cases.append((q, "range", RANGE))
            for q in queries()[::5]:
                cases.append((q, "range", RANGE_ODD))
            for i, q in enumerate(generated_queries(generated, seed)):
                cases.append((q, "instant", (INSTANT_TIMES[i % len(INSTANT_TIMES)],)))
                cases.append((q, "range", RANGE if i % 2 else RANGE_ODD))
            for q in MATRIX_ONLY:
                for t in INSTANT_TIMES[:3]:
                    cases.append((q, "instant", (t,)))
            for q, kind, args in cases:
                want = _prom(client, url, q, kind, args)
                got = _sightglass(engine, q, kind, args)
                at = ",".join(str((a - T0_MS) / 1000) if a > 10**12 else str(a / 1000) for a in args)
                oc = _judge(q, kind, at, want, got)
                outcomes.append(oc)
                if verbose and not oc.ok:
                    print(f"FAIL {kind} {q} [{at}]: {oc.detail}", file=sys.stderr)
    return outcomes


def _judge(q: str, kind: str, at: str, want: dict[str, Any], got: dict[str, Any]) -> Outcome:
    if want["status"] == "error" or got["status"] == "error":
        if want["status"] == got["status"]:
            return Outcome(kind, q, at, True, detail="both error")
        if got["status"] == "error" and "not supported" in got.get("error", ""):
            return Outcome(kind, q, at, False, unsupported=True, detail=got["error"])
        return Outcome(
            kind,
            q,
            at,
            False,
            detail=f"prometheus: {want.get('error', 'ok')} / sightglass: {got.get('error', 'ok')}",
        )
    ordered = kind == "instant" and _sorts(q)
    diff = compare(want["data"], got["data"], ordered)
    return Outcome(kind, q, at, not diff, detail=diff)


def _sorts(query: str) -> bool:
    """Whether the result order is part of the answer: a top-level ``sort``/``sort_desc``."""
    node = parse(query)
    while type(node).__name__ == "ParenExpr":
        node = node.expr
    return type(node).__name__ == "Call" and node.func.name in ("sort", "sort_desc")


def report(outcomes: list[Outcome]) -> str:
    passed = sum(o.ok for o in outcomes)
    unsupported = [o for o in outcomes if o.unsupported]
    failed = [o for o in outcomes if not o.ok and not o.unsupported]
    lines = [
        f"{passed}/{len(outcomes)} comparisons agree ({100 * passed / max(1, len(outcomes)):.1f} %), "
        f"{len({o.query for o in outcomes})} distinct queries; "
        f"{len(failed)} differ, {len(unsupported)} unsupported"
    ]
    for o in failed:
        lines.append(f"  DIFF {o.kind:7s} {o.query}  [{o.at}]  {o.detail}")
    for q in sorted({o.query for o in unsupported}):
        lines.append(f"  UNSUPPORTED {q}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--keep", help="keep the working directory here")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--generated", type=int, default=100, help="random queries added to the fixed set")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random queries")
    args = ap.parse_args(argv)
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
        outcomes = run(
            work, binary=args.prometheus, verbose=args.verbose, generated=args.generated, seed=args.seed
        )
    else:
        with tempfile.TemporaryDirectory(prefix="sightglass-compliance-") as d:
            outcomes = run(
                Path(d),
                binary=args.prometheus,
                verbose=args.verbose,
                generated=args.generated,
                seed=args.seed,
            )
    print(report(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
