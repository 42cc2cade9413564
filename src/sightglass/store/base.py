"""The store interface every backend implements (embedded DuckDB now; remote TSDB + PostgreSQL later)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sightglass.model import (
    ConfigSnapshot,
    Entity,
    Event,
    LineageEvent,
    LogRecord,
    Matcher,
    MetricMetadata,
    Relation,
    SampleBatch,
    SeriesData,
    SeriesKey,
    Span,
)


class StoreError(Exception):
    """A store operation failed; the message says why."""


class LimitExceeded(StoreError):
    """A write would break a configured limit (e.g. too many new series in one request)."""


@dataclass(slots=True)
class WriteResult:
    samples_written: int = 0
    new_series: int = 0
    histograms_written: int = 0
    rejected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_written": self.samples_written,
            "new_series": self.new_series,
            "histograms_written": self.histograms_written,
            "rejected": self.rejected,
        }


class MetricStore(Protocol):
    """Metrics: write batches durably, read back by label matchers over a time range."""

    def append(self, batch: SampleBatch, *, max_new_series: int | None = None) -> WriteResult:
        """Persist ``batch``; when this returns the data survives a crash."""
        ...

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, *, limit_samples: int | None = None
    ) -> list[SeriesData]:
        """Samples of every series matching all ``matchers`` with ``start_ms <= ts <= end_ms``."""
        ...

    def select_ids(self, matchers: Sequence[Matcher]) -> np.ndarray: ...

    def series(
        self, matcher_sets: Sequence[Sequence[Matcher]], start_ms: int | None, end_ms: int | None
    ) -> list[SeriesKey]: ...

    def label_names(
        self,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]: ...

    def label_values(
        self,
        name: str,
        matcher_sets: Sequence[Sequence[Matcher]] = (),
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[str]: ...

    def metadata(self, metric: str | None = None) -> dict[str, list[MetricMetadata]]: ...


class CatalogStore(Protocol):
    """Everything that is not a metric sample: events, entities, traces, logs, lineage, configs."""

    def append_events(self, events: Sequence[Event]) -> int: ...
    def query_events(
        self, start_ms: int, end_ms: int, kind: str | None = None, entity: Mapping[str, str] | None = None
    ) -> list[Event]: ...
    def upsert_entities(self, entities: Sequence[Entity]) -> int: ...
    def append_relations(self, relations: Sequence[Relation]) -> int: ...
    def append_spans(self, spans: Sequence[Span]) -> int: ...
    def append_logs(self, logs: Sequence[LogRecord]) -> int: ...
    def append_lineage(self, events: Sequence[LineageEvent]) -> int: ...
    def append_configs(self, snapshots: Sequence[ConfigSnapshot]) -> int: ...
