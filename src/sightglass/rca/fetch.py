"""Reading the neighbourhood's signals fast: one store read, one matrix, no per-series Python.

``load_frame`` builds the same :class:`~sightglass.analytics.signals.SignalFrame` as
``analytics.signals.load_signals`` (same columns in the same order, same values: gauges as they are,
counters as per-second rates with a reset giving one missing step, per-CPU series summed per node,
histogram means and configured ratios appended), but places every sample of every series on the grid
with a handful of numpy operations over the whole matrix instead of a loop over series. On a
1,000-node factory a job spanning 138 nodes reads ~60k series; the loop alone took seconds.

``plan_read`` is the cause-first read for very large neighbourhoods (docs/rca.md, "Time to answer"):
a few cause signals per GPU, NIC and node (``SCREEN_METRICS``) and every series that is not a
per-host one are read first; the rest of a host's series (its effects: utilisation, power drawn,
traffic, the other hardware counters) only for the hosts the first read points at, and for every
host when nothing read first explains the symptom. The answer says when it pruned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.signals import SignalConfig, SignalFrame, _is_counter, derived_columns
from sightglass.model import Matcher, SeriesKey
from sightglass.topology.infer import TopologyBuilder, entity_of_series


def load_frame(
    store: Any,
    start_ms: int,
    end_ms: int,
    series_ids: Sequence[int],
    *,
    builder: TopologyBuilder | None = None,
    config: SignalConfig | None = None,
) -> SignalFrame:
    """Read ``[start_ms, end_ms]`` of ``series_ids`` and build the aligned signal columns."""
    cfg = config or SignalConfig()
    step = cfg.step_ms
    types = {m: v[0].type for m, v in store.metadata().items() if v}
    t0 = start_ms - start_ms % step
    n_rows = int((end_ms - t0) // step) + 1
    grid = t0 + np.arange(n_rows, dtype=np.int64) * step
    ids = np.sort(np.asarray(series_ids, dtype=np.int64))
    ser, ts, vals, ser_keys, ser_ids = _read(store, ids, t0 - step, end_ms, cfg.max_series_per_read)
    n_ser = len(ser_keys)
    if n_ser == 0:
        return SignalFrame(grid, np.zeros((n_rows, 0)), [], [], [])
    # every sample onto an n_series x (n_rows + 1) grid (a series' steps contiguous); the extra
    # first step feeds the first rate
    row = np.rint((ts - (t0 - step)) / step).astype(np.int64)
    ok = (row >= 0) & (row < n_rows + 1)
    mat = np.full((n_ser, n_rows + 1), np.nan)
    mat[ser[ok], row[ok]] = vals[ok]  # a later sample on the same step wins, as in load_signals
    # per metric, not per series: by the index's metric code of each series where it has one
    label_codes = getattr(getattr(store, "index", None), "label_codes", None) if ser_ids is not None else None
    if label_codes is not None:
        mcode, mnames = label_codes("__name__", ser_ids)
        counter = np.asarray([bool(m) and _is_counter(m, types) for m in mnames], dtype=bool)[mcode]
    else:
        is_counter: dict[str, bool] = {}
        counter = np.fromiter(
            (is_counter[m] if (m := k.metric) in is_counter else is_counter.setdefault(m, _is_counter(m, types)) for k in ser_keys),
            dtype=bool,
            count=n_ser,
        )
    if counter.any():
        c = mat[counter]
        d = np.full(c.shape, np.nan)
        d[:, 1:] = (c[:, 1:] - c[:, :-1]) / (step / 1000.0)
        d[d < 0] = np.nan  # a counter reset
        mat[counter] = d
    mat = mat[:, 1:]
    # columns: (metric, labels without drop_labels), in order of first appearance; summed when
    # several series (one per CPU) collapse into one
    drop = frozenset(cfg.drop_labels)
    if label_codes is not None and not any(label_codes(a, ser_ids)[0].any() for a in sorted(drop)):
        # no series has a label to drop: each is its own column (the keys are distinct)
        col_keys: list[SeriesKey] = list(ser_keys)
    else:
        col_of: dict[SeriesKey, int] = {}
        group = np.empty(n_ser, dtype=np.int64)
        col_keys = []
        column = _column_keys(drop)
        for i, k in enumerate(ser_keys):
            ck = column.get(k)
            if ck is None:
                ck = _column_key(k, drop, column)
            j = col_of.get(ck)
            if j is None:
                j = col_of[ck] = len(col_keys)
                col_keys.append(ck)
            group[i] = j
    n_cols = len(col_keys)
    if n_cols == n_ser:
        out = mat  # no series collapsed: columns are the series, in order
    else:
        # the first series of each column as it is; the others (one per CPU) added onto it
        first = np.full(n_cols, -1, dtype=np.int64)
        first[group[::-1]] = np.arange(n_ser - 1, -1, -1)
        rest = np.ones(n_ser, dtype=bool)
        rest[first] = False
        out = mat[first]
        multi = unique_ids(group[rest])
        sub = out[multi]
        seen = np.isfinite(sub).astype(np.int64)
        sub = np.nan_to_num(sub, nan=0.0)
        pos = np.searchsorted(multi, group[rest])
        more = mat[rest]
        ok_m = np.isfinite(more)
        np.add.at(sub, pos, np.where(ok_m, more, 0.0))
        np.add.at(seen, pos, ok_m.astype(np.int64))
        sub[seen == 0] = np.nan
        out[multi] = sub
    values = out.T  # (rows, columns) as a view: each column's steps stay contiguous
    names = [_text(k) for k in col_keys]
    col_metrics = [k.metric for k in col_keys]
    # derived_columns looks up denominators only: the columns of those metrics, not all of them
    dens = {den for _num, den, _name in cfg.ratios}
    looked = {m for m in set(col_metrics) if m in dens or m.endswith("_count")}
    derived = derived_columns(col_keys, {(k.metric, k.labels): j for j, k in enumerate(col_keys) if k.metric in looked}, cfg)
    extra_num = [dc.num for dc in derived]
    extra_den = [dc.den for dc in derived]
    for dc in derived:
        names.append(_text(dc.name_key) + dc.suffix)
        col_metrics.append(dc.metric)
        col_keys.append(dc.key)
    if extra_num:
        num, den_v = values[:, extra_num], values[:, extra_den]
        with np.errstate(all="ignore"):
            mean = np.where(den_v > 0, num / den_v, np.nan)
        values = np.concatenate([values, mean], axis=1)
    entities = _entities(col_keys, builder)
    return SignalFrame(grid, values, names, col_metrics, entities)


def _read(
    store: Any, ids: np.ndarray, lo: int, hi: int, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[SeriesKey], np.ndarray | None]:
    """``(series position, ts, value, keys, series ids)``: the samples of ``ids`` (sorted) in
    ``[lo, hi]``, by (series, time), the last write of a duplicate kept; positions index ``keys``,
    the series that have samples, by id (their ids too, through ``read_arrays``). Through the
    store's column read (``read_arrays``: no object per series) where it has one, else ``read_ids``."""
    keys = store.index.keys
    if ids.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), [], None
    if not hasattr(store, "read_arrays"):
        data = []
        for a in range(0, len(ids), chunk):
            data.extend(store.read_ids(ids[a : a + chunk], lo, hi))
        lens = np.fromiter((len(sd.ts_ms) for sd in data), dtype=np.int64, count=len(data))
        ser = np.repeat(np.arange(len(data), dtype=np.int64), lens)
        ts = np.concatenate([sd.ts_ms for sd in data]).astype(np.int64, copy=False) if data else np.empty(0, np.int64)
        vals = np.concatenate([sd.values for sd in data]).astype(np.float64, copy=False) if data else np.empty(0)
        return ser, ts, vals, [sd.key for sd in data], None
    parts = [store.read_arrays(ids[a : a + chunk], lo, hi) for a in range(0, len(ids), chunk)]
    sid = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
    ts = np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False)
    vals = np.concatenate([p[2] for p in parts]).astype(np.float64, copy=False)
    uniq, ser = _positions(sid)
    known = np.fromiter((int(i) in keys for i in uniq.tolist()), dtype=bool, count=len(uniq))
    if not known.all():  # rows of series the index does not know: dropped, as read_ids does
        keep = known[ser]
        uniq, ser = _positions(sid[keep])
        ts, vals = ts[keep], vals[keep]
    return ser.astype(np.int64, copy=False), ts, vals, [keys[int(i)] for i in uniq.tolist()], uniq


def _positions(sid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(sid, return_inverse=True)``; without a sort when ``sid`` is already ascending (the
    store's rows come by series, and the chunks of ids in ascending order)."""
    if len(sid) and not (sid[1:] >= sid[:-1]).all():
        uniq, inv = np.unique(sid, return_inverse=True)
        return uniq, inv.reshape(-1)
    new = np.empty(len(sid), dtype=bool)
    new[:1] = True
    np.not_equal(sid[1:], sid[:-1], out=new[1:])
    return sid[new], np.cumsum(new) - 1


def unique_ids(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` (sorted, distinct) by one sort: numpy 2's hash-based unique is ~10x slower
    on integer arrays of this size."""
    a = np.sort(a)
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


_COLUMNS: dict[frozenset[str], dict[SeriesKey, SeriesKey]] = {}


def _column_keys(drop: frozenset[str]) -> dict[SeriesKey, SeriesKey]:
    """series key -> its column's key (its labels without ``drop``), remembered per ``drop``: a
    long-running server reads the same series again."""
    got = _COLUMNS.get(drop)
    if got is None or len(got) >= _MAX_TEXTS:
        if len(_COLUMNS) >= 8:
            _COLUMNS.clear()
        got = _COLUMNS[drop] = {}
    return got


def _column_key(k: SeriesKey, drop: frozenset[str], memo: dict[SeriesKey, SeriesKey]) -> SeriesKey:
    labels = k.labels
    if drop and any(a in drop for a, _ in labels):
        ck = SeriesKey(k.metric, tuple((a, x) for a, x in labels if a not in drop))
    else:
        ck = k
    memo[k] = ck
    return ck


_TEXTS: dict[SeriesKey, str] = {}
_MAX_TEXTS = 400_000


def _text(k: SeriesKey) -> str:
    """``k.text()``, remembered: a long-running server answers about the same series again."""
    t = _TEXTS.get(k)
    if t is None:
        if len(_TEXTS) >= _MAX_TEXTS:
            _TEXTS.clear()
        if not k.labels:
            t = k.metric
        else:  # SeriesKey.text(), escaping only the values that need it
            raw = "".join([v for _, v in k.labels])
            if "\\" in raw or '"' in raw or "\n" in raw:
                inner = ",".join(f'{a}="{v if _PLAIN.match(v) else _escape(v)}"' for a, v in k.labels)
            else:
                inner = ",".join([f'{a}="{v}"' for a, v in k.labels])
            t = f"{k.metric}{{{inner}}}"
        _TEXTS[k] = t
    return t


_PLAIN = re.compile(r'[^\\"\n]*\Z')


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _entities(col_keys: list[SeriesKey], builder: TopologyBuilder | None) -> list[str | None]:
    """``entity_of_series`` per column; series of one metric family and one label set share it."""
    out: list[str | None] = []
    memo: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
    for k in col_keys:
        fam = _family(k.metric)
        if fam is None:
            out.append(entity_of_series(k, builder))
            continue
        mk = (fam, k.labels)
        if mk not in memo:
            memo[mk] = entity_of_series(k, builder)
        out.append(memo[mk])
    return out


def _family(metric: str) -> str | None:
    """Metrics whose entity depends on their labels only (not on the rest of their name)."""
    if metric.startswith("DCGM_"):
        return "dcgm"
    if metric.startswith("node_infiniband_"):
        return "ib"
    if metric.startswith("node_"):
        return "node"
    return None


# ---------------------------------------------------------------------- cause-first reading
# Per-host signals read first when a neighbourhood is too large to read whole: one or two per fault
# class that can start on a GPU, a NIC or a node (knowledge.hypothesis), the ones that tell which
# entity to look at. Everything that is not a per-host series (a job's, a service's, a switch's, a
# pipeline's own signals, the per-rank training series) is always read.
SCREEN_METRICS = frozenset(
    {
        # GPU: XIDs, ECC, NVLink, throttle reasons (thermal, power brake, power cap, clocks
        # setting), temperature, power limit; a GPU off the bus shows as its series stopping
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        # NIC: link state and flaps, congestion
        "node_infiniband_state_id",
        "node_infiniband_link_downed_total",
        "node_infiniband_port_transmit_wait_total",
        # node: memory, CPU pressure, OOM kills, NFS latency (one series each per node)
        "node_memory_MemAvailable_bytes",
        "node_pressure_memory_stalled_seconds_total",
        "node_pressure_cpu_waiting_seconds_total",
        "node_load1",
        "node_vmstat_oom_kill",
        "node_mountstats_nfs_operations_response_time_seconds_total",
        "node_mountstats_nfs_operations_requests_total",
    }
)
HOST_PREFIXES = ("DCGM_", "node_")


@dataclass(slots=True)
class ReadPlan:
    """``first``: read at once; ``later``: per-host series read for the hosts ``first`` points at."""

    first: list[int]
    later: list[int] = field(default_factory=list)

    @property
    def pruned(self) -> bool:
        return bool(self.later)


def plan_read(keys: dict[int, SeriesKey], ids: Iterable[int], *, budget: int) -> ReadPlan:
    """All of ``ids`` when they are at most ``budget``; else the screening signals and every series
    that is not a per-host one first, the other per-host series later."""
    ids = list(ids)
    if len(ids) <= budget:
        return ReadPlan(ids)
    first: list[int] = []
    later: list[int] = []
    memo: dict[str, bool] = {}
    for i in ids:
        m = keys[i].metric
        now = memo.get(m)
        if now is None:
            now = memo[m] = m in SCREEN_METRICS or not m.startswith(HOST_PREFIXES)
        (first if now else later).append(i)
    return ReadPlan(first, later)


def host_series(store: Any, hosts: Iterable[str], among: Iterable[int]) -> list[int]:
    """The series of ``among`` that are about one of ``hosts`` (``Hostname`` or ``instance``)."""
    hs = sorted(set(hosts))
    if not hs:
        return []
    alt = "|".join(re.escape(h) for h in hs)
    found = set(store.select_ids([Matcher("Hostname", "=~", f"({alt})")]).tolist())
    found |= set(store.select_ids([Matcher("instance", "=~", f"({alt})(:[0-9]+)?")]).tolist())
    return sorted(i for i in among if i in found)


def concat(a: SignalFrame | None, b: SignalFrame) -> SignalFrame:
    """Columns of ``a`` then those of ``b`` (the same grid)."""
    if a is None or not a.values.shape[1]:
        return b
    if not b.values.shape[1]:
        return a
    return SignalFrame(a.ts_ms, np.concatenate([a.values, b.values], axis=1), a.names + b.names, a.metrics + b.metrics, a.entities + b.entities)
