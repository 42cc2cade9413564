"""Fast mode: simulate faster than real time and write files, a labelled RCA suite, or a store.

``run_fast`` writes into ``out``:

- ``metrics.om`` — OpenMetrics text with timestamps (seconds), ``# EOF`` at the end; every series as a
  scrape would have stored it (``job`` and ``instance`` labels added).
- ``events.jsonl`` (XIDs, deploys, config changes, job start/end, OOM kills), ``jobs.jsonl`` (Slurm-style
  accounting records), ``lineage.jsonl`` (OpenLineage run events), ``spans.jsonl`` (OTLP/JSON
  ``ExportTraceServiceRequest`` bodies with GenAI spans), ``truth.jsonl`` (ground truth of every
  injected fault), ``factory.json`` (inventory and price sheet).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.model import Event, LineageEvent, SampleBatch
from sightglass.simulate.engine import Simulator
from sightglass.simulate.exposition import Recorder, recorder_batches, write_openmetrics
from sightglass.simulate.faults import CATALOGUE, ScriptedFault
from sightglass.timeutil import format_ts

DEFAULT_START = "2026-11-16T00:00:00Z"


@dataclass(slots=True)
class RunStats:
    samples: int
    series: int
    ticks: int
    seconds: float
    nodes: int
    gpus: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "series": self.series,
            "ticks": self.ticks,
            "seconds": round(self.seconds, 3),
            "samples_per_s": round(self.samples / max(self.seconds, 1e-9)),
            "nodes": self.nodes,
            "gpus": self.gpus,
        }


def simulate(sim: Simulator, duration_s: float, rec: Recorder) -> int:
    ticks = int(duration_s // sim.dt) + 1
    for _ in range(ticks):
        rec.add(sim.step())
    return ticks


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n")


def _final_jobs(sim: Simulator) -> list[dict[str, Any]]:
    return sim.job_records + [j.record(sim.factory, None) for j in sim.jobs]


def write_side_files(sim: Simulator, out: Path) -> None:
    _jsonl(out / "events.jsonl", sorted(sim.events, key=lambda e: e["ts_ms"]))
    _jsonl(out / "jobs.jsonl", _final_jobs(sim))
    _jsonl(out / "lineage.jsonl", sim.lineage)
    _jsonl(out / "spans.jsonl", sim.spans)
    _jsonl(out / "truth.jsonl", [x.truth() for x in sim.faults if x.state.get("started")])
    (out / "factory.json").write_text(json.dumps(sim.factory.describe(), indent=1, sort_keys=True) + "\n")


def run_fast(
    *,
    nodes: int,
    duration_s: float,
    seed: int,
    start_ms: int,
    out: Path,
    dt_s: float = 10.0,
    scripted: list[ScriptedFault] | None = None,
    fault_every_s: float | None = None,
    a100_fraction: float = 0.25,
) -> RunStats:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sim = Simulator(
        nodes,
        seed,
        start_ms,
        dt_s=dt_s,
        scripted=scripted,
        fault_every_s=fault_every_s,
        a100_fraction=a100_fraction,
    )
    work = Path(tempfile.mkdtemp(prefix=".sim-", dir=out))
    try:
        rec = Recorder(work)
        ticks = simulate(sim, duration_s, rec)
        with (out / "metrics.om").open("wb") as f:
            n = write_openmetrics(rec, sim.labels, f)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_side_files(sim, out)
    return RunStats(n, rec.n_series, ticks, time.perf_counter() - t0, nodes, sim.factory.n_gpus)


@dataclass
class Capture:
    """A store stand-in for :func:`run_ingest` that keeps what the simulator writes, to replay it
    into any store (or several) or to turn it into requests."""

    batches: list[SampleBatch] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    lineage: list[LineageEvent] = field(default_factory=list)

    def append(self, batch: SampleBatch, **_: Any) -> None:
        self.batches.append(batch)

    def append_events(self, events: list[Event]) -> int:
        self.events.extend(events)
        return len(events)

    def append_lineage(self, events: list[LineageEvent]) -> int:
        self.lineage.extend(events)
        return len(events)

    def replay(self, store: Any) -> None:
        for b in self.batches:
            store.append(b)
        store.append_events(self.events)
        store.append_lineage(self.lineage)


def run_ingest(
    store: Any,
    *,
    nodes: int,
    duration_s: float,
    seed: int,
    start_ms: int,
    dt_s: float = 10.0,
    scripted: list[ScriptedFault] | None = None,
    fault_every_s: float | None = None,
    workdir: Path | None = None,
    stop_s: float | None = None,
) -> tuple[RunStats, Simulator]:
    """Simulate straight into a :class:`~sightglass.store.duckdb.DuckDBStore` (no text).

    ``stop_s`` ends the simulation early (the faults keep the times ``duration_s`` gave them): an
    evaluation that only reads up to an instant need not simulate what comes after it."""
    t0 = time.perf_counter()
    sim = Simulator(nodes, seed, start_ms, dt_s=dt_s, scripted=scripted, fault_every_s=fault_every_s)
    work = Path(tempfile.mkdtemp(prefix="sightglass-sim-", dir=workdir))
    n = 0
    try:
        rec = Recorder(work)
        ticks = simulate(sim, duration_s if stop_s is None else min(stop_s, duration_s), rec)
        for batch in recorder_batches(rec, sim.labels):
            store.append(batch)
            n += len(batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store.append_events(to_events(sim.events))
    store.append_lineage(to_lineage(sim.lineage))
    return RunStats(n, len(sim.labels.pairs), ticks, time.perf_counter() - t0, nodes, sim.factory.n_gpus), sim


def to_events(rows: list[dict[str, Any]]) -> list[Event]:
    return [
        Event(
            ts_ms=r["ts_ms"],
            kind=r["kind"],
            entity=r["entity"],
            attributes=r["attributes"],
            severity=r["severity"],
            source=r["source"],
        )
        for r in rows
    ]


def to_lineage(rows: list[dict[str, Any]]) -> list[LineageEvent]:
    from sightglass.timeutil import parse_time_ms

    return [
        LineageEvent(
            ts_ms=parse_time_ms(r["eventTime"]),
            event_type=r["eventType"],
            job_namespace=r["job"]["namespace"],
            job_name=r["job"]["name"],
            run_id=r["run"]["runId"],
            inputs=[f"{i['namespace']}/{i['name']}" for i in r["inputs"]],
            outputs=[f"{o['namespace']}/{o['name']}" for o in r["outputs"]],
            payload=r,
        )
        for r in rows
    ]


def case_plan(
    *, cases: int, duration_s: float, seed: int, dt_s: float = 10.0, only: list[str] | None = None
) -> list[tuple[int, str, int, list[ScriptedFault]]]:
    """The cases of a labelled suite: (index, fault class, simulator seed, scripted fault), classes in turn."""
    names = only or list(CATALOGUE)
    plan = []
    for k in range(cases):
        name = names[k % len(names)]
        fault_at = int(duration_s * 0.45 // dt_s * dt_s)
        dur = CATALOGUE[name].duration_s
        scripted = [
            ScriptedFault(
                name, fault_at * 1000, int(min(dur[1], max(dur[0], duration_s - fault_at)) * 1000), {}
            )
        ]
        plan.append((k, name, seed * 1000 + k, scripted))
    return plan


def case_doc(truth: dict[str, Any], name: str, start_ms: int, duration_s: float) -> dict[str, Any]:
    """``case.json``: the symptom, the instant to analyse (5 min after the fault) and the truth."""
    at_ms = min(truth["start_ms"] + 300_000, start_ms + int(duration_s * 1000))
    return {
        "symptom": truth["symptom"],
        "at": format_ts(at_ms),
        "truth": {"kind": truth["root"]["kind"], "match": truth["root"]["match"], "fault": name},
    }


def run_cases(
    *,
    cases: int,
    nodes: int,
    duration_s: float,
    seed: int,
    start_ms: int,
    out: Path,
    dt_s: float = 10.0,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """A labelled RCA suite: one folder per case, one fault each, classes taken in turn."""
    index = []
    for k, name, case_seed, scripted in case_plan(cases=cases, duration_s=duration_s, seed=seed, dt_s=dt_s, only=only):
        d = out / f"case-{k:03d}"
        run_fast(
            nodes=nodes,
            duration_s=duration_s,
            seed=case_seed,
            start_ms=start_ms,
            out=d,
            dt_s=dt_s,
            scripted=scripted,
        )
        truth = json.loads((d / "truth.jsonl").read_text().splitlines()[0])
        case = case_doc(truth, name, start_ms, duration_s)
        (d / "case.json").write_text(json.dumps(case, indent=1) + "\n")
        index.append({"case": d.name, **case})
    _jsonl(out / "index.jsonl", index)
    return index
