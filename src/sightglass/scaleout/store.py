"""One store over two engines: metrics on a Prometheus-compatible TSDB, the catalog on PostgreSQL
(or, attached to a Prometheus without PostgreSQL, the local DuckDB file's catalog tables).

:class:`ScaleOutStore` has the methods the API, ingest, topology and analytics call on the embedded
store. Its ``scale_out`` flag tells the single-process loops (``sightglass.analytics.service``,
``sightglass.cost.service``) to stay out: ``sightglass.scaleout.service`` runs the partitioned anomaly
analytics and, under one leader lease, the fleet-wide KPIs, drift and cost (leased in PostgreSQL when
there are replicas); the alerting loop takes a leader lease of its own.

``newest_ms`` is the newest *source* sample: the larger of what the backend answers to the newest-
sample probe (``RemoteMetricStore.newest_ms``, at most every ``refresh_every``) and what this process
remote-wrote itself, leaving out the series Sightglass derives at the wall clock (``ALERTS``,
``ALERTS_FOR_STATE`` and recording rules ``level:metric:op``), so rule results never move the clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from sightglass.config import Config, parse_duration_ms
from sightglass.model import (
    ConfigSnapshot,
    Entity,
    Event,
    LineageEvent,
    LogRecord,
    Matcher,
    MetricMetadata,
    MetricType,
    Relation,
    SampleBatch,
    SeriesData,
    SeriesKey,
    Span,
)
from sightglass.scaleout.config import BackendsConfig, load_backends
from sightglass.store.base import WriteResult
from sightglass.store.index import SeriesIndex
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteMetricStore, RemoteOptions
from sightglass.store.rows import config_row


def is_derived(metric: str) -> bool:
    """Series Sightglass writes at the wall clock: they are not the data's clock."""
    return metric in ("ALERTS", "ALERTS_FOR_STATE") or metric.count(":") >= 2


class ScaleOutStore:
    """Metric calls go to :class:`RemoteMetricStore`, catalog calls to the catalog store."""

    scale_out = True  # the single-process analytics and cost loops stay out (see the module docstring)

    def __init__(self, metrics: RemoteMetricStore, catalog: Any, backends: BackendsConfig) -> None:
        self.metrics = metrics
        self.catalog = catalog
        self.backends = backends
        self.is_postgres = isinstance(catalog, PostgresCatalog)
        self.analytics: Any = None  # the partitioned analytics loop, when the server runs one
        self.fleet: Any = None  # the leader-held KPI, drift and cost loop, when the server runs one
        self.written_newest_ms = 0  # newest source sample this process remote-wrote
        self.replica_id = backends.replica_id()  # one id for every lease this process holds
        self._duck_alerting: Any = None
        self._mirror_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.metrics.close()
        self.catalog.close()

    @property
    def read_only(self) -> bool:
        return self.metrics.read_only

    @property
    def index(self) -> SeriesIndex:
        """The series dictionary, refreshed from the backend when due (``refresh_every``)."""
        self.metrics.refresh()
        return self.metrics.index

    def latest_ms(self) -> int:
        """The newest sample the backend holds (refreshing the series dictionary when due)."""
        return self.newest_ms

    @property
    def newest_ms(self) -> int:
        """The newest source sample: the backend's probe or this process' own writes, the later."""
        return max(self.metrics.newest_ms, self.written_newest_ms)

    def refresh(self, *, force: bool = False) -> bool:
        return self.metrics.refresh(force=force)

    # ------------------------------------------------------------------ metrics
    def append(self, batch: SampleBatch, *, max_new_series: int | None = None) -> WriteResult:
        res = self.metrics.append(batch, max_new_series=max_new_series)
        if len(batch):
            source = [i for i, k in enumerate(batch.series) if not is_derived(k.metric)]
            if len(source) == len(batch.series):
                self.written_newest_ms = max(self.written_newest_ms, int(batch.ts_ms.max()))
            elif source:
                ts = batch.ts_ms[np.isin(batch.series_index, source)]
                if len(ts):
                    self.written_newest_ms = max(self.written_newest_ms, int(ts.max()))
        if batch.metadata and self.is_postgres:
            self.catalog.upsert_metadata(
                [(m.metric, m.type.value, m.help, m.unit) for m in batch.metadata.values()]
            )
        return res

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        return self.metrics.select(matchers, start_ms, end_ms, limit_samples=limit_samples)

    def select_ids(self, matchers: Sequence[Matcher]) -> np.ndarray:
        return self.metrics.select_ids(matchers)

    def key_of(self, sid: int) -> SeriesKey:
        return self.metrics.key_of(sid)

    def read_ids(
        self, ids: np.ndarray, start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        return self.metrics.read_ids(ids, start_ms, end_ms, limit_samples=limit_samples)

    def series(
        self, matcher_sets: Sequence[Sequence[Matcher]], start_ms: int | None, end_ms: int | None
    ) -> list[SeriesKey]:
        return self.metrics.series(matcher_sets, start_ms, end_ms)

    def label_names(
        self,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        return self.metrics.label_names(matcher_sets, start_ms, end_ms)

    def label_values(
        self,
        name: str,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]:
        return self.metrics.label_values(name, matcher_sets, start_ms, end_ms)

    def metadata(self, metric: str | None = None) -> dict[str, list[MetricMetadata]]:
        out = self.metrics.metadata(metric)
        if self.is_postgres:
            for name, mtype, help_, unit in self.catalog.metric_metadata():
                if metric is not None and name != metric:
                    continue
                try:
                    t = MetricType(mtype or "unknown")
                except ValueError:
                    t = MetricType.UNKNOWN
                out.setdefault(name, [MetricMetadata(name, t, help_ or "", unit or "")])
        return out

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """The shadow tables the topology reads (series spans; lineage mirrored from the catalog)."""
        self.metrics.refresh()
        with self._mirror_lock:  # two loops mirroring at once would copy the same rows twice
            self._mirror_lineage()
            self._mirror_configs()
        return self.metrics.cursor()

    def _mirror_lineage(self) -> None:
        since = self.metrics.lineage_watermark()
        if self.is_postgres:
            rows = self.catalog.lineage_since(since)
        else:
            cur = self.catalog.cursor()
            try:
                rows = cur.execute(
                    "SELECT ts, job_namespace, job_name, inputs, outputs FROM lineage WHERE ts > ? ORDER BY ts",
                    [since],
                ).fetchall()
            finally:
                cur.close()
        self.metrics.mirror_lineage(rows)

    def _mirror_configs(self) -> None:
        """Config snapshots newer than the shadow's, for drift (which reads ``configs`` there)."""
        since = self.metrics.configs_watermark()
        if self.is_postgres:
            snaps = self.catalog.configs(since + 1, 2**62)
            self.metrics.mirror_configs([config_row(c) for c in snaps])
            return
        cur = self.catalog.cursor()
        try:
            rows = cur.execute(
                "SELECT ts, entity, config, source FROM configs WHERE ts > ? ORDER BY ts", [since]
            ).fetchall()
        finally:
            cur.close()
        self.metrics.mirror_configs(rows)

    # ------------------------------------------------------------------ catalog
    def append_events(self, events: Sequence[Event]) -> int:
        return int(self.catalog.append_events(events))

    def query_events(
        self, start_ms: int, end_ms: int, kind: str | None = None, entity: Mapping[str, str] | None = None
    ) -> list[Event]:
        return list(self.catalog.query_events(start_ms, end_ms, kind, entity))

    def upsert_entities(self, entities: Sequence[Entity]) -> int:
        return int(self.catalog.upsert_entities(entities))

    def entities(self, kind: str | None = None) -> list[Entity]:
        return list(self.catalog.entities(kind))

    def append_relations(self, relations: Sequence[Relation]) -> int:
        return int(self.catalog.append_relations(relations))

    def relations(self) -> list[Relation]:
        return list(self.catalog.relations())

    def append_spans(self, spans: Sequence[Span]) -> int:
        return int(self.catalog.append_spans(spans))

    def query_spans(self, trace_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.catalog.query_spans(trace_id, limit))

    def append_logs(self, logs: Sequence[LogRecord]) -> int:
        return int(self.catalog.append_logs(logs))

    def append_lineage(self, events: Sequence[LineageEvent]) -> int:
        return int(self.catalog.append_lineage(events))

    def append_configs(self, snapshots: Sequence[ConfigSnapshot]) -> int:
        return int(self.catalog.append_configs(snapshots))

    @property
    def alerting_catalog(self) -> Any:
        """Where alerting keeps incidents and silences: PostgreSQL when the catalog is there, else
        the local DuckDB catalog's tables (attach mode without PostgreSQL)."""
        if self.is_postgres:
            return self.catalog
        from sightglass.alerting.catalog import DuckDBCatalog

        if self._duck_alerting is None:
            self._duck_alerting = DuckDBCatalog(self.catalog)
        return self._duck_alerting

    # ------------------------------------------------------------------ admin
    def stats(self) -> dict[str, Any]:
        cat = self.catalog.stats() if self.is_postgres else {"catalog": "duckdb"}
        out = {"store": "scale-out", **self.metrics.stats(), **cat, "newest_ms": self.newest_ms}
        if self.analytics is not None:
            out["analytics"] = self.analytics.status()
        if self.fleet is not None:
            out["fleet"] = self.fleet.status()
        return out

    def compact(self, *, force: bool = True) -> int:
        return 0  # both engines compact their own storage


def remote_options(m: Any) -> RemoteOptions:
    return RemoteOptions(
        url=m.url,
        remote_write_url=m.remote_write_url,
        timeout_s=parse_duration_ms(m.timeout) / 1000,
        refresh_every_s=parse_duration_ms(m.refresh_every) / 1000,
        span_resolution_ms=parse_duration_ms(m.span_resolution),
        discover_ms=parse_duration_ms(m.discover),
        probe=m.probe,
        headers=dict(m.headers),
    )


def open_scaleout(config: Config) -> ScaleOutStore | None:
    """The scale-out store the config's ``[backends]`` names, or None for the embedded store."""
    backends = load_backends(config.backends)
    if backends.metrics is None:
        return None
    Path(config.data).mkdir(parents=True, exist_ok=True)  # server.json lives there in every mode
    metrics = RemoteMetricStore(remote_options(backends.metrics))
    catalog: Any
    if backends.catalog.kind == "postgres":
        assert backends.catalog.dsn is not None
        catalog = PostgresCatalog(backends.catalog.dsn)
    else:
        from sightglass.store.duckdb import DuckDBStore, StoreOptions

        # only its catalog tables are used: no samples land here, so compaction has nothing to do
        catalog = DuckDBStore(Path(config.data), options=StoreOptions(compact_every_s=3600))
    return ScaleOutStore(metrics, catalog, backends)


def describe(store: ScaleOutStore) -> str:
    """One line for the start-up banner."""
    m = store.metrics
    mode = "read-only (attached)" if m.read_only else "remote-write"
    cat = "PostgreSQL" if store.is_postgres else "local DuckDB catalog"
    return json.dumps({"metrics": m.url, "mode": mode, "catalog": cat})
