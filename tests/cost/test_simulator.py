"""On a simulated factory the report equals the price sheet applied to the simulator's own allocations.

The expected figures come from the simulator's ground truth (its services, idle-held notebook pods and
Slurm jobs with their exact bounds, its factory's price sheet), never from the attribution under test.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cost_helpers import SimFactory

from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.prices import PriceSheet
from sightglass.store.duckdb import DuckDBStore


def _sheet_from_factory(prices: dict[str, Any]) -> PriceSheet:
    """The simulator's own price sheet (factory.json "prices") as a TOML-equivalent dict."""
    return PriceSheet.from_dict(
        {
            "name": "simulator factory.json",
            "version": [
                {
                    "effective": "2020-01-01",
                    "gpu": {
                        k: {"pricing": "cloud", "on_demand_usd_per_gpu_hour": str(v)}
                        for k, v in prices["gpu_hour_usd"].items()
                    },
                }
            ],
        }
    )


def _truth(f: SimFactory) -> tuple[dict[str, Fraction], Fraction]:
    """Workload id -> exact micro-dollars, and the fleet's, from the simulator's records."""
    sim = f.sim
    fac = sim.factory
    rate = {k: Fraction(str(v)) * 1_000_000 for k, v in fac.prices["gpu_hour_usd"].items()}
    a, b = f.start_ms, f.end_ms

    def cost(gpus: list[int], start: int, end: int | None) -> Fraction:
        lo, hi = max(a, start), min(b, end if end is not None else b)
        if hi <= lo:
            return Fraction(0)
        return sum((rate[fac.node_of_gpu(g).profile.name] * (hi - lo) / 3_600_000 for g in gpus), Fraction(0))

    out: dict[str, Fraction] = {}
    for svc in sim.services:
        for node, pod in zip(svc.nodes, svc.pods, strict=True):
            out[f"pod:inference/{pod}"] = cost(list(range(node * 8, node * 8 + 8)), a, None)
    for h in sim.holds:
        out[f"pod:{h.namespace}/{h.pod}"] = cost(list(h.gpus), a, None)
    records = [(r["job_id"], r["nodes"], r["start"], r["end"]) for r in sim.job_records]
    records += [(j.job_id, [fac.nodes[n].hostname for n in j.nodes], j.start_ms, None) for j in sim.jobs]
    host_index = {n.hostname: n.index for n in fac.nodes}
    for job_id, hosts, start, end in records:
        gpus = [host_index[h] * 8 + i for h in hosts for i in range(8)]
        c = cost(gpus, start, end)
        if c:
            out[f"job:{job_id}"] = c
    fleet = cost(list(range(fac.n_gpus)), a, None)
    return out, fleet


def test_report_matches_simulator_ground_truth(sim_factory: SimFactory) -> None:
    f = sim_factory
    truth, fleet = _truth(f)
    assert any(k.startswith("job:") for k in truth) and len(truth) >= 4
    sheet = _sheet_from_factory(f.sim.factory.prices)
    with DuckDBStore(f.data, read_only=True) as store:
        an = CostAnalysis.run(store, f.start_ms, f.end_ms, prices=sheet)
    an.ledger.check()
    rep = an.report("workload")
    got = {r["key"]: r["cost_micro_usd"] for r in rep["rows"]}
    unalloc = got.pop("(unallocated)")
    assert set(got) == set(truth)
    for wid, exact in truth.items():
        # each GPU total is rounded once: at most one micro-dollar per GPU apart
        assert abs(got[wid] - exact) <= 32, (wid, got[wid], float(exact))
    assert abs(rep["totals"]["fleet_micro_usd"] - fleet) <= 32
    # the unallocated row is exactly what nobody held: fleet minus every workload
    assert abs(unalloc - (fleet - sum(truth.values()))) <= 32
    # and the report reconciles to the micro-dollar
    assert rep["reconciliation"]["exact"]
    assert sum(r["cost_micro_usd"] for r in rep["rows"]) == rep["totals"]["fleet_micro_usd"]


def test_team_rollup_matches_ground_truth(sim_factory: SimFactory) -> None:
    f = sim_factory
    truth, _ = _truth(f)
    sim = f.sim
    team_of: dict[str, str] = {}
    for svc in sim.services:
        for pod in svc.pods:
            team_of[f"pod:inference/{pod}"] = svc.team
    for h in sim.holds:
        team_of[f"pod:{h.namespace}/{h.pod}"] = h.team
    for r in sim.job_records:
        team_of[f"job:{r['job_id']}"] = r["account"]
    for j in sim.jobs:
        team_of[f"job:{j.job_id}"] = j.team
    want: dict[str, Fraction] = {}
    for wid, c in truth.items():
        want[team_of[wid]] = want.get(team_of[wid], Fraction(0)) + c
    with DuckDBStore(f.data, read_only=True) as store:
        rep = CostAnalysis.run(
            store, f.start_ms, f.end_ms, prices=_sheet_from_factory(sim.factory.prices)
        ).report("team")
    got = {r["key"]: r["cost_micro_usd"] for r in rep["rows"] if r["key"] != "(unallocated)"}
    assert set(got) == set(want)
    for team, exact in want.items():
        assert abs(got[team] - exact) <= 32, team


def test_idle_held_notebooks_show_as_idle_spend(sim_factory: SimFactory) -> None:
    """The simulator's idle notebook pods hold GPUs doing nothing: after the KPI's 30 minutes they are
    idle-held, and nothing else is (no faults in this run)."""
    f = sim_factory
    sim = f.sim
    with DuckDBStore(f.data, read_only=True) as store:
        an = CostAnalysis.run(store, f.start_ms, f.end_ms, prices=_sheet_from_factory(sim.factory.prices))
    idle = {
        ln.workload.id for ln in an.ledger.lines if ln.category == "idle_held" and ln.micro and ln.workload
    }
    holds = {f"pod:{h.namespace}/{h.pod}" for h in sim.holds}
    assert idle == holds
    rate = Fraction(
        str(
            sim.factory.prices["gpu_hour_usd"][
                "A100" if sim.factory.is_a100[sim.holds[0].gpus[0]] else "H100"
            ]
        )
    )
    idle_micro = sum(ln.micro for ln in an.ledger.lines if ln.category == "idle_held")
    # idle for the last 15 of 45 minutes (the rule needs 30 minutes of history), one 10-s step either way
    expect = rate * 1_000_000 * len(sim.holds[0].gpus) * Fraction(15, 60)
    step = rate * 1_000_000 * len(sim.holds[0].gpus) * Fraction(10, 3600)
    assert abs(idle_micro - expect) <= step + 8


def test_idle_rule_matches_the_analytics_kpi(sim_factory: SimFactory) -> None:
    """The on-the-fly idle-held flags (used when the store has no KPI series) equal what
    :class:`sightglass.analytics.kpi.KpiComputer` writes, sample for sample."""
    from sightglass.analytics.kpi import KpiComputer, KpiConfig
    from sightglass.cost.sources import _kpi_input, idle_flags

    f = sim_factory
    cfg = KpiConfig()
    with DuckDBStore(f.data, read_only=True) as store:
        data = _kpi_input(store, f.start_ms, f.end_ms, cfg.step_ms)
    ours = idle_flags(data, f.start_ms, f.end_ms, cfg)
    batch = KpiComputer(cfg).compute(data, f.start_ms, f.end_ms).build()
    theirs: dict[str, list[tuple[int, float]]] = {}
    for i, key in enumerate(batch.series):
        if key.metric == "sightglass_gpu_idle_held":
            sel = batch.series_index == i
            theirs[key.label_dict()["UUID"]] = list(
                zip(batch.ts_ms[sel].tolist(), batch.values[sel].tolist(), strict=True)
            )
    assert len(theirs) == 32 and any(v for rows in theirs.values() for _, v in rows)
    for gid, (ts, flags) in ours.items():
        assert list(zip(ts.tolist(), flags.tolist(), strict=True)) == theirs[gid[0]]


def test_roi_against_the_benchmark_cloud_price(sim_factory: SimFactory) -> None:
    """ROI: the used GPU-hours at the default sheet's benchmark prices (AWS $6.88/H100-h, GCP
    $5.07/A100-h) against what the fleet cost at the sheet's own rates."""
    f = sim_factory
    with DuckDBStore(f.data, read_only=True) as store:
        an = CostAnalysis.run(store, f.start_ms, f.end_ms, prices=PriceSheet.default())
    used_h = {"H100": Fraction(0), "A100": Fraction(0)}
    for ln in an.ledger.lines:
        if ln.category == "used":
            used_h[ln.gpu_key] += ln.gpu_ms / 3_600_000
    roi = an.report("team")["roi"]
    want = used_h["H100"] * Fraction("6.88") + used_h["A100"] * Fraction("5.07")
    assert abs(Fraction(roi["benchmark_for_used_gpu_hours_usd"]) - want) < Fraction(1, 10**6)
    assert roi["paying_off"] == (want >= Fraction(roi["fleet_usd"]))
    assert roi["gpu_models_without_benchmark"] == []


def test_ground_truth_holds_when_a_gpu_falls_off_the_bus(sim_faulty: SimFactory) -> None:
    """XID 79: the GPU's series stop but it is still paid for; its job fails at the watchdog. The
    report still equals the simulator's allocations x prices, and the failed job's lost work shows."""
    f = sim_faulty
    truth, fleet = _truth(f)
    failed = [r for r in f.sim.job_records if r["state"] == "FAILED" and r["end"] > f.start_ms]
    assert failed, "the fault should have failed a job"
    with DuckDBStore(f.data, read_only=True) as store:
        an = CostAnalysis.run(store, f.start_ms, f.end_ms, prices=_sheet_from_factory(f.sim.factory.prices))
        from sightglass.cost.training import job_costs

        jobs = {j.job: j for j in job_costs(an.ledger, store, an.inputs.allocations, an.inputs.topology)}
    an.ledger.check()
    assert len(an.ledger.gpu_totals) == f.sim.factory.n_gpus  # the lost GPU is still in the fleet
    rep = an.report("workload")
    got = {r["key"]: r["cost_micro_usd"] for r in rep["rows"]}
    unalloc = got.pop("(unallocated)")
    assert set(got) == set(truth)
    for wid, exact in truth.items():
        assert abs(got[wid] - exact) <= 32, wid
    assert abs(rep["totals"]["fleet_micro_usd"] - fleet) <= 32
    assert abs(unalloc - (fleet - sum(truth.values()))) <= 32
    j = jobs[f"job:{failed[0]['job_id']}"]
    assert j.state == "FAILED" and j.stalled_fraction > 0 and j.lost_ms > 0
    d = j.to_dict()
    assert float(d["wasted_usd"]) > 0 and d["goodput_ratio"] < 1
