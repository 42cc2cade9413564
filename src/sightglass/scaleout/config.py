"""The ``[backends]`` section: where metrics and the catalog live, and how replicas share work.

Example::

    [backends]
    metrics = { kind = "victoriametrics", url = "http://vm:8428",
                remote_write_url = "http://vm:8428/api/v1/write" }
    catalog = { kind = "postgres", dsn = "postgresql://sightglass@pg/sightglass" }
    replicas = { enabled = true, partitions = 8, lease_ttl = "15s" }

With no ``[backends]`` section Sightglass uses the embedded DuckDB store. ``sightglass up --attach URL``
is ``metrics = {kind = "prometheus", url = URL}`` without a remote-write URL: read-only.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sightglass.config import ConfigError, parse_duration_ms

METRIC_KINDS = ("prometheus", "victoriametrics", "mimir", "thanos", "remote")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(v: str) -> str:
    parse_duration_ms(v)
    return v


class MetricsBackend(_Model):
    """A Prometheus-compatible TSDB. ``url`` is its query API base (``http://prom:9090``; Mimir
    ``http://mimir/prometheus``); ``remote_write_url`` where to push (none = read-only)."""

    kind: Literal["prometheus", "victoriametrics", "mimir", "thanos", "remote"] = "prometheus"
    url: str
    remote_write_url: str | None = None
    timeout: str = "60s"
    refresh_every: str = "10s"
    span_resolution: str = "5m"
    discover: str = "6h"
    # the source data, not what rules write at the wall clock (ALERTS, level:metric:operation)
    probe: str = '{__name__=~".+",__name__!~"ALERTS|ALERTS_FOR_STATE|[^:]+:[^:]+:.+"}'
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url", "remote_write_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        return v

    @field_validator("timeout", "refresh_every", "span_resolution", "discover")
    @classmethod
    def _dur(cls, v: str) -> str:
        return _duration(v)


class CatalogBackend(_Model):
    """``postgres`` (shared by replicas; ``dsn`` a libpq URL) or ``duckdb`` (the local data dir)."""

    kind: Literal["postgres", "duckdb"] = "duckdb"
    dsn: str | None = None

    def model_post_init(self, _ctx: Any) -> None:
        if self.kind == "postgres" and not self.dsn:
            raise ValueError("catalog kind 'postgres' needs a dsn, e.g. postgresql://user@host/db")


class ReplicasConfig(_Model):
    """Partitioned analytics: ``partitions`` slices of the series (by host hash), leased in PostgreSQL
    for ``lease_ttl`` and renewed every ``heartbeat``; ``batch`` is the most one commit covers;
    ``backfill`` how far behind the newest sample a never-analysed partition starts."""

    enabled: bool = False
    id: str | None = None
    partitions: int = Field(default=8, ge=1, le=4096)
    lease_ttl: str = "15s"
    heartbeat: str = "3s"
    batch: str = "5m"
    backfill: str = "1h"

    @field_validator("lease_ttl", "heartbeat", "batch", "backfill")
    @classmethod
    def _dur(cls, v: str) -> str:
        return _duration(v)


class BackendsConfig(_Model):
    metrics: MetricsBackend | None = None
    catalog: CatalogBackend = Field(default_factory=CatalogBackend)
    replicas: ReplicasConfig = Field(default_factory=ReplicasConfig)

    @property
    def scale_out(self) -> bool:
        return self.metrics is not None

    def replica_id(self) -> str:
        return self.replicas.id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def load_backends(raw: dict[str, Any]) -> BackendsConfig:
    """Validate ``Config.backends``; errors name the setting (``backends.metrics.url: ...``)."""
    try:
        cfg = BackendsConfig.model_validate(raw or {})
    except ValidationError as e:
        lines = [f"  backends.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid [backends] configuration:\n" + "\n".join(lines)) from None
    if cfg.replicas.enabled and cfg.catalog.kind != "postgres":
        raise ConfigError(
            'backends.replicas.enabled needs backends.catalog.kind = "postgres" (leases live there)'
        )
    if cfg.replicas.enabled and cfg.metrics is None:
        raise ConfigError("backends.replicas.enabled needs backends.metrics (a shared TSDB)")
    if cfg.replicas.enabled and parse_duration_ms(cfg.replicas.heartbeat) * 2 > parse_duration_ms(
        cfg.replicas.lease_ttl
    ):
        raise ConfigError("backends.replicas.heartbeat must be at most half of backends.replicas.lease_ttl")
    if cfg.catalog.kind == "postgres" and cfg.metrics is None:
        raise ConfigError(
            "backends.catalog = postgres needs backends.metrics too (the embedded store keeps both)"
        )
    return cfg
