"""One simulated factory with faults, analysed end to end like the server does, shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from analytics_helpers import Analysed

from sightglass.analytics.evaluate import START_MS
from sightglass.analytics.service import AnalyticsService
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions

MINUTES = 45


@pytest.fixture(scope="package")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    path = tmp_path_factory.mktemp("analysed") / "data"
    store = DuckDBStore(path, options=StoreOptions(compact_every_s=3600))
    scripted = [
        ScriptedFault("straggler_rank", 20 * 60_000, 15 * 60_000, {}),
        ScriptedFault("driver_drift", 25 * 60_000, 30 * 60_000, {}),
        ScriptedFault("pipeline_stall", 15 * 60_000, 30 * 60_000, {}),
    ]
    _, sim = run_ingest(
        store,
        nodes=4,
        duration_s=MINUTES * 60,
        seed=11,
        start_ms=START_MS,
        scripted=scripted,
        fault_every_s=None,
    )
    svc = AnalyticsService(store, interval_ms=0, history_ms=15 * 60_000)
    end = START_MS + MINUTES * 60_000
    t = START_MS + 15 * 60_000
    while True:  # the server's loop, in 2.5-minute batches
        svc.step_until(t)
        if t >= end:
            break
        t = min(t + 150_000, end)
    try:
        yield Analysed(store, sim, svc, path, end)
    finally:
        store.close()
