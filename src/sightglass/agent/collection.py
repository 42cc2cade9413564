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
    builder: SampleBatchBuilder = field(default_factory=SampleBatchBuilder)
    events: list[Event] = field(default_factory=list)
    configs: list[ConfigSnapshot] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Collector name → why it produced nothing this cycle (one line)."""

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
        if metric not in self.builder.metadata:
            self.builder.metadata[metric] = MetricMetadata(metric, type, help, unit)
        self.builder.add(SeriesKey.of(metric, labels), self.ts_ms, v)

    def __len__(self) -> int:
        return len(self.builder)

    def batch(self) -> SampleBatch:
        return self.builder.build()

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
