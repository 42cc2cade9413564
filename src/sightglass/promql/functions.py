"""PromQL functions, vectorised over all steps (Prometheus 2.42 semantics).

Range-vector functions get each window as ``[lo, hi)`` sample indices per (series, step). The ones that
only need the first/last sample, a count or a sum use those indices directly; the rest gather the
windows into a padded ``(series, steps, max window)`` block, a few series at a time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from sightglass.promql.result import QueryError
from sightglass.promql.values import NAME, LabelSet, RangeVector, Vector, drop_name, merge_same_labels

GATHER_BUDGET = 4_000_000  # elements per gathered block


def _gather(
    rv: RangeVector,
    lo: np.ndarray,
    hi: np.ndarray,
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Apply ``fn(values, times, valid)`` to padded windows; returns ``(series, steps)``."""
    n = hi - lo
    out = np.full(lo.shape, np.nan)
    maxn = int(n.max()) if n.size else 0
    if maxn == 0:
        return out
    steps = lo.shape[1]
    rows_per = max(1, GATHER_BUDGET // max(1, steps * maxn))
    ar = np.arange(maxn)
    last = len(rv.data.v) - 1
    for a in range(0, lo.shape[0], rows_per):
        b = min(lo.shape[0], a + rows_per)
        idx = lo[a:b, :, None] + ar
        valid = ar < n[a:b, :, None]
        idx = np.minimum(idx, max(last, 0))
        vals = rv.data.v[idx]
        ts = rv.data.t[idx]
        out[a:b] = fn(vals, ts, valid)
    return out


SEQUENTIAL_BUDGET = 400_000_000  # (window length x series x steps) for the sample-by-sample path


def _kahan(inc: np.ndarray, s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' ``kahanSumInc`` (Neumaier's variant), elementwise."""
    t = s + inc
    c = c + np.where(np.abs(s) >= np.abs(inc), (s - t) + inc, (inc - t) + s)
    return t, c


def _variance(v: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
    c = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, v, 0.0).sum(axis=-1) / c
        return np.asarray(np.where(ok, (v - mean[..., None]) ** 2, 0.0).sum(axis=-1) / c)


def _sequential(rv: RangeVector, lo: np.ndarray, n: np.ndarray, name: str) -> np.ndarray:
    """sum/avg/stddev/stdvar_over_time sample by sample, as Prometheus 2.42 accumulates them.

    The loop runs over positions inside the windows, each step over all (series, step) windows at
    once, with the same floating-point operations in the same order as Prometheus (Kahan-compensated
    sums, an incremental mean, Welford's variance), so the results are bit-identical.
    """
    v = rv.data.v
    top = max(len(v) - 1, 0)
    zeros = np.zeros(lo.shape)
    s, c = zeros.copy(), zeros.copy()  # sum / mean and its compensation
    aux, caux = zeros.copy(), zeros.copy()
    count = zeros.copy()
    with np.errstate(all="ignore"):
        for j in range(int(n.max(initial=0))):
            ok = j < n
            x = v[np.minimum(lo + j, top)]
            if name == "sum_over_time":
                t, c2 = _kahan(x, s, c)
                s, c = np.where(ok, t, s), np.where(ok, c2, c)
                continue
            count = count + ok
            if name == "avg_over_time":
                skip = np.isinf(s) & ((np.isinf(x) & ((s > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x)))
                t, c2 = _kahan(x / count - s / count, s, c)
                upd = ok & ~skip
                s, c = np.where(upd, t, s), np.where(upd, c2, c)
                continue
            delta = x - (s + c)
            t, c2 = _kahan(delta / count, s, c)
            s, c = np.where(ok, t, s), np.where(ok, c2, c)
            a2, ca2 = _kahan(delta * (x - (s + c)), aux, caux)
            aux, caux = np.where(ok, a2, aux), np.where(ok, ca2, caux)
        if name in ("sum_over_time", "avg_over_time"):
            return np.where(np.isinf(s), s, s + c)
        var = (aux + caux) / count
        return np.sqrt(var) if name == "stddev_over_time" else var


def _same_sign(v: np.ndarray) -> bool:
    """All values finite and none of opposite signs (zeros allowed)."""
    if not len(v):
        return True
    with np.errstate(invalid="ignore"):
        lo, hi = float(np.min(v)), float(np.max(v))
    return math.isfinite(lo) and math.isfinite(hi) and (lo >= 0 or hi <= 0)


def _plain_window_sum(rv: RangeVector, lo: np.ndarray, n: np.ndarray, mean: bool) -> np.ndarray:
    """Window sums (or means) with plain additions, for finite values of one sign.

    Prometheus 2.42 adds with Kahan compensation (and averages incrementally). Without cancellation,
    a plain sum of ``k`` terms is within ``k`` ulps of the exact sum, and so is Prometheus' result, so
    both agree to ~1e-15 relative, far inside the compliance tolerance, at a fraction of the cost.
    With mixed signs, infinities or NaN this is not guaranteed and the exact path runs instead.
    """
    if not lo.size:
        return np.zeros(lo.shape)
    # one reduceat over [lo0, hi0, lo1, hi1, ...]: the even slots are the windows' sums (the odd
    # ones sum the gaps between windows and are dropped); an empty window yields one stray value
    v = np.append(rv.data.v, 0.0)
    idx = np.empty(2 * lo.size, dtype=np.int64)
    idx[0::2] = lo.ravel()
    idx[1::2] = (lo + n).ravel()
    s = np.add.reduceat(v, idx)[0::2].reshape(lo.shape)
    s[n == 0] = 0.0
    if mean:
        with np.errstate(invalid="ignore", divide="ignore"):
            s /= n
    return s


def _regression_sequential(
    rv: RangeVector, lo: np.ndarray, n: np.ndarray, x0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' ``linearRegression`` sample by sample (Kahan sums, constant-series shortcut)."""
    v, t = rv.data.v, rv.data.t
    top = max(len(v) - 1, 0)
    z = np.zeros(lo.shape)
    cnt, sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (z.copy() for _ in range(9))
    init_y = v[np.minimum(lo, top)]
    const_y = np.ones(lo.shape, dtype=bool)
    with np.errstate(all="ignore"):
        for j in range(int(n.max(initial=0))):
            ok = j < n
            i = np.minimum(lo + j, top)
            y = v[i]
            x = (t[i] - x0).astype(np.float64) / 1e3
            if j:
                const_y &= ~ok | (y == init_y)
            cnt = cnt + ok
            a, b = _kahan(x, sx, cx)
            sx, cx = np.where(ok, a, sx), np.where(ok, b, cx)
            a, b = _kahan(y, sy, cy)
            sy, cy = np.where(ok, a, sy), np.where(ok, b, cy)
            a, b = _kahan(x * y, sxy, cxy)
            sxy, cxy = np.where(ok, a, sxy), np.where(ok, b, cxy)
            a, b = _kahan(x * x, sx2, cx2)
            sx2, cx2 = np.where(ok, a, sx2), np.where(ok, b, cx2)
        sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
        cov = sxy - sx * sy / cnt
        var = sx2 - sx * sx / cnt
        slope = cov / var
        intercept = sy / cnt - slope * sx / cnt
    inf_const = const_y & np.isinf(init_y)
    slope = np.where(const_y, np.where(inf_const, np.nan, 0.0), slope)
    intercept = np.where(const_y, np.where(inf_const, np.nan, init_y), intercept)
    return slope, intercept


def _window_sums(rv: RangeVector, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of ``x`` over each window ``[lo, hi)``, from per-series prefix sums.

    Prefix sums restart at every series, so one series' magnitude never costs another precision.
    Series ``i``'s prefix for sample ``k`` sits at ``k + i + 1``, with a zero at ``off[i] + i``.
    """
    off = rv.data.off
    cs = np.zeros(len(x) + len(off) - 1)
    for i in range(len(off) - 1):
        a, b = int(off[i]), int(off[i + 1])
        cs[a + i + 1 : b + i + 1] = np.cumsum(x[a:b])
    shift = np.arange(lo.shape[0], dtype=np.int64)[:, None]
    return np.asarray(cs[hi + shift] - cs[lo + shift])


def _out(rv: RangeVector, values: np.ndarray, mask: np.ndarray, keep_name: bool = False) -> Vector:
    if rv.full_labels:
        return Vector(list(rv.data.labels), values, mask)
    labels = rv.data.labels if keep_name else [drop_name(lab) for lab in rv.data.labels]
    vec = Vector(list(labels), values, mask).compact()
    if keep_name or len({lab.get(NAME) for lab in rv.data.labels}) <= 1:
        return vec  # distinct series of one metric stay distinct without their name: nothing to merge
    return merge_same_labels(vec)


def _first_last(rv: RangeVector, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """First and last value and time of each window ``[lo, hi)`` of ``rv.windows()``. Where a window
    is empty the entries are some sample's (the indices clipped into the data): callers mask them."""
    if not len(rv.data.v):
        z = np.zeros(lo.shape)
        return z, z, lo * 0, lo * 0
    li = hi - 1
    v, t = rv.data.v, rv.data.t
    # take(mode="clip") clips the indices as it gathers, without a clipped copy of them
    fv, lv = v.take(lo, mode="clip"), v.take(li, mode="clip")
    groups = rv.data._groups if rv.data._grouped else None
    if groups is None:
        return fv, lv, t.take(lo, mode="clip"), t.take(li, mode="clip")
    # series with the very same times have their windows at the same places, so the same first
    # and last times (in every non-empty window): gather them for one series of each group
    reps, of = groups
    return fv, lv, t.take(lo[reps], mode="clip")[of], t.take(li[reps], mode="clip")[of]


def _extrapolated(rv: RangeVector, is_counter: bool, is_rate: bool) -> Vector:
    lo, hi = rv.windows()
    n = hi - lo
    mask = n >= 2
    if not mask.any():
        return Vector.empty(lo.shape[1])
    v = rv.data.v
    fv, lv, ft, lt = _first_last(rv, lo, hi)
    result = lv - fv
    if is_counter:
        # counter resets inside the window: add the value before each drop, one after the other
        at = np.flatnonzero(v[1:] < v[:-1]) + 1
        if len(at):  # not across series: a series' first sample is no drop
            at = at[~np.isin(at, rv.data.off[1:-1])]
        if len(at):
            a = np.searchsorted(at, lo + 1)  # drops k with lo < k < hi
            b = np.searchsorted(at, hi)
            cnt = np.where(mask, b - a, 0)
            for j in range(int(cnt.max(initial=0))):
                k = at[np.minimum(a + j, len(at) - 1)]
                result = np.where(j < cnt, result + v[k - 1], result)
    result = extrapolate(result, fv, ft, lt, n, rv.end, rv.range_ms, is_counter, is_rate)
    return _out(rv, result, mask)


def extrapolate(
    result: np.ndarray,
    fv: np.ndarray,
    ft: np.ndarray,
    lt: np.ndarray,
    n: np.ndarray,
    end: np.ndarray,
    range_ms: int,
    is_counter: bool,
    is_rate: bool,
) -> np.ndarray:
    """Prometheus 2.42's ``extrapolatedRate`` from each window's raw difference ``result`` (resets
    added back for counters), first value ``fv``, first/last sample times and sample count."""
    range_start = end - range_ms
    range_end = end
    # the same operations as Prometheus in the same order, most of them in place (each temporary is
    # a (series, steps) array); ms differences are exact in float64, as they are in int64
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = np.subtract(ft, range_start[None, :], dtype=np.float64)
        to_start /= 1000.0
        to_end = np.subtract(range_end[None, :], lt, dtype=np.float64)
        to_end /= 1000.0
        sampled = np.subtract(lt, ft, dtype=np.float64)
        sampled /= 1000.0
        avg_between = sampled / np.maximum(n - 1, 1)
        if is_counter:
            to_zero = fv / result
            to_zero *= sampled
            clip = result > 0
            clip &= fv >= 0
            clip &= to_zero < to_start
            np.copyto(to_start, to_zero, where=clip)
            del to_zero, clip
        thresh = avg_between * 1.1
        half = avg_between
        half /= 2
        # interval = sampled + (to_start if to_start < thresh else half) + (to_end if ... else half)
        interval = np.where(to_start < thresh, to_start, half)
        interval += sampled
        np.copyto(to_end, half, where=~(to_end < thresh))
        interval += to_end
        interval /= sampled  # one scale factor, as Prometheus 2.42 (bit-identical results)
        if is_rate:
            interval /= range_ms / 1000.0
        interval *= result
        return interval


def _instant_value(rv: RangeVector, is_rate: bool) -> Vector:
    lo, hi = rv.windows()
    mask = (hi - lo) >= 2
    v, t = rv.data.v, rv.data.t
    top = max(len(v) - 1, 0)
    li = np.clip(hi - 1, 0, top)
    pi = np.clip(hi - 2, 0, top)
    last, prev = v[li], v[pi]
    res = last - prev
    if is_rate:
        res = np.where(last < prev, last, res)
    dt = (t[li] - t[pi]).astype(np.float64)
    mask &= dt != 0
    if is_rate:
        with np.errstate(divide="ignore", invalid="ignore"):
            res = res / (dt / 1000.0)
    return _out(rv, res, mask)


def _regression(
    vals: np.ndarray, ts: np.ndarray, valid: np.ndarray, x0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept at ``x0`` (ms) per window, as Prometheus' ``linearRegression``."""
    cnt = valid.sum(axis=-1)
    x = np.where(valid, (ts - x0[..., None]) / 1000.0, 0.0)
    y = np.where(valid, vals, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = x.sum(axis=-1) / cnt
        my = y.sum(axis=-1) / cnt
        dx = np.where(valid, x - mx[..., None], 0.0)
        dy = np.where(valid, y - my[..., None], 0.0)
        slope = (dx * dy).sum(axis=-1) / (dx * dx).sum(axis=-1)
        intercept = my - slope * mx
    first = vals[..., 0]
    const = (np.where(valid, vals, first[..., None]) == first[..., None]).all(axis=-1)
    slope = np.where(const, 0.0, slope)
    intercept = np.where(const, first, intercept)
    inf_const = const & np.isinf(first)
    slope = np.where(inf_const, np.nan, slope)
    intercept = np.where(inf_const, np.nan, intercept)
    return slope, intercept


def sort_nan_first(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Sort along the last axis as Prometheus' quantile does (NaN first), absent entries last."""
    vals = np.where(ok, v, np.inf)
    nan_last = ~np.isnan(vals)  # lexsort: the last key is the primary one
    order = np.lexsort((np.where(nan_last, vals, 0.0), ~ok, nan_last), axis=-1)
    return np.take_along_axis(vals, order, axis=-1)


def _quantile_sorted(q: np.ndarray, srt: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Prometheus' quantile over sorted values (padding after ``cnt``); q broadcasts over the leading axes."""
    with np.errstate(invalid="ignore"):
        rank = q * (cnt - 1)
        lower = np.clip(np.floor(rank), 0, None).astype(np.int64)
        lower = np.minimum(lower, np.maximum(cnt - 1, 0))
        upper = np.minimum(lower + 1, np.maximum(cnt - 1, 0))
        weight = rank - np.floor(rank)
        lv = np.take_along_axis(srt, lower[..., None], axis=-1)[..., 0]
        uv = np.take_along_axis(srt, upper[..., None], axis=-1)[..., 0]
        res = lv * (1 - weight) + uv * weight
    res = np.where(q < 0, -np.inf, res)
    res = np.where(q > 1, np.inf, res)
    return np.where(np.isnan(q), np.nan, res)


def range_function(name: str, rv: RangeVector, scalars: list[np.ndarray]) -> Vector:
    """Functions whose (first) argument is a range vector."""
    if name == "rate":
        return _extrapolated(rv, True, True)
    if name == "increase":
        return _extrapolated(rv, True, False)
    if name == "delta":
        return _extrapolated(rv, False, False)
    if name == "irate":
        return _instant_value(rv, True)
    if name == "idelta":
        return _instant_value(rv, False)
    lo, hi = rv.windows()
    n = hi - lo
    mask = n >= 1
    if name == "count_over_time":
        return _out(rv, n.astype(np.float64), mask)
    if name == "present_over_time":
        return _out(rv, np.ones(n.shape), mask)
    if name == "last_over_time":
        _, lv, _, _ = _first_last(rv, lo, hi)
        return _out(rv, lv, mask, keep_name=True)
    if name in ("sum_over_time", "avg_over_time") and _same_sign(rv.data.v):
        return _out(rv, _plain_window_sum(rv, lo, n, name == "avg_over_time"), mask)
    if name in ("sum_over_time", "avg_over_time", "stddev_over_time", "stdvar_over_time"):
        if int(n.max(initial=0)) * n.size <= SEQUENTIAL_BUDGET:
            return _out(rv, _sequential(rv, lo, n, name), mask)
        # very long windows: prefix sums (accurate to ~1e-12 relative, not bit-identical)
        if name in ("stddev_over_time", "stdvar_over_time"):
            res = _gather(rv, lo, hi, _variance)
            return _out(rv, np.sqrt(res) if name == "stddev_over_time" else res, mask)
        if np.isfinite(rv.data.v).all():
            s = _window_sums(rv, rv.data.v, lo, hi)
        else:
            s = _gather(rv, lo, hi, lambda v, t, ok: np.where(ok, v, 0.0).sum(axis=-1))
        if name == "avg_over_time":
            with np.errstate(invalid="ignore", divide="ignore"):
                s = s / n
        return _out(rv, s, mask)
    if name == "min_over_time":
        return _out(
            rv, _gather(rv, lo, hi, lambda v, t, ok: np.fmin.reduce(np.where(ok, v, np.nan), axis=-1)), mask
        )
    if name == "max_over_time":
        return _out(
            rv, _gather(rv, lo, hi, lambda v, t, ok: np.fmax.reduce(np.where(ok, v, np.nan), axis=-1)), mask
        )
    if name == "changes":

        def changes(v: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
            same = (v[..., 1:] == v[..., :-1]) | (np.isnan(v[..., 1:]) & np.isnan(v[..., :-1]))
            return (~same & ok[..., 1:]).sum(axis=-1).astype(np.float64)

        return _out(rv, _gather(rv, lo, hi, changes), mask)
    if name == "resets":
        return _out(
            rv,
            _gather(
                rv, lo, hi, lambda v, t, ok: ((v[..., 1:] < v[..., :-1]) & ok[..., 1:]).sum(axis=-1) * 1.0
            ),
            mask,
        )
    if name == "deriv":
        mask = n >= 2
        if int(n.max(initial=0)) * n.size <= SEQUENTIAL_BUDGET:
            x0 = rv.data.t[np.minimum(lo, max(len(rv.data.t) - 1, 0))]
            return _out(rv, _regression_sequential(rv, lo, n, x0)[0], mask)
        res = _gather(rv, lo, hi, lambda v, t, ok: _regression(v, t, ok, t[..., 0])[0])
        return _out(rv, res, mask)
    if name == "predict_linear":
        mask = n >= 2
        dur = scalars[0]
        end = rv.eval_t
        if int(n.max(initial=0)) * n.size <= SEQUENTIAL_BUDGET:
            slope, icpt = _regression_sequential(rv, lo, n, np.broadcast_to(end[None, :], lo.shape))
            return _out(rv, slope * dur[None, :] + icpt, mask)

        def predict(v: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
            x0 = np.broadcast_to(end[None, :], v.shape[:-1])
            slope, icpt = _regression(v, t, ok, x0)
            return np.asarray(slope * dur[None, :] + icpt)

        return _out(rv, _gather(rv, lo, hi, predict), mask)
    if name == "quantile_over_time":
        q = scalars[0]

        def quant(v: np.ndarray, t: np.ndarray, ok: np.ndarray) -> np.ndarray:
            srt = sort_nan_first(v, ok)
            qq = np.broadcast_to(q[None, :], v.shape[:-1])
            return _quantile_sorted(qq, srt, ok.sum(axis=-1))

        return _out(rv, _gather(rv, lo, hi, quant), mask)
    raise QueryError(f"function {name!r} is not supported by the embedded evaluator", "execution")


# ------------------------------------------------------------------ instant-vector functions

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": np.sign,
    "acos": np.arccos,
    "acosh": np.arccosh,
    "asin": np.arcsin,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "cos": np.cos,
    "cosh": np.cosh,
    "sin": np.sin,
    "sinh": np.sinh,
    "tan": np.tan,
    "tanh": np.tanh,
    "deg": np.degrees,
    "rad": np.radians,
}

DATE_FUNCS = (
    "day_of_week",
    "day_of_month",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
)


def _dropped(vec: Vector, values: np.ndarray, mask: np.ndarray | None = None) -> Vector:
    out = Vector([drop_name(lab) for lab in vec.labels], values, vec.m if mask is None else mask)
    return merge_same_labels(out.compact())


def math_function(name: str, vec: Vector) -> Vector:
    with np.errstate(all="ignore"):
        return _dropped(vec, _MATH[name](vec.v))


# Go converts NaN, ±Inf and out-of-range floats to int64 as math.MinInt64; time.Unix of that is this
_GO_MIN_INT64_DATE = {
    "minute": 30, "hour": 15, "day_of_week": 0, "day_of_month": 4, "day_of_year": 339,
    "days_in_month": 31, "month": 12, "year": 292277026596,
}  # fmt: skip


def date_function(name: str, vec: Vector) -> Vector:
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(vec.v) | (vec.v >= 2.0**63) | (vec.v < -(2.0**63))
        secs = np.trunc(np.where(bad, 0, vec.v)).astype(np.int64)
    days = np.floor_divide(secs, 86_400)
    day64 = days.astype("datetime64[D]")
    months = day64.astype("datetime64[M]")
    years = day64.astype("datetime64[Y]")
    if name == "minute":
        res = (np.mod(secs, 86_400) // 60) % 60
    elif name == "hour":
        res = np.mod(secs, 86_400) // 3600
    elif name == "day_of_week":
        res = np.mod(days + 4, 7)
    elif name == "day_of_month":
        res = (day64 - months.astype("datetime64[D]")).astype(np.int64) + 1
    elif name == "day_of_year":
        res = (day64 - years.astype("datetime64[D]")).astype(np.int64) + 1
    elif name == "days_in_month":
        res = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(np.int64)
    elif name == "month":
        res = months.astype(np.int64) % 12 + 1
    else:
        res = years.astype(np.int64) + 1970
    res = np.where(bad, _GO_MIN_INT64_DATE[name], res)
    return _dropped(vec, res.astype(np.float64))


def clamp(vec: Vector, lo: np.ndarray, hi: np.ndarray) -> Vector:
    mask = vec.m & (hi >= lo)[None, :]
    return _dropped(vec, np.fmax(np.fmin(vec.v, hi[None, :]), lo[None, :]) * 1.0, mask)


def round_to(vec: Vector, to: np.ndarray) -> Vector:
    inv = 1.0 / to
    with np.errstate(all="ignore"):
        return _dropped(vec, np.floor(vec.v * inv[None, :] + 0.5) / inv[None, :])


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TEMPLATE = re.compile(r"\$(\$|\{([A-Za-z0-9_]*)\}|([A-Za-z0-9_]+))")


def _expand(template: str, m: re.Match[str]) -> str:
    """Go's ``regexp.Expand``: ``$1``, ``${1}``, ``$name``; unknown groups expand to ""."""

    def sub(t: re.Match[str]) -> str:
        if t.group(1) == "$":
            return "$"
        name = t.group(2) if t.group(2) is not None else t.group(3)
        if name.isdigit():
            i = int(name)
            return (m.group(i) or "") if i <= (m.re.groups or 0) else ""
        try:
            return m.group(name) or ""
        except IndexError:
            return ""

    return _TEMPLATE.sub(sub, template)


def label_replace(vec: Vector, dst: str, repl: str, src: str, regex: str) -> Vector:
    try:
        rx = re.compile(f"^(?s:{regex})$")
    except re.error as e:
        raise QueryError(
            f"invalid regular expression in label_replace(): {regex}: {e}", "execution"
        ) from None
    if not _LABEL_NAME.match(dst):
        raise QueryError(f"invalid destination label name in label_replace(): {dst}", "execution")
    labels = []
    for lab in vec.labels:
        m = rx.match(lab.get(src, ""))
        if m is None:
            labels.append(lab)
            continue
        new = dict(lab)
        val = _expand(repl, m)
        if val:
            new[dst] = val
        else:
            new.pop(dst, None)
        labels.append(new)
    return merge_same_labels(Vector(labels, vec.v, vec.m))


def label_join(vec: Vector, dst: str, sep: str, srcs: list[str]) -> Vector:
    if not _LABEL_NAME.match(dst):
        raise QueryError(f"invalid destination label name in label_join(): {dst}", "execution")
    labels = []
    for lab in vec.labels:
        val = sep.join(lab.get(s, "") for s in srcs)
        new = dict(lab)
        if val:
            new[dst] = val
        else:
            new.pop(dst, None)
        labels.append(new)
    return merge_same_labels(Vector(labels, vec.v, vec.m))


def histogram_quantile(q: np.ndarray, vec: Vector) -> Vector:
    """Quantiles from classic ``le`` buckets per label set without ``le`` (Prometheus' bucketQuantile)."""
    steps = vec.v.shape[1]
    groups: dict[tuple[tuple[str, str], ...], tuple[LabelSet, list[tuple[float, int]]]] = {}
    for i, lab in enumerate(vec.labels):
        le = lab.get("le")
        if le is None:
            continue
        try:
            bound = float(le.replace("Inf", "inf"))
        except ValueError:
            continue
        rest = {k: v for k, v in lab.items() if k not in ("le", "__name__")}
        key = tuple(sorted(rest.items()))
        groups.setdefault(key, (rest, []))[1].append((bound, i))
    labels, vals, masks = [], [], []
    for rest, buckets in groups.values():
        bounds = np.array(sorted({b for b, _ in buckets}))
        b_idx = {b: j for j, b in enumerate(bounds)}
        counts = np.zeros((len(bounds), steps))
        present = np.zeros((len(bounds), steps), dtype=bool)
        for b, i in buckets:
            j = b_idx[b]
            counts[j] += np.where(vec.m[i], vec.v[i], 0.0)
            present[j] |= vec.m[i]
        any_present: np.ndarray = np.asarray(present.any(axis=0))
        res = np.full(steps, np.nan)
        uniform = (present == any_present[None, :]).all(axis=0) & any_present
        if uniform.any():
            res[uniform] = _bucket_quantile(q[uniform], bounds, counts[:, uniform])
        for s in np.flatnonzero(any_present & ~uniform):
            sel = present[:, s]
            res[s] = _bucket_quantile(q[s : s + 1], bounds[sel], counts[sel][:, s : s + 1])[0]
        labels.append(rest)
        vals.append(res)
        masks.append(any_present)
    if not labels:
        return Vector.empty(steps)
    return Vector(labels, np.vstack(vals), np.vstack(masks)).compact()


def _bucket_quantile(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Vectorised over columns; ``counts`` is ``(buckets, columns)`` sorted by bound."""
    cols = counts.shape[1]
    if len(bounds) < 2 or not math.isinf(bounds[-1]) or bounds[-1] < 0:
        res = np.full(cols, np.nan)
    else:
        c = np.maximum.accumulate(counts, axis=0)
        obs = c[-1]
        rank = q * obs
        ge = c[:-1] >= rank[None, :]
        b = np.where(ge.any(axis=0), np.argmax(ge, axis=0), len(bounds) - 1)
        bi = np.minimum(b, len(bounds) - 2)
        end = bounds[bi]
        start = np.where(bi > 0, bounds[np.maximum(bi - 1, 0)], 0.0)
        prev = np.where(bi > 0, c[np.maximum(bi - 1, 0), np.arange(cols)], 0.0)
        cnt = c[bi, np.arange(cols)] - prev
        with np.errstate(all="ignore"):
            res = start + (end - start) * ((rank - prev) / cnt)
        res = np.where(b == len(bounds) - 1, bounds[-2], res)
        res = np.where((b == 0) & (bounds[0] <= 0), bounds[0], res)
        res = np.where(obs == 0, np.nan, res)
        res = np.where(np.isnan(obs), np.nan, res)
    res = np.where(q < 0, -np.inf, res)
    res = np.where(q > 1, np.inf, res)
    return np.where(np.isnan(q), np.nan, res)
