"""Two rules of the default pack against the simulator, each both ways: it fires on the fault it is
for, and stays quiet on a healthy factory where a looser rule would fire.

- ``VllmInterTokenLatencyRegression``: a bad deploy that slows a model's tokens (1.7x) is caught
  against the model's own recent past, on that model only (at seed 15 it stays inside the ITL SLO:
  ``bench/alerting.py faults --seed 15`` saw no SLO burn alert for it).
- ``GpuPowerThrottling``: at seed 15 a busy training job holds its GPUs at their full default power
  limit for most of the run; that is the GPU working as designed, so only a lowered limit fires.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sightglass.alerting.rules import default_rule_paths, load_rule_file
from sightglass.promql.engine import Engine
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.timeutil import parse_time_ms

START = parse_time_ms("2026-11-16T00:00:00Z")
MIN = 60_000


def _expr(name: str) -> str:
    for p in default_rule_paths():
        for g in load_rule_file(p):
            for r in g.rules:
                if r.name == name:
                    return r.expr
    raise AssertionError(f"{name} is not in the default pack")


def _store(tmp: Path, scripted: list[ScriptedFault]) -> tuple[DuckDBStore, object]:
    store = DuckDBStore(tmp / "data", options=StoreOptions(compact_every_s=3600))
    _, sim = run_ingest(store, nodes=8, duration_s=30 * 60, seed=15, start_ms=START, scripted=scripted,
                        fault_every_s=None, workdir=tmp)  # fmt: skip
    return store, sim


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    store, _ = _store(tmp_path_factory.mktemp("healthy"), [])
    try:
        yield store
    finally:
        store.close()


def _fires(store: DuckDBStore, expr: str, minutes: range) -> dict[int, list[dict[str, str]]]:
    eng = Engine(store)
    out = {}
    for m in minutes:
        got = eng.instant(expr, START + m * MIN).vector
        if got:
            out[m] = [s.labels for s in got]
    return out


def test_itl_regression_catches_a_slowed_deploy_on_its_model_and_not_a_healthy_factory(
    healthy: DuckDBStore, tmp_path: Path
) -> None:
    expr = _expr("VllmInterTokenLatencyRegression")
    assert not _fires(healthy, expr, range(5, 31)), "fires on a healthy factory"
    store, sim = _store(tmp_path, [ScriptedFault("bad_deploy", 10 * MIN, 15 * MIN, {})])
    try:
        truth = next(f.truth() for f in sim.faults if f.state.get("started"))  # type: ignore[attr-defined]
        match = truth["root"]["match"]
        fired = _fires(store, expr, range(10, 26))
        assert fired, "the slowed model never crossed 1.4x"
        first = min(fired)
        assert 12 <= first <= 20, fired
        names = {lab.get("model_name") for labs in fired.values() for lab in labs}
        assert names == {match["model_name"]}, (match, names)
    finally:
        store.close()


def test_power_throttling_at_the_default_limit_is_not_an_alert_but_a_lowered_limit_is(
    healthy: DuckDBStore, tmp_path: Path
) -> None:
    expr = _expr("GpuPowerThrottling")
    loose = "max by (Hostname, gpu, UUID) (rate(DCGM_FI_DEV_POWER_VIOLATION[5m])) / 1e6 > 0.5"
    assert _fires(healthy, loose, range(10, 31, 5)), "seed 15 no longer has GPUs throttling at their limit"
    assert not _fires(healthy, expr, range(5, 31)), "fires on GPUs at their full default limit"
    # node-01 runs the busy training job: a cap of 400 W on its H100s throttles it
    store, _ = _store(tmp_path, [ScriptedFault("power_cap", 10 * MIN, 15 * MIN, {"Hostname": "node-01"})])
    try:
        fired = _fires(store, expr, range(12, 26))
        assert fired, "a lowered power limit that throttles did not fire"
        hosts = {lab["Hostname"] for labs in fired.values() for lab in labs}
        assert hosts == {"node-01"}, hosts
    finally:
        store.close()
