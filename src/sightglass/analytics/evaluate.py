"""Entity-level anomaly quality on the simulator's fault catalogue.

``python -m sightglass.analytics.evaluate [--nodes 8] [--seeds 2] [--minutes 50]`` simulates one
fault per case straight into a temporary store (fault at 50 % of the run), runs the incremental
:class:`~sightglass.analytics.runner.AnomalyRunner` over it in 5-minute batches after a 15-minute
fit, and prints per fault class:

- ``recall``: share of cases whose root entity (the simulator's ground truth) was flagged with an
  onset inside the fault (from 1 min before its start to 2 min after its end);
- ``precision``: of the entities *of the root's kind* flagged inside the fault, the share that
  were the root (other kinds are symptoms: a job slowed by its throttled GPU is not a false alarm);
- ``fa/h``: entities flagged per hour before the fault started (false alarms on a healthy factory);
- ``ttd``: median seconds from fault start to detection, over the hits.

Config drift and change, in the same cases (:class:`~sightglass.analytics.drift.ConfigTracker`
stepped every 30 s, as the server does): for ``driver_drift`` whether the root node was reported
drifting on ``driver_version`` and how fast; for every case the drifts opened on anything else
(false drifts); for the faults that change a setting (``driver_drift``, ``power_cap``,
``bad_deploy``) whether a ``config.change`` with before/after was reported on the root.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.analytics.anomaly import AnomalyConfig
from sightglass.analytics.drift import ConfigTracker
from sightglass.analytics.runner import AnomalyRunner
from sightglass.simulate.faults import CATALOGUE, ScriptedFault
from sightglass.topology.infer import TopologyBuilder

START_MS = 1_794_787_200_000  # 2026-11-16T00:00:00Z


def root_entity(root: dict[str, str], kind: str) -> str | None:
    """The simulator's ground-truth root (labels in the data's own terms) as an entity id."""
    if "gpu" in root and "Hostname" in root:
        return f"gpu:{root['Hostname']}/{root['gpu']}"  # resolved to the UUID by the caller
    if "device" in root and "instance" in root:
        return f"nic:{root['instance'].rsplit(':', 1)[0]}/{root['device']}"
    if "Hostname" in root:
        return f"node:{root['Hostname']}"
    for label, prefix in (
        ("switch", "switch"),
        ("pipeline", "pipeline"),
        ("model_name", "model"),
        ("slurm_job_id", "job"),
    ):
        if label in root:
            return f"{prefix}:{root[label]}"
    if "export" in root:
        return f"storage:{root['export'].split(':', 1)[0]}"
    return None


@dataclass(slots=True)
class CaseResult:
    fault: str
    seed: int
    root: str | None
    hit: bool
    same_kind_flagged: int
    false_alarms_pre: int
    pre_hours: float
    ttd_s: float | None
    flagged: list[str] = field(default_factory=list)
    drift_hit: bool = False  # driver_drift: the root node drifting on driver_version
    drift_ttd_s: float | None = None
    false_drifts: list[str] = field(default_factory=list)  # drifts opened on anything else
    change_hit: bool | None = None  # a setting-changing fault: a config.change on the root

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "seed": self.seed,
            "root": self.root,
            "hit": self.hit,
            "same_kind_flagged": self.same_kind_flagged,
            "false_alarms_pre": self.false_alarms_pre,
            "ttd_s": self.ttd_s,
            "flagged": self.flagged,
            "drift_hit": self.drift_hit,
            "drift_ttd_s": self.drift_ttd_s,
            "false_drifts": self.false_drifts,
            "change_hit": self.change_hit,
        }


def run_case(
    fault: str, seed: int, *, nodes: int, minutes: float, workdir: Path, config: AnomalyConfig | None = None
) -> CaseResult:
    from sightglass.simulate.fast import run_ingest
    from sightglass.store.duckdb import DuckDBStore, StoreOptions

    dur_s = minutes * 60
    at_s = int(dur_s * 0.5 // 10 * 10)
    lo, _hi = CATALOGUE[fault].duration_s
    scripted = [ScriptedFault(fault, at_s * 1000, int(min(lo, dur_s - at_s) * 1000), {})]
    store = DuckDBStore(workdir / f"{fault}-{seed}", options=StoreOptions(compact_every_s=3600))
    try:
        _, sim = run_ingest(
            store,
            nodes=nodes,
            duration_s=dur_s,
            seed=seed,
            start_ms=START_MS,
            scripted=scripted,
            fault_every_s=None,
        )
        truth = next(f for f in sim.faults if f.state.get("started"))
        builder = TopologyBuilder()
        builder.add_inventory(sim.factory.describe())
        runner = AnomalyRunner(builder=builder, config=config or AnomalyConfig(), write_events=False)
        fit_until = START_MS + runner.history_ms
        runner.step(store, fit_until)
        anomalies = []
        t = fit_until
        end = START_MS + int(dur_s * 1000)
        while t < end:
            t = min(t + 5 * 60_000, end)
            anomalies.extend(runner.step(store, t).anomalies)
        drift = _drift_case(store, truth, fit_until, end)
        root = root_entity(truth.root, truth.cls.root_kind)
        if root and root.startswith("gpu:") and "/" in root:
            host, idx = root[4:].split("/")
            root = builder._gpu_alias.get((host, idx), root)
        lo_ms, hi_ms = truth.start_ms - 60_000, truth.end_ms + 120_000
        inside = [
            a
            for a in anomalies
            if lo_ms <= a.onset_ms <= hi_ms or (a.onset_ms < lo_ms and a.detected_ms >= truth.start_ms)
        ]
        inside = [a for a in inside if a.detected_ms >= truth.start_ms - 60_000]
        pre = [a for a in anomalies if a.detected_ms < truth.start_ms]
        kind = root.split(":", 1)[0] if root else ""
        hits = [a for a in inside if a.entity == root]
        return CaseResult(
            fault,
            seed,
            root,
            bool(hits),
            sum(1 for a in inside if a.kind == kind),
            len(pre),
            (truth.start_ms - fit_until) / 3_600_000,
            (hits[0].detected_ms - truth.start_ms) / 1000 if hits else None,
            sorted({a.entity for a in inside}),
            **drift,
        )
    finally:
        store.close()


CHANGING = {
    "driver_drift": "driver_version",
    "power_cap": "power_limit_w",
    "bad_deploy": "vllm.gpu_memory_utilization",
}


def _drift_case(store: Any, truth: Any, fit_until: int, end: int) -> dict[str, Any]:
    """Stream the config tracker over the case every 30 s; score it against the injected fault."""
    tracker = ConfigTracker(write_events=False)
    tracker.step(store, fit_until)
    opened: list[tuple[Any, int]] = []
    changes: list[Any] = []
    t = fit_until
    while t < end:
        t = min(t + 30_000, end)
        r = tracker.step(store, t)
        opened.extend((d, t) for d in r.opened)
        changes.extend(r.changes)
    root = root_entity(truth.root, truth.cls.root_kind) or ""

    def on_root(entity: str) -> bool:
        if entity == root:
            return True
        if root.startswith("node:") and tracker.group_hint.get(entity) == root:
            return True  # a GPU of the root node
        return root.startswith("model:") and tracker.group_hint.get(entity) == root  # a replica

    hit = [
        (d, t)
        for d, t in opened
        if truth.fault == "driver_drift"
        and d.entity == root
        and d.key == "driver_version"
        and t >= truth.start_ms
    ]
    key = CHANGING.get(truth.fault)
    change_hit = None
    if key is not None:
        change_hit = any(
            on_root(str(e.entity.get("entity", "")))
            and e.attributes.get("key") == key
            and e.ts_ms >= truth.start_ms - 10_000
            for e in changes
        )
    return {
        "drift_hit": bool(hit),
        "drift_ttd_s": (hit[0][1] - truth.start_ms) / 1000 if hit else None,
        "false_drifts": sorted(
            f"{d.entity} {d.key}" for d, _ in opened if not (truth.fault in CHANGING and on_root(d.entity))
        ),
        "change_hit": change_hit,
    }


def summarise_drift(results: list[CaseResult]) -> dict[str, Any]:
    drift = [r for r in results if r.fault == "driver_drift"]
    ttd = [r.drift_ttd_s for r in drift if r.drift_ttd_s is not None]
    changes = {
        f: [r.change_hit for r in results if r.fault == f and r.change_hit is not None] for f in CHANGING
    }
    return {
        "driver_drift_cases": len(drift),
        "driver_drift_recall": sum(r.drift_hit for r in drift) / len(drift) if drift else None,
        "driver_drift_ttd_s": statistics.median(ttd) if ttd else None,
        "false_drifts": sum(len(r.false_drifts) for r in results),
        "cases": len(results),
        "change_recall": {f: (sum(v) / len(v) if v else None) for f, v in changes.items()},
    }


def summarise(results: list[CaseResult]) -> list[dict[str, Any]]:
    rows = []
    for fault in dict.fromkeys(r.fault for r in results):
        rs = [r for r in results if r.fault == fault]
        hits = sum(r.hit for r in rs)
        flagged = sum(r.same_kind_flagged for r in rs)
        ttd = [r.ttd_s for r in rs if r.ttd_s is not None]
        rows.append(
            {
                "fault": fault,
                "root_kind": CATALOGUE[fault].root_kind,
                "cases": len(rs),
                "recall": hits / len(rs),
                "precision": hits / flagged if flagged else None,
                "fa_per_h": sum(r.false_alarms_pre for r in rs) / max(sum(r.pre_hours for r in rs), 1e-9),
                "ttd_s": statistics.median(ttd) if ttd else None,
            }
        )
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=50.0)
    ap.add_argument("--faults", default=",".join(CATALOGUE), help="comma-separated fault classes")
    ap.add_argument("--z", type=float, default=AnomalyConfig().z_threshold, help="z threshold")
    ap.add_argument("--seed", type=int, default=100, help="first seed")
    ap.add_argument("--verbose", action="store_true", help="print each case")
    args = ap.parse_args(argv)
    results: list[CaseResult] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sightglass-eval-") as tmp:
        for fault in args.faults.split(","):
            for s in range(args.seeds):
                r = run_case(
                    fault,
                    args.seed + s,
                    nodes=args.nodes,
                    minutes=args.minutes,
                    workdir=Path(tmp),
                    config=AnomalyConfig(z_threshold=args.z),
                )
                results.append(r)
                if args.verbose:
                    print(r.to_dict(), flush=True)
    rows = summarise(results)
    cols = ("fault", "root_kind", "cases", "recall", "precision", "fa_per_h", "ttd_s")
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(_fmt(row[c]) for c in cols))
    n = len(results)
    hits = sum(r.hit for r in results)
    flagged = sum(r.same_kind_flagged for r in results)
    fa = sum(r.false_alarms_pre for r in results) / max(sum(r.pre_hours for r in results), 1e-9)
    print(
        f"overall | {n} cases | recall {hits / n:.2f} | precision {hits / max(flagged, 1):.2f} | "
        f"fa/h {fa:.2f} | {time.perf_counter() - t0:.0f}s"
    )
    d = summarise_drift(results)
    print(
        f"drift | driver_drift cases {d['driver_drift_cases']} | recall {_fmt(d['driver_drift_recall'])} | "
        f"ttd {_fmt(d['driver_drift_ttd_s'])}s | false drifts {d['false_drifts']} in {d['cases']} cases"
    )
    print(
        "config.change on the root | " + " | ".join(f"{f} {_fmt(v)}" for f, v in d["change_recall"].items())
    )
    for r in results:
        for fd in r.false_drifts:
            print(f"false drift | {r.fault} seed {r.seed} | {fd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
