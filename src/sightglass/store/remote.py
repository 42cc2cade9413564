"""Metrics on any Prometheus-compatible TSDB: remote-write in, the PromQL HTTP API out.

:class:`RemoteMetricStore` is the metric half of the store interface over VictoriaMetrics, Prometheus,
Mimir or Thanos. Writes are remote-write 1.0 requests (snappy protobuf, ``encode_batch``); reads are
plain Prometheus API calls, so any backend that speaks them works:

- raw samples of a selector over ``[start, end]``: an instant query of the range selector
  ``sel[<end-start+1>ms]`` at ``end`` (a matrix of the stored samples, stale markers left out by the
  backend), filtered to ``[start, end]`` here;
- series, label names and values, metadata: ``/api/v1/series``, ``/labels``, ``/label/x/values``,
  ``/metadata``;
- PromQL: passed as is to ``/api/v1/query[_range]`` (:class:`RemoteEngine`).

Analytics and the topology want what the embedded store has in memory: a series dictionary with small
integer ids (``index``), per-series first/last times, and a ``cursor()`` on ``series`` /
``samples_head`` / ``lineage`` tables. :meth:`RemoteMetricStore.refresh` builds that dictionary from
the backend (series seen per ``span_resolution`` window; raw reads sharpen the spans) into an
in-memory DuckDB "shadow". The newest sample time is probed with ``max(timestamp(probe))``; for a
backend whose data ends in the past (attach mode on history) it is found by bisecting
``/api/v1/series`` time windows.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import httpx
import numpy as np
import pyarrow as pa

from sightglass.ingest.remote_write import compress, encode_batch
from sightglass.model import Matcher, MetricMetadata, MetricType, SampleBatch, SeriesData, SeriesKey
from sightglass.promql.result import InstantSample, QueryError, QueryResult, RangeSeries
from sightglass.store.base import LimitExceeded, StoreError, WriteResult
from sightglass.store.index import SeriesIndex

log = logging.getLogger("sightglass.store.remote")

_REGEX_SPECIAL = set("\\.+*?()|[]{}^$")
_ERROR_TYPES = {"bad_data", "execution", "timeout", "canceled", "internal", "not_found", "unavailable"}
_SHADOW_SCHEMA = """
CREATE TABLE series (id INTEGER PRIMARY KEY, metric VARCHAR NOT NULL, labels VARCHAR NOT NULL,
                     first_ms BIGINT, last_ms BIGINT);
CREATE TABLE samples_head (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value DOUBLE);
CREATE TABLE lineage (ts BIGINT, job_namespace VARCHAR, job_name VARCHAR, inputs VARCHAR, outputs VARCHAR);
CREATE TABLE configs (ts BIGINT, entity VARCHAR, config VARCHAR, source VARCHAR);
CREATE TABLE incidents (id VARCHAR PRIMARY KEY, opened_ms BIGINT, closed_ms BIGINT, state VARCHAR,
                        title VARCHAR, payload VARCHAR);
CREATE TABLE alerting_silences (id VARCHAR PRIMARY KEY, payload VARCHAR);
"""


def promql_string(v: str) -> str:
    """``v`` as a double-quoted PromQL string literal."""
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def regex_literal(v: str) -> str:
    """``v`` escaped for an RE2 regex (only the metacharacters, which RE2 and Go accept escaped)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in v)


def selector_text(matchers: Sequence[Matcher]) -> str:
    """``{a="b",c=~"d"}`` for ``matchers`` (``__name__`` as a plain matcher, so any name works)."""
    return "{" + ",".join(f"{m.name}{m.op}{promql_string(m.value)}" for m in matchers) + "}"


@dataclass(slots=True)
class RemoteOptions:
    """Where the backend is and how hard to lean on it. ``remote_write_url`` None = read-only."""

    url: str
    remote_write_url: str | None = None
    timeout_s: float = 60.0
    refresh_every_s: float = 10.0
    span_resolution_ms: int = 300_000
    discover_ms: int = 6 * 3_600_000
    max_samples_per_write: int = 100_000
    # the source data, not what rules write at the wall clock (ALERTS, level:metric:operation)
    probe: str = '{__name__=~".+",__name__!~"ALERTS|ALERTS_FOR_STATE|[^:]+:[^:]+:.+"}'
    read_parallelism: int = 4
    headers: dict[str, str] = field(default_factory=dict)


class RemoteMetricStore:
    """The metric store interface over a Prometheus-compatible backend (see the module docstring)."""

    def __init__(self, options: RemoteOptions, *, client: httpx.Client | None = None) -> None:
        self.options = options
        self.url = options.url.rstrip("/")
        self.read_only = options.remote_write_url is None
        self._client = client or httpx.Client(timeout=options.timeout_s, headers=options.headers)
        self._own_client = client is None
        self.index = SeriesIndex()
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._spans: dict[int, list[int]] = {}
        self._dirty: set[int] = set()
        self._next_id = 0
        self._newest = 0
        self._scanned_until: int | None = None
        self._last_refresh = 0.0
        self._probe_named = False
        self._metadata: dict[str, MetricMetadata] = {}
        self._shadow_lock = threading.Lock()  # one writer at a time (INSERT OR REPLACE races otherwise)
        self._shadow = duckdb.connect(":memory:")
        self._shadow.execute(_SHADOW_SCHEMA)
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, options.read_parallelism))
        self.samples_written = 0
        self.requests_written = 0

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_client:
            self._client.close()
        self._shadow.close()

    def __enter__(self) -> RemoteMetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP
    def _get(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Any:
        """POST ``params`` as a form (every Prometheus API read accepts it; no URL length limit)."""
        form: dict[str, list[str]] = {}
        for k, v in params.items() if isinstance(params, Mapping) else params:
            form.setdefault(k, []).append(str(v))
        try:
            r = self._client.post(self.url + path, data=form)
        except httpx.HTTPError as e:
            raise StoreError(f"metrics backend {self.url} unreachable: {e}") from None
        try:
            body = r.json()
        except ValueError:
            raise StoreError(
                f"metrics backend {self.url}{path} answered {r.status_code} without JSON: {r.text[:200]!r}"
            ) from None
        if r.status_code >= 400 or body.get("status") != "success":
            msg = body.get("error") or r.text[:300]
            etype = body.get("errorType") or "bad_data"
            if etype not in _ERROR_TYPES:  # VictoriaMetrics sends the HTTP status ("422")
                etype = "bad_data"
            if r.status_code in (400, 422):
                raise QueryError(str(msg), str(etype))
            raise StoreError(f"metrics backend {self.url}{path} answered {r.status_code}: {msg}")
        return body

    def query(self, expr: str, time_ms: int) -> Any:
        """The ``data`` of ``/api/v1/query`` (raises :class:`QueryError` on a 4xx answer)."""
        return self._get("/api/v1/query", {"query": expr, "time": f"{time_ms / 1000:.3f}"})["data"]

    # ------------------------------------------------------------------ writes
    def append(self, batch: SampleBatch, *, max_new_series: int | None = None) -> WriteResult:
        """Remote-write ``batch`` (split into requests of ``max_samples_per_write``); returns when the
        backend acknowledged every request (a 2xx, after which it holds the data as its own WAL says)."""
        if self.read_only:
            raise StoreError("this store is attached read-only (no remote_write_url): writes are refused")
        res = WriteResult()
        if len(batch) == 0 and not batch.exp_histograms:
            return res
        with self._lock:
            new = [k for k in batch.series if k not in self.index.ids]
        if max_new_series is not None and len(new) > max_new_series:
            raise LimitExceeded(
                f"request has {len(new)} new series, over the limit of {max_new_series} "
                "(limits.max_new_series_per_request)"
            )
        assert self.options.remote_write_url is not None
        for part in _split(batch, self.options.max_samples_per_write):
            body = compress(encode_batch(part))
            try:
                r = self._client.post(
                    self.options.remote_write_url,
                    content=body,
                    headers={
                        "Content-Encoding": "snappy",
                        "Content-Type": "application/x-protobuf",
                        "X-Prometheus-Remote-Write-Version": "0.1.0",
                    },
                )
            except httpx.HTTPError as e:
                raise StoreError(f"remote write to {self.options.remote_write_url} failed: {e}") from None
            if r.status_code >= 300:
                raise StoreError(
                    f"remote write to {self.options.remote_write_url} answered {r.status_code}: {r.text[:300]}"
                )
            self.requests_written += 1
        with self._lock:
            for k in new:
                self._intern(k)
            if len(batch):
                # the spans widen, but the newest sample time comes only from the probe: what this
                # process writes (rule results at the wall clock) is not the data's clock
                lo, hi = int(batch.ts_ms.min()), int(batch.ts_ms.max())
                ids = [self.index.ids[k] for k in batch.series]
                for sid in ids:
                    self._widen(sid, lo, hi)
            self._metadata.update(batch.metadata)
        res.samples_written = len(batch)
        res.new_series = len(new)
        res.histograms_written = len(batch.exp_histograms)
        self.samples_written += len(batch)
        return res

    # ------------------------------------------------------------------ the series dictionary
    def _intern(self, key: SeriesKey) -> int:
        sid = self.index.ids.get(key)
        if sid is None:
            sid = self._next_id
            self._next_id += 1
            self.index.add(sid, key)
        return sid

    def _widen(self, sid: int, lo: int, hi: int) -> None:
        sp = self._spans.get(sid)
        if sp is None:
            self._spans[sid] = [lo, hi]
        elif lo < sp[0] or hi > sp[1]:
            sp[0], sp[1] = min(sp[0], lo), max(sp[1], hi)
        else:
            return
        self._dirty.add(sid)

    def _flush_shadow(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            rows = [
                (sid, k.metric, json.dumps(dict(k.labels), sort_keys=True), *self._spans[sid])
                for sid in sorted(dirty)
                if (k := self.index.keys.get(sid)) is not None
            ]
        if rows:
            # one Arrow table, not executemany: DuckDB runs executemany row by row (5 s for 1,500
            # series on a loaded 2-core box; every refresh widens every live series' span)
            cols = list(zip(*rows, strict=True))
            tbl = pa.table({
                "id": pa.array(cols[0], pa.int32()), "metric": pa.array(cols[1], pa.string()),
                "labels": pa.array(cols[2], pa.string()), "first_ms": pa.array(cols[3], pa.int64()),
                "last_ms": pa.array(cols[4], pa.int64()),
            })  # fmt: skip
            with self._shadow_lock:
                cur = self._shadow.cursor()
                try:
                    cur.register("sg_series_update", tbl)
                    cur.execute("INSERT OR REPLACE INTO series SELECT * FROM sg_series_update")
                    cur.unregister("sg_series_update")
                finally:
                    cur.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the shadow tables (``series``, an empty ``samples_head``, ``lineage``, and an
        in-memory ``incidents`` and ``alerting_silences`` for code that expects the embedded schema)."""
        self._flush_shadow()
        return self._shadow.cursor()

    def mirror_lineage(self, rows: Iterable[tuple[int, str, str, str, str]]) -> int:
        """Copy catalog lineage rows ``(ts, namespace, job, inputs json, outputs json)`` into the shadow."""
        return self._mirror("lineage", list(rows))

    def mirror_configs(self, rows: Iterable[tuple[int, str, str, str]]) -> int:
        """Copy catalog config snapshots ``(ts, entity json, config json, source)`` into the shadow."""
        return self._mirror("configs", list(rows))

    def _mirror(self, table: str, data: list[tuple[Any, ...]]) -> int:
        if data:
            cur = self._shadow.cursor()
            try:
                cur.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(data[0]))})", data)
            finally:
                cur.close()
        return len(data)

    def configs_watermark(self) -> int:
        return self._max_ts("configs", -(2**62))

    def lineage_watermark(self) -> int:
        return self._max_ts("lineage", -1)

    def _max_ts(self, table: str, empty: int) -> int:
        cur = self._shadow.cursor()
        try:
            row = cur.execute(f"SELECT max(ts) FROM {table}").fetchone()
        finally:
            cur.close()
        return int(row[0]) if row and row[0] is not None else empty

    @property
    def newest_ms(self) -> int:
        """Newest sample time the backend holds (refreshes the dictionary when it is due)."""
        self.refresh()
        return self._newest

    def refresh(self, *, force: bool = False) -> bool:
        """Fold the backend's series seen since the last refresh into the dictionary; False if not due."""
        if not force and time.monotonic() - self._last_refresh < self.options.refresh_every_s:
            return False
        if not self._refresh_lock.acquire(blocking=force):
            return False
        try:
            newest = self._probe_newest()
            self._last_refresh = time.monotonic()
            if newest is None:
                return True
            # at most ~12 series calls however long the first discovery window is
            res = max(self.options.span_resolution_ms, self.options.discover_ms // 12)
            start = (
                newest - self.options.discover_ms
                if self._scanned_until is None
                else self._scanned_until - self.options.span_resolution_ms  # overlap for late arrivals
            )
            t = start
            while t < newest:
                hi = min(t + res, newest)
                found = self._series_api([self.options.probe], t, hi)
                with self._lock:
                    for labels in found:
                        sid = self._intern(SeriesKey.of(labels.get("__name__", ""), labels))
                        self._widen(sid, t, hi)
                t = hi
            self._scanned_until = newest
            self._flush_shadow()
            with self._lock:  # published only now: a reader never sees the new clock with half its series
                self._newest = max(self._newest, newest)
            return True
        finally:
            self._refresh_lock.release()

    def _probe_newest(self) -> int | None:
        now = int(time.time() * 1000)
        got = self._ts_probe("max(timestamp({p}))", now)
        if got is not None:
            return got
        if self._newest > 0:
            return self._gallop(self._newest, now)
        # nothing within the lookback of now: the newest sample in the last ``discover`` (a subquery
        # of timestamp() sees every sample's own time), else bisect /api/v1/series windows
        got = self._ts_probe(f"max(max_over_time(timestamp({{p}})[{self.options.discover_ms}ms:1m]))", now)
        if got is not None:
            return got
        span = 3_600_000
        while not self._has_series(now - span, now):
            span *= 4
            if span > 20 * 365 * 86_400_000:
                return None
        lo, hi = now - span, now
        while hi - lo > 60_000:
            mid = (lo + hi) // 2
            if self._has_series(mid, now):
                lo = mid
            else:
                hi = mid
        for at in (lo + 300_000, hi + 300_000, hi):
            got = self._ts_probe("max(timestamp({p}))", min(at, now))
            if got is not None and got <= now:
                return got
        return None  # series exist but no sample time was found: unknown rather than a guess

    def _gallop(self, known: int, now: int, lookback_ms: int = 240_000, max_steps: int = 64) -> int:
        """The newest sample after ``known`` when the data lags the wall clock by more than the lookback:
        ``max(timestamp(probe))`` at ``known + lookback`` sees the newest sample in ``(known, known +
        lookback]``; step on from each find. One point per series per query, where the subquery
        fallback reads every sample of ``discover`` (seconds on a few thousand series, see
        ``bench/scaleout.py --probe``). A gap longer than the lookback in the data is stepped over
        only once the data reaches within the lookback of now (``max(timestamp())`` at now)."""
        best = known
        for _ in range(max_steps):
            at = min(best + lookback_ms, now)
            got = self._ts_probe("max(timestamp({p}))", at)
            if got is None or got <= best:
                break
            best = got
            if at >= now:
                break
        return best

    def _ts_probe(self, template: str, at_ms: int) -> int | None:
        """``template`` with ``{p}`` the probe selector. ``timestamp()`` drops ``__name__``, and
        Prometheus then refuses a vector where two series have the same labels; VictoriaMetrics
        accepts that but answers nothing for ``timestamp(label_replace(...))``. So: the plain probe
        first, and once it is refused, the probe with its name copied to a label."""
        if not self._probe_named:
            try:
                return self._scalar_ms(template.format(p=self.options.probe), at_ms)
            except QueryError as e:
                if "same label" not in str(e):  # only Prometheus' duplicate-labelset refusal
                    raise
                self._probe_named = True
        named = f'label_replace({self.options.probe}, "__sightglass_name", "$1", "__name__", "(.+)")'
        return self._scalar_ms(template.format(p=named), at_ms)

    def _scalar_ms(self, expr: str, at_ms: int) -> int | None:
        data = self.query(expr, at_ms)
        res = data.get("result") or []
        if data.get("resultType") == "vector" and res:
            v = float(res[0]["value"][1])
            if math.isfinite(v):
                return round(v * 1000)
        return None

    def _has_series(self, start_ms: int, end_ms: int) -> bool:
        params = [("match[]", self.options.probe), ("start", f"{start_ms / 1000:.3f}"),
                  ("end", f"{end_ms / 1000:.3f}"), ("limit", "1")]  # fmt: skip
        return bool(self._get("/api/v1/series", params)["data"])

    def _series_api(
        self, selectors: Sequence[str], start_ms: int | None, end_ms: int | None
    ) -> list[dict[str, str]]:
        params: list[tuple[str, Any]] = [("match[]", s) for s in selectors]
        if start_ms is not None:
            params.append(("start", f"{start_ms / 1000:.3f}"))
        if end_ms is not None:
            params.append(("end", f"{end_ms / 1000:.3f}"))
        return list(self._get("/api/v1/series", params)["data"])

    # ------------------------------------------------------------------ reads
    def select_ids(self, matchers: Sequence[Matcher]) -> np.ndarray:
        with self._lock:
            return self.index.select(matchers)

    def key_of(self, sid: int) -> SeriesKey:
        return self.index.keys[sid]

    def _raw(
        self, selector: str, start_ms: int, end_ms: int
    ) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        if end_ms < start_ms:
            return []
        data = self.query(f"{selector}[{end_ms - start_ms + 1}ms]", end_ms)
        if data.get("resultType") != "matrix":
            raise StoreError(f"metrics backend answered {data.get('resultType')} for a range selector")
        out = []
        for item in data.get("result") or []:
            vals = item.get("values") or []
            if not vals:
                continue
            ts = np.rint(np.fromiter((float(p[0]) for p in vals), np.float64, len(vals)) * 1000).astype(
                np.int64
            )
            v = np.fromiter((float(p[1]) for p in vals), np.float64, len(vals))
            keep = (ts >= start_ms) & (ts <= end_ms)
            # one sample per timestamp, as Prometheus keeps: a TSDB without deduplication (VictoriaMetrics
            # without -dedup.minScrapeInterval) returns a step a new lease holder rewrote twice
            keep[1:] &= ts[1:] != ts[:-1]
            if not keep.all():
                ts, v = ts[keep], v[keep]
            if len(ts):
                out.append((dict(item["metric"]), ts, v))
        return out

    def _to_series(
        self, rows: list[tuple[dict[str, str], np.ndarray, np.ndarray]], want: set[int] | None
    ) -> list[SeriesData]:
        out: list[tuple[int, SeriesData]] = []
        with self._lock:
            for labels, ts, v in rows:
                key = SeriesKey.of(labels.get("__name__", ""), labels)
                sid = self._intern(key)
                if want is not None and sid not in want:
                    continue
                self._widen(sid, int(ts[0]), int(ts[-1]))
                out.append((sid, SeriesData(key, ts, v, np.zeros(len(ts), dtype=bool))))
        out.sort(key=lambda x: x[0])
        return [sd for _, sd in out]

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        """Raw samples of every series matching ``matchers`` in ``[start_ms, end_ms]``, by series id."""
        out = self._to_series(self._raw(selector_text(matchers), start_ms, end_ms), None)
        if limit_samples is not None and sum(len(s) for s in out) > limit_samples:
            raise LimitExceeded(
                f"query would load more than {limit_samples} samples, over the limit (query.max_samples)"
            )
        return out

    def read_ids(
        self, ids: np.ndarray, start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        """Samples of the given series ids: one query per metric name (narrowed by the label that
        tells the wanted series apart best), run ``read_parallelism`` at a time."""
        with self._lock:
            keys = {int(i): self.index.keys[int(i)] for i in ids.tolist() if int(i) in self.index.keys}
            per_metric_total: dict[str, int] = {}
            for k in self.index.keys.values():
                per_metric_total[k.metric] = per_metric_total.get(k.metric, 0) + 1
        by_metric: dict[str, list[SeriesKey]] = {}
        for k in keys.values():
            by_metric.setdefault(k.metric, []).append(k)
        selectors = []
        for metric, ks in sorted(by_metric.items()):
            selectors.extend(_narrow(metric, ks, per_metric_total.get(metric, 0)))
        futures = [self._pool.submit(self._raw, s, start_ms, end_ms) for s in selectors]
        rows = [r for f in futures for r in f.result()]
        out = self._to_series(rows, set(keys))
        if limit_samples is not None and sum(len(s) for s in out) > limit_samples:
            raise LimitExceeded(
                f"query would load more than {limit_samples} samples, over the limit (query.max_samples)"
            )
        return out

    def series(
        self, matcher_sets: Sequence[Sequence[Matcher]], start_ms: int | None, end_ms: int | None
    ) -> list[SeriesKey]:
        found = self._series_api([selector_text(ms) for ms in matcher_sets], start_ms, end_ms)
        keys = {SeriesKey.of(d.get("__name__", ""), d) for d in found}
        return sorted(keys, key=lambda k: (k.metric, k.labels))

    def label_names(
        self,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        return sorted(
            self._get("/api/v1/labels", _range_params(matcher_sets, start_ms, end_ms))["data"] or []
        )

    def label_values(
        self,
        name: str,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        path = f"/api/v1/label/{urllib.parse.quote(name, safe='')}/values"
        try:
            r = self._client.get(self.url + path, params=_range_params(matcher_sets, start_ms, end_ms))
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise StoreError(f"metrics backend {self.url}{path} failed: {e}") from None
        if r.status_code >= 400 or body.get("status") != "success":
            raise StoreError(
                f"metrics backend {self.url}{path} answered {r.status_code}: {body.get('error')}"
            )
        return sorted(body["data"] or [])

    def metadata(self, metric: str | None = None) -> dict[str, list[MetricMetadata]]:
        """The backend's metadata (from its scrapes) merged with what remote-written batches carried."""
        out: dict[str, list[MetricMetadata]] = {}
        try:
            params = {"metric": metric} if metric else {}
            r = self._client.get(self.url + "/api/v1/metadata", params=params)
            data = r.json().get("data") or {} if r.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            data = {}
        for name, entries in data.items():
            for e in entries:
                try:
                    mtype = MetricType(e.get("type") or "unknown")
                except ValueError:
                    mtype = MetricType.UNKNOWN
                out.setdefault(name, []).append(
                    MetricMetadata(name, mtype, e.get("help", ""), e.get("unit", ""))
                )
        with self._lock:
            for name, md in self._metadata.items():
                if metric is None or name == metric:
                    out.setdefault(name, [md])
        return out

    # ------------------------------------------------------------------ admin
    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.url,
            "read_only": self.read_only,
            "series": len(self.index),
            "newest_ms": self._newest,
            "samples_written": self.samples_written,
            "write_requests": self.requests_written,
        }

    def compact(self, *, force: bool = True) -> int:
        return 0  # the backend compacts its own storage


def _split(batch: SampleBatch, n: int) -> Iterable[SampleBatch]:
    if len(batch) <= n:
        yield batch
        return
    for a in range(0, len(batch), n):
        sl = slice(a, a + n)
        yield SampleBatch(
            series=batch.series,
            series_index=batch.series_index[sl],
            ts_ms=batch.ts_ms[sl],
            values=batch.values[sl],
            stale=batch.stale[sl] if batch.stale is not None else None,
            metadata=batch.metadata if a == 0 else {},
            exp_histograms=batch.exp_histograms if a == 0 else [],
        )


def _narrow(metric: str, keys: list[SeriesKey], total: int, max_regex: int = 4000) -> list[str]:
    """Selectors that cover ``keys`` of ``metric`` without reading all of its series when few are wanted."""
    name = f"__name__={promql_string(metric)}"
    if len(keys) >= total or len(keys) > 2000:
        return ["{" + name + "}"]
    best: str | None = None
    best_vals: set[str] = set()
    names = {n for k in keys for n, _ in k.labels}
    for n in names:
        vals = {dict(k.labels).get(n, "") for k in keys}
        if "" in vals:
            continue
        if len(vals) > len(best_vals):
            best, best_vals = n, vals
    if best is None:
        return ["{" + name + "}"]
    out: list[list[str]] = []
    chunk: list[str] = []
    size = 0
    for v in sorted(best_vals):
        lit = regex_literal(v)
        if chunk and size + len(lit) > max_regex:
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(lit)
        size += len(lit) + 1
    out.append(chunk)
    return ["{" + name + f",{best}=~{promql_string('|'.join(c))}" + "}" for c in out]


def _range_params(
    matcher_sets: Sequence[Sequence[Matcher]], start_ms: int | None, end_ms: int | None
) -> list[tuple[str, str | int | float | bool | None]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("match[]", selector_text(ms)) for ms in matcher_sets
    ]
    if start_ms is not None:
        params.append(("start", f"{start_ms / 1000:.3f}"))
    if end_ms is not None:
        params.append(("end", f"{end_ms / 1000:.3f}"))
    return params


# ---------------------------------------------------------------------- PromQL pass-through
class RemoteEngine:
    """PromQL goes to the backend as is; answers come back as :class:`QueryResult` objects."""

    def __init__(self, store: RemoteMetricStore, *, timeout_s: float | None = None) -> None:
        self.store = store
        self.timeout_s = timeout_s

    def _call(self, path: str, params: dict[str, str], timeout_s: float | None) -> QueryResult:
        t = timeout_s if timeout_s is not None else self.timeout_s
        if t is not None:
            params["timeout"] = f"{max(1, math.ceil(t))}s"  # "2.5s" is not a Prometheus duration
        body = self.store._get(path, params)
        res = parse_result(body["data"])
        res.warnings = list(body.get("warnings") or [])
        return res

    def instant(self, query: str, time_ms: int, *, timeout_s: float | None = None) -> QueryResult:
        return self._call("/api/v1/query", {"query": query, "time": f"{time_ms / 1000:.3f}"}, timeout_s)

    def range(
        self, query: str, start_ms: int, end_ms: int, step_ms: int, *, timeout_s: float | None = None
    ) -> QueryResult:
        params = {"query": query, "start": f"{start_ms / 1000:.3f}", "end": f"{end_ms / 1000:.3f}",
                  "step": f"{step_ms / 1000:.3f}"}  # fmt: skip
        return self._call("/api/v1/query_range", params, timeout_s)


def _ms(t: Any) -> int:
    return round(float(t) * 1000)


def parse_result(data: Mapping[str, Any]) -> QueryResult:
    """A Prometheus API ``data`` member as a :class:`QueryResult`."""
    rtype = data.get("resultType")
    result = data.get("result")
    if rtype == "vector":
        return QueryResult(
            "vector",
            vector=[
                InstantSample(dict(s["metric"]), _ms(s["value"][0]), float(s["value"][1]))
                for s in result or []
            ],
        )
    if rtype == "matrix":
        out = []
        for s in result or []:
            vals = s.get("values") or []
            out.append(
                RangeSeries(
                    dict(s["metric"]),
                    np.array([_ms(p[0]) for p in vals], dtype=np.int64),
                    np.array([float(p[1]) for p in vals], dtype=np.float64),
                )
            )
        return QueryResult("matrix", matrix=out)
    if rtype == "scalar" and result:
        return QueryResult("scalar", scalar=(_ms(result[0]), float(result[1])))
    if rtype == "string" and result:
        return QueryResult("string", string=(_ms(result[0]), str(result[1])))
    raise StoreError(f"metrics backend answered an unknown result type {rtype!r}")
