"""The incremental loop: per batch of new samples, update the topology, score, keep events.

:class:`AnomalyRunner` holds the state between batches (topology builder, baselines, CUSUM sums,
open anomalies) and a watermark; each :meth:`~AnomalyRunner.step` reads only the rows after it.
Anomalies and change points are appended to the store as events (``anomaly.entity``,
``anomaly.changepoint``) so RCA, the API and the dashboard read them back like any other event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sightglass.analytics.anomaly import AnomalyConfig, AnomalyReport, FactoryAnomalyDetector
from sightglass.analytics.signals import SignalConfig, load_signals
from sightglass.topology.infer import TopologyBuilder


@dataclass(slots=True)
class AnomalyRunner:
    builder: TopologyBuilder = field(default_factory=TopologyBuilder)
    config: AnomalyConfig = field(default_factory=AnomalyConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    history_ms: int = 15 * 60_000
    write_events: bool = True
    detector: FactoryAnomalyDetector | None = None
    watermark_ms: int | None = None

    def step(self, store: Any, until_ms: int) -> AnomalyReport:
        """Fold in everything up to ``until_ms``: the first call fits on ``history_ms`` before it."""
        topo = self.builder.update(store)
        step = self.signals.step_ms
        until_ms -= until_ms % step
        if self.detector is None or self.watermark_ms is None:
            self.detector = FactoryAnomalyDetector(topo, self.config)
            frame = load_signals(
                store, until_ms - self.history_ms, until_ms, builder=self.builder, config=self.signals
            )
            self.detector.fit(frame)
            self.watermark_ms = until_ms
            return AnomalyReport()
        if until_ms <= self.watermark_ms:
            return AnomalyReport()
        start = self.watermark_ms + step
        frame = load_signals(store, start, until_ms, builder=self.builder, config=self.signals)
        events = store.query_events(start - step, until_ms)
        report = self.detector.detect(frame, events)
        self.watermark_ms = until_ms
        if self.write_events:
            evs = report.to_events()
            if evs:
                store.append_events(evs)
        return report
