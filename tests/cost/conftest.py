from __future__ import annotations

from collections.abc import Iterator

import pytest
from cost_helpers import SIM_MINUTES, SIM_START, SimFactory

from sightglass.simulate.fast import run_ingest
from sightglass.store.duckdb import DuckDBStore, StoreOptions


@pytest.fixture(scope="session")
def sim_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFactory]:
    """A 4-node (32-GPU) simulated factory, 45 minutes, no faults, in a real DuckDB store."""
    data = tmp_path_factory.mktemp("cost-sim") / "data"
    with DuckDBStore(data, options=StoreOptions(compact_every_s=3600)) as store:
        _, sim = run_ingest(store, nodes=4, duration_s=SIM_MINUTES * 60, seed=7, start_ms=SIM_START)
    yield SimFactory(data, sim, SIM_START, SIM_START + SIM_MINUTES * 60_000)


@pytest.fixture(scope="session")
def sim_faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFactory]:
    """The same factory with a GPU falling off the bus (XID 79) under a training job at minute 8: the
    GPU's series stop, its job hangs until the NCCL watchdog kills it (FAILED)."""
    from sightglass.simulate.faults import ScriptedFault

    data = tmp_path_factory.mktemp("cost-sim-xid") / "data"
    fault = ScriptedFault("xid79_fell_off_bus", 8 * 60_000, 30 * 60_000, {"Hostname": "node-01", "gpu": "2"})
    with DuckDBStore(data, options=StoreOptions(compact_every_s=3600)) as store:
        _, sim = run_ingest(
            store, nodes=4, duration_s=SIM_MINUTES * 60, seed=7, start_ms=SIM_START, scripted=[fault]
        )
    yield SimFactory(data, sim, SIM_START, SIM_START + SIM_MINUTES * 60_000)
