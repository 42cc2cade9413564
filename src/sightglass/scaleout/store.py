"""One store over two engines: metrics on a Prometheus-compatible TSDB, the catalog on PostgreSQL
(or, attached to a Prometheus without PostgreSQL, the local DuckDB file's catalog tables).

:class:`ScaleOutStore` has the methods the API, ingest, topology and analytics call on the embedded
store. It deliberately has no ``newest_ms`` attribute: the single-process analytics loop
(``sightglass.analytics.service``) then stays idle, and ``sightglass.scaleout.service`` runs the
partitioned one instead (leased in PostgreSQL when there are replicas), reading ``latest_ms()``.
"""

from __future__ import annotations

import json
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


class ScaleOutStore:
    """Metric calls go to :class:`RemoteMetricStore`, catalog calls to the catalog store."""

    def __init__(self, metrics: RemoteMetricStore, catalog: Any, backends: BackendsConfig) -> None:
        self.metrics = metrics
        self.catalog = catalog
        self.backends = backends
        self.is_postgres = isinstance(catalog, PostgresCatalog)
        self.analytics: Any = None  # the partitioned analytics loop, when the server runs one

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
        return self.metrics.newest_ms

    def refresh(self, *, force: bool = False) -> bool:
        return self.metrics.refresh(force=force)

    # ------------------------------------------------------------------ metrics
    def append(self, batch: SampleBatch, *, max_new_series: int | None = None) -> WriteResult:
        res = self.metrics.append(batch, max_new_series=max_new_series)
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
        return self.metrics.cursor()

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
        """Where alerting keeps incidents and silences: PostgreSQL when the catalog is there."""
        return self.catalog if self.is_postgres else None

    # ------------------------------------------------------------------ admin
    def stats(self) -> dict[str, Any]:
        cat = self.catalog.stats() if self.is_postgres else {"catalog": "duckdb"}
        out = {"store": "scale-out", **self.metrics.stats(), **cat}
        if self.analytics is not None:
            out["analytics"] = self.analytics.status()
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
