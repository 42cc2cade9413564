from __future__ import annotations

import numpy as np

from sightglass.model import Matcher, SampleBatch
from sightglass.store.duckdb import DuckDBStore
from sightglass.units import canonical_of, select_canonical, sources_of


def test_known_aliases_map_to_one_concept_in_si() -> None:
    old, new = canonical_of("DCGM_FI_DEV_GPU_UTIL"), canonical_of("DCGM_FI_DEV_GPU_UTIL_RATIO")
    assert old is not None and new is not None and old.name == new.name == "hw.gpu.utilization"
    assert old.scale == 0.01 and new.scale == 1.0
    energy = canonical_of("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
    assert energy is not None and (energy.unit, energy.scale, energy.source_unit) == ("J", 0.001, "mJ")
    assert canonical_of("vllm:num_requests_running") is None
    assert "DCGM_FI_DEV_FB_USED" in sources_of("hw.gpu.memory.usage")


def test_mixed_fleet_reads_as_one_signal_with_source_kept(store: DuckDBStore) -> None:
    store.append(
        SampleBatch.from_rows(
            [
                ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "old-node", "gpu": "0"}, 1000, 87.0),
                ("DCGM_FI_DEV_GPU_UTIL_RATIO", {"hostname": "new-node", "gpu": "0"}, 1000, 0.5),
                ("DCGM_FI_DEV_FB_USED", {"Hostname": "old-node", "gpu": "0"}, 1000, 2.0),
            ]
        )
    )
    got = {
        s.key.label_dict()["source_metric"]: s
        for s in select_canonical(store, "hw.gpu.utilization", [], 0, 2000)
    }
    assert set(got) == {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO"}
    assert np.allclose(got["DCGM_FI_DEV_GPU_UTIL"].values, [0.87])
    assert got["DCGM_FI_DEV_GPU_UTIL"].key.metric == "hw.gpu.utilization"
    (mem,) = select_canonical(store, "hw.gpu.memory.usage", [Matcher("gpu", "=", "0")], 0, 2000)
    assert mem.values[0] == 2 * 1024 * 1024
    # the stored series keeps the source's name and value
    (raw,) = store.select([Matcher("__name__", "=", "DCGM_FI_DEV_GPU_UTIL")], 0, 2000)
    assert raw.values[0] == 87.0
