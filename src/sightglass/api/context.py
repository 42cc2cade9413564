"""What every route handler needs: the config, the store and the query engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from sightglass.config import Config, parse_duration_ms
from sightglass.promql.engine import Engine
from sightglass.store.duckdb import DuckDBStore
from sightglass.store.remote import RemoteEngine, RemoteMetricStore


@dataclass
class SelfMetrics:
    """Sightglass' own metrics, served at ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.ingested_samples = Counter(
            "sightglass_ingest_samples", "Samples accepted, by ingest path", ["path"], registry=r
        )
        self.rejected_requests = Counter(
            "sightglass_ingest_rejected_requests",
            "Requests rejected, by path and reason",
            ["path", "reason"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "sightglass_http_request_duration_seconds", "HTTP request latency", ["route"], registry=r
        )


@dataclass
class AppContext:
    config: Config
    store: DuckDBStore  # or a sightglass.scaleout.store.ScaleOutStore (same methods; see build)
    engine: Engine  # or a sightglass.store.remote.RemoteEngine (PromQL passed to the backend)
    metrics: SelfMetrics
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, config: Config, store: Any) -> AppContext:
        remote = getattr(store, "metrics", None)
        if isinstance(remote, RemoteMetricStore):  # a Prometheus-compatible backend evaluates PromQL
            engine: Any = RemoteEngine(remote, timeout_s=parse_duration_ms(config.query.timeout) / 1000)
        else:
            engine = Engine(
                store,
                lookback_ms=parse_duration_ms(config.query.lookback_delta),
                max_samples=config.query.max_samples,
            )
        return cls(config=config, store=store, engine=engine, metrics=SelfMetrics())
