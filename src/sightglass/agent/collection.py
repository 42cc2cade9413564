"""One collection cycle's output: samples (with metadata), events, config snapshots, relations.

Collectors write into a :class:`Collection`; the agent turns it into a remote-write body and a
catalog payload. Keeping this one small class as the only thing collectors know makes them easy to
test: run a collector against a fixture tree, read the collection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from sightglass.model import (
    ConfigSnapshot,
    Event,
    MetricMetadata,
    MetricType,
    Relation,
    SampleBatch,
    SampleBatchBuilder,
    SeriesKey,
)


@dataclass(slots=True)
class Collection:
    """Readings taken at ``ts_ms``. ``add`` skips ``None`` (not reported is not zero)."""

    ts_ms: int
    keys: list[SeriesKey] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    configs: list[ConfigSnapshot] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Collector name → why it produced nothing this cycle (one line)."""
    key_cache: dict[tuple[str, tuple[tuple[str, str], ...]], SeriesKey] = field(default_factory=dict)
    """``(metric, label items in insertion order)`` → series key; the agent shares one across cycles."""

    def add(
        self,
        metric: str,
        labels: Mapping[str, str],
        value: float | int | None,
        *,
        type: MetricType = MetricType.GAUGE,
        help: str = "",
        unit: str = "",
    ) -> None:
        if value is None:
            return
        v = float(value)
        if math.isinf(v):
            return
        if metric not in self.metadata:
            self.metadata[metric] = MetricMetadata(metric, type, help, unit)
        ck = (metric, tuple(labels.items()))
        key = self.key_cache.get(ck)
        if key is None:
            if len(self.key_cache) >= 200_000:
                self.key_cache.clear()  # label churn (short-lived PIDs): start over, stay bounded
            key = self.key_cache[ck] = SeriesKey.of(metric, labels)
        self.keys.append(key)
        self.values.append(v)

    def __len__(self) -> int:
        return len(self.values)

    def rows(self) -> list[tuple[SeriesKey, int, float]]:
        """``(series, ts_ms, value)`` of every sample (one timestamp: the collection's)."""
        t = self.ts_ms
        return [(k, t, v) for k, v in zip(self.keys, self.values, strict=True)]

    def batch(self) -> SampleBatch:
        """The samples as a :class:`SampleBatch` (a later sample of the same series wins nothing: both kept)."""
        b = SampleBatchBuilder()
        for k, v in zip(self.keys, self.values, strict=True):
            b.add(k, self.ts_ms, v)
        b.metadata.update(self.metadata)
        return b.build()

    def catalog_payload(self) -> dict[str, list[dict[str, object]]]:
        """The JSON the server's ``/api/v1/agent/catalog`` takes (see :mod:`sightglass.agent.routes`)."""
        return {
            "events": [
                {
                    "ts_ms": e.ts_ms,
                    "kind": e.kind,
                    "entity": dict(e.entity),
                    "attributes": dict(e.attributes),
                    "severity": e.severity,
                    "source": e.source,
                    **({"end_ts_ms": e.end_ts_ms} if e.end_ts_ms is not None else {}),
                }
                for e in self.events
            ],
            "configs": [
                {"ts_ms": c.ts_ms, "entity": dict(c.entity), "config": dict(c.config), "source": c.source}
                for c in self.configs
            ],
            "relations": [
                {
                    "src": r.src,
                    "kind": r.kind,
                    "dst": r.dst,
                    "start_ms": r.start_ms,
                    **({"end_ms": r.end_ms} if r.end_ms is not None else {}),
                }
                for r in self.relations
            ],
        }

    def has_catalog(self) -> bool:
        return bool(self.events or self.configs or self.relations)
