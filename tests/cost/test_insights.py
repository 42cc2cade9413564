"""Idle spenders and the consolidation estimate on a hand-built fleet (numbers checked by hand)."""

from __future__ import annotations

import numpy as np

from sightglass.cost.insights import idle_insights
from sightglass.cost.ledger import Allocation, Gpu, Workload, build_ledger
from sightglass.cost.prices import PriceSheet
from sightglass.cost.sources import GpuUsage, Inputs

T0 = 1_767_225_600_000
HOUR = 3_600_000
SHEET = PriceSheet.from_dict(
    {"version": [{"effective": "2020-01-01", "gpu": {"H100": {"on_demand_usd_per_gpu_hour": "2"}}}]}
)


def _inputs(mem: float) -> Inputs:
    fleet = [Gpu(f"gpu:{i}", f"node:n{i // 8}", "NVIDIA H100 80GB HBM3") for i in range(12)]
    lazy = [Workload(f"pod:ml/lazy{k}", "pod", team="ml") for k in range(2)]
    nb = Workload("pod:notebooks/jupyter-ana", "pod", team="ana", project="notebooks", name="jupyter-ana")
    job = Workload("job:5", "job", team="nlp", name="train-5")
    allocs = [Allocation(lazy[g // 4], f"gpu:{g}", T0, T0 + HOUR) for g in range(8)]
    allocs += [Allocation(nb, f"gpu:{g}", T0, T0 + HOUR) for g in (8, 9)]
    allocs += [Allocation(job, "gpu:10", T0, T0 + HOUR)]
    ts = np.arange(T0, T0 + HOUR, 10_000)
    usage = {}
    for g in fleet:
        i = int(g.id[4:])
        sm = 0.1 if i < 8 else (0.0 if i < 10 else 0.8)
        usage[g.id] = GpuUsage(g, {}, ts, np.full(len(ts), sm))
    idle = {f"gpu:{g}": [(T0 + HOUR // 2, T0 + HOUR)] for g in (8, 9)}
    memory = {f"gpu:{g}": mem for g in range(8)}
    return Inputs(T0, T0 + HOUR, 10_000, fleet, usage, allocs, idle, "test", None, memory)


def test_consolidation_needs_compute_and_memory() -> None:
    for mem, needed, bound in ((0.05, 2, "compute"), (0.2, 2, "memory"), (0.9, 8, "memory")):
        inp = _inputs(mem)
        led = build_ledger(inp.fleet, inp.allocations, SHEET, T0, T0 + HOUR, idle=inp.idle)
        out = idle_insights(led, inp)
        c = out["consolidation"]
        # 8 GPUs at 10 % SM: 0.8 GPU-equivalents / 0.7 target = 1.14 -> 2 GPUs of compute; memory
        # 8 x 0.05 / 0.9 = 0.44, 8 x 0.2 / 0.9 = 1.78 (-> 2) or 8 x 0.9 / 0.9 = 8. The notebook's busy
        # half hour on 2 GPUs at 0 % SM is under-used too: 9 GPUs held on average.
        assert c["gpus_needed_if_packed"] == needed and c["packing_bound_by"] == bound, (mem, c)
        assert c["underused_gpus_held_average"] == 9.0
        assert c["gpus_freed_by_packing_underused"] == 9 - needed
        # the notebook: 2 GPUs idle-held for half the hour = 1 GPU on average, $2 of idle spend
        assert c["idle_held_gpus_average"] == 1.0 and c["gpus_freed_by_releasing_idle_held"] == 1
        top = out["top_idle_spenders"]
        assert [t["workload"]["id"] for t in top] == ["pod:notebooks/jupyter-ana"]
        assert top[0]["idle_held_usd"] == "2.000000" and top[0]["idle_usd_per_day"] == "48.000000"
        assert "cull notebook jupyter-ana" in top[0]["action"]
        assert "job:5" not in c["underused_workloads"] and "pod:ml/lazy0" in c["underused_workloads"]
