"""KPIs from a simulated factory, written back and read with the store like any series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sightglass.analytics.evaluate import START_MS
from sightglass.analytics.kpi import KpiComputer, decode_reasons, xid_severity
from sightglass.model import Matcher
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions


def test_decode() -> None:
    assert decode_reasons(0x001) == []  # idle is benign
    assert decode_reasons(0x048) == ["HW_SLOWDOWN", "HW_THERMAL"]
    assert xid_severity(79) == "critical" and xid_severity(13) == "warning"


def test_kpis_of_simulated_factory(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "d", options=StoreOptions(compact_every_s=3600))
    try:
        scripted = [ScriptedFault("gpu_thermal", 5 * 60_000, 10 * 60_000, {})]
        _, sim = run_ingest(
            store, nodes=4, duration_s=2400, seed=3, start_ms=START_MS, scripted=scripted, fault_every_s=None
        )
        k = KpiComputer()
        end = START_MS + 2400 * 1000
        k.step(store, START_MS + 20 * 60_000, start_ms=START_MS)
        k.step(store, end)  # incremental: the second batch continues the first's state
        f = sim.factory
        root = sim.faults[0].root  # the simulator picks a busy GPU
        held = {
            s.key.label_dict()["UUID"]
            for s in store.select([Matcher("__name__", "=", "sightglass_gpu_idle_held")], end - 1, end)
            if s.values[-1] == 1.0
        }
        want = {f.gpu_uuid[g] for h in sim.holds for g in h.gpus}
        assert want and held == want
        util = store.select([Matcher("__name__", "=", "sightglass_gpu_sm_active_ratio")], START_MS, end)
        assert len(util) == f.n_gpus and all(np.nanmax(s.values) <= 1.0 for s in util)
        thermal = store.select(
            [
                Matcher("__name__", "=", "sightglass_gpu_throttle_seconds_total"),
                Matcher("reason", "=~", "SW_THERMAL|HW_THERMAL"),
                Matcher("Hostname", "=", root["Hostname"]),
                Matcher("gpu", "=", root["gpu"]),
            ],
            START_MS,
            end,
        )
        assert thermal and max(s.values[-1] for s in thermal) >= 60  # minutes of a 10-minute fault
        others = store.select(
            [
                Matcher("__name__", "=", "sightglass_gpu_throttle_seconds_total"),
                Matcher("reason", "=", "HW_THERMAL"),
                Matcher("Hostname", "!=", root["Hostname"]),
            ],
            START_MS,
            end,
        )
        assert all(s.values[-1] == 0 for s in others)
    finally:
        store.close()
