"""Range functions answered from rollup buckets, exactly, where the buckets allow it.

A Prometheus 2.42 window ``[t - range, t]`` with ``range`` a multiple of the bucket width ``W`` and
``t`` a multiple of ``W`` is the buckets ``[t - range, t)`` plus, when the next bucket's first sample
lies exactly at ``t``, that one sample. From each bucket's count, sum, min, max, first and last
values with their times and the values before drops inside it, ``rate``, ``increase``, ``delta`` and
``count/sum/avg/min/max/last/present_over_time`` follow without the raw samples:

- first/last sample and count give ``delta`` and the extrapolation of ``rate``/``increase``;
- the counter resets add back ``reset_sum`` of each bucket plus the last value of a bucket when the
  next (non-empty) bucket, or the sample at ``t``, starts lower;
- sums add bucket sums (only for values of one sign, where the order of additions cannot matter
  beyond a few ulps; Prometheus adds sample by sample with Kahan compensation).

Used per step: steps whose window (and the bucket at ``t``) lies where the rollup is complete
(``store.rollup_read.coverage``) come from buckets, the others from raw samples as usual. Anything
that could make the bucketed answer differ (missing columns in rollups from an older version,
duplicate timestamps, NaN or infinite values, mixed signs for sums) sends the whole selector to the
raw path. The hourly rollup serves ``[1h]``-multiples at hour-aligned steps over sealed days; the
5-minute one ``[5m]``-multiples at 5-minute-aligned steps over days that left raw retention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sightglass.promql.functions import extrapolate
from sightglass.promql.values import LabelSet, Packed, Vector, drop_name, label_key, merge_same_labels
from sightglass.store.rollup_read import WIDTHS, Buckets, coverage, read_buckets

if TYPE_CHECKING:
    from sightglass.promql.engine import _Eval

FUNCS = {
    "rate", "increase", "delta", "count_over_time", "sum_over_time", "avg_over_time", "min_over_time",
    "max_over_time", "last_over_time", "present_over_time",
}  # fmt: skip


def finish(labels: list[LabelSet], values: np.ndarray, mask: np.ndarray, keep_name: bool) -> Vector:
    out = labels if keep_name else [drop_name(lab) for lab in labels]
    return merge_same_labels(Vector(list(out), values, mask).compact())


def _covered(ends: np.ndarray, rng: int, width: int, spans: list[tuple[int, int]]) -> np.ndarray:
    """Steps whose buckets ``[end - rng, end + width)`` all lie inside one complete span."""
    ok = np.zeros(len(ends), dtype=bool)
    for lo, hi in spans:
        ok |= (ends - rng >= lo) & (ends + width <= hi)
    return ok


def evaluate(ev: _Eval, name: str, node: Any, ts: np.ndarray) -> Vector | None:
    """``name(node)`` from rollups where they are exact; None when the raw path must answer alone."""
    from sightglass.promql.engine import _ms, selector_matchers
    from sightglass.promql.reader import ordered_ids

    store = ev.engine.store
    if name not in FUNCS or not ev.engine.use_rollups or not hasattr(store, "read_rollup"):
        return None
    vs = node.vector_selector
    if ev._at(vs) is not None or not len(ts):
        return None
    rng = _ms(node.range)
    ends = ev._ref(vs, ts)
    for res, width in WIDTHS.items():
        if rng > 0 and rng % width == 0 and not (ends % width).any():
            resolution = res
            break
    else:
        return None
    # complete spans, cut to whole buckets (the head's oldest sample may fall inside a bucket)
    spans = [(lo, (hi // width) * width) for lo, hi in coverage(store, resolution)]
    spans = [(lo, hi) for lo, hi in spans if lo < hi]
    # a step is answered here when its window starts inside a complete span; the part of the window
    # past the span's end comes from raw samples, each taken as a bucket of its own
    cov = np.zeros(len(ends), dtype=bool)
    for lo, hi in spans:
        cov |= (ends - rng >= lo) & (ends - rng < hi)
    if not cov.any():
        return None
    ids, known, lut = ordered_ids(store, selector_matchers(vs))
    if not known:
        return None
    keys = store.index.keys
    ce = ends[cov]
    first, last = int(ce.min()) - rng, int(ce.max())
    b = read_buckets(store, ids, first, last + 1, resolution, rank=lut)  # the bucket at the end too
    if not b.exact:
        return None
    inside = np.zeros(len(b), dtype=bool)
    for lo, hi in spans:
        inside |= (b.ts >= lo) & (b.ts < hi)
    parts = [b.take(np.flatnonzero(inside))]
    for k, (lo, hi) in enumerate(spans):
        # raw samples from the span's end to the next span or the last window end that needs them
        need = ce[(ce - rng >= lo) & (ce - rng < hi)]
        if not len(need) or int(need.max()) < hi:
            continue
        stop = min(int(need.max()), spans[k + 1][0] - 1) if k + 1 < len(spans) else int(need.max())
        rk, t, v, st = store.read_arrays(ids, hi, stop, rank=lut)
        if not np.isfinite(v[~st]).all():
            return None
        parts.append(Buckets.of_samples(rk[~st], t[~st], v[~st]))
    b = Buckets.concat(parts)
    if not len(b):
        return None  # no data where the buckets would be: the raw path sees the same samples
    needs_sign = name in ("sum_over_time", "avg_over_time")
    if needs_sign and not (bool((b.min >= 0).all()) or bool((b.max <= 0).all())):
        return None
    ev.samples += len(b)
    ev._account(ev.samples)
    labels_all = [keys[k].all_labels() for k in known]
    vals, mask = _from_buckets(name, b, len(known), ce, rng)
    out_v = np.full((len(known), len(ts)), np.nan)
    out_m = np.zeros((len(known), len(ts)), dtype=bool)
    out_v[:, cov], out_m[:, cov] = vals, mask
    labels = labels_all
    if not cov.all():
        raw = ev.raw_range_function(name, node, ts[~cov])
        labels, out_v, out_m = _merge(labels_all, out_v, out_m, raw, ~cov)
    return finish(labels, out_v, out_m, keep_name=name == "last_over_time")


def _merge(
    labels: list[LabelSet], v: np.ndarray, m: np.ndarray, raw: Vector, cols: np.ndarray
) -> tuple[list[LabelSet], np.ndarray, np.ndarray]:
    """Put the raw path's rows (full label sets, steps ``cols``) beside the bucketed ones."""
    where = np.flatnonzero(cols)
    if len(raw.labels) == len(labels) and all(a == b for a, b in zip(raw.labels, labels, strict=True)):
        v[:, where], m[:, where] = raw.v, raw.m  # the same series in the same order (the usual case)
        return labels, v, m
    index = {label_key(lab): i for i, lab in enumerate(labels)}
    extra = [lab for lab in raw.labels if label_key(lab) not in index]
    if extra:
        labels = sorted(labels + extra, key=label_key)  # the storage order, as the raw reader's
        order = {label_key(lab): i for i, lab in enumerate(labels)}
        nv = np.full((len(labels), v.shape[1]), np.nan)
        nm = np.zeros((len(labels), v.shape[1]), dtype=bool)
        for key, i in index.items():
            nv[order[key]], nm[order[key]] = v[i], m[i]
        v, m, index = nv, nm, order
    for r, lab in enumerate(raw.labels):
        i = index[label_key(lab)]
        v[i, where] = raw.v[r]
        m[i, where] = raw.m[r]
    return labels, v, m


def _from_buckets(name: str, b: Buckets, n_series: int, ends: np.ndarray, rng: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and presence per (series, step) from the buckets (sorted by series and start)."""
    steps = len(ends)
    if not len(b):
        return np.full((n_series, steps), np.nan), np.zeros((n_series, steps), dtype=bool)
    counts = np.bincount(b.sid, minlength=n_series)
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    packed = Packed([{}] * n_series, off, b.ts, b.sum)
    lo = packed.search(ends - rng, "left")  # buckets starting in [end - rng, end)
    hi = packed.search(ends, "left")
    top = len(b) - 1
    at = np.minimum(hi, top)
    # the sample exactly at the window's end: the first one of the bucket starting there
    edge = (hi < off[1:, None]) & (b.ts[at] == ends[None, :]) & (b.first_ts[at] == ends[None, :])
    ev_ = b.first[at]
    inner = hi > lo
    csum = np.concatenate([[0], np.cumsum(b.cnt)])
    n = csum[hi] - csum[lo] + edge
    mask = n >= 1
    first_i, last_i = np.minimum(lo, top), np.clip(hi - 1, 0, top)
    fv = np.where(inner, b.first[first_i], ev_)
    ft = np.where(inner, b.first_ts[first_i], ends[None, :])
    lv = np.where(edge, ev_, b.last[last_i])
    lt = np.where(edge, ends[None, :], b.last_ts[last_i])
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "count_over_time":
            return n.astype(np.float64), mask
        if name == "present_over_time":
            return np.ones(n.shape), mask
        if name == "last_over_time":
            return lv, mask
        if name in ("sum_over_time", "avg_over_time"):
            s = _range_reduce(np.add, b.sum, lo, hi, 0.0) + np.where(edge, ev_, 0.0)
            return (s / n if name == "avg_over_time" else s), mask
        if name == "min_over_time":
            inner_min = _range_reduce(np.minimum, b.min, lo, hi, np.inf)
            return np.where(edge, np.minimum(inner_min, ev_), inner_min), mask
        if name == "max_over_time":
            inner_max = _range_reduce(np.maximum, b.max, lo, hi, -np.inf)
            return np.where(edge, np.maximum(inner_max, ev_), inner_max), mask
        mask = n >= 2
        result = lv - fv
        is_counter = name != "delta"
        if is_counter:
            # drops between neighbouring buckets of a series: the earlier bucket's last value
            same = np.zeros(len(b), dtype=bool)
            same[:-1] = b.sid[1:] == b.sid[:-1]
            nxt = np.append(b.first[1:], 0.0)
            pair = np.where(same & (nxt < b.last), b.last, 0.0)
            corr = _range_reduce(np.add, b.reset_sum, lo, hi, 0.0)
            corr += _range_reduce(np.add, pair, lo, np.maximum(hi - 1, lo), 0.0)
            corr += np.where(edge & inner & (ev_ < b.last[last_i]), b.last[last_i], 0.0)
            result = result + corr
        out = extrapolate(result, fv, ft, lt, n, ends, rng, is_counter, name == "rate")
        return out, mask


def _range_reduce(op: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, empty: float) -> np.ndarray:
    """``op`` over ``x[lo:hi]`` per (series, step); ``empty`` where the range is empty."""
    if not lo.size:
        return np.full(lo.shape, empty)
    xx = np.append(x, empty)
    idx = np.empty(2 * lo.size, dtype=np.int64)
    idx[0::2] = lo.ravel()
    idx[1::2] = hi.ravel()
    red = op.reduceat(xx, idx)[0::2].reshape(lo.shape)
    return np.where(hi > lo, red, empty)
