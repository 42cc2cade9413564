"""Scale-out benchmark: remote-write ingest through two ``sightglass up`` replicas into VictoriaMetrics
(catalog on PostgreSQL) against one embedded ``sightglass up``, and RCA time-to-answer on both.

Every server is real, on 127.0.0.1, in a temporary directory (``_peers.py``; PostgreSQL through
``sightglass.scaleout.pgserver``). The data is the simulator's factory with a thermal fault on one GPU
of a training job, sent as remote-write 1.0 requests by ``--clients`` threads (round-robin over the
replicas). The analytics loops are off while ingesting, so the figures are ingest only. The RCA runs
in this process on each store (the embedded file, then VictoriaMetrics + PostgreSQL with PromQL passed
through) for the job's step-time symptom.

    python bench/scaleout.py --nodes 4 --minutes 30
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _peers

from sightglass.config import Config
from sightglass.ingest.remote_write import compress, encode_batch
from sightglass.model import Event, LineageEvent, SampleBatch
from sightglass.scaleout.pgserver import start_postgres
from sightglass.scaleout.store import open_scaleout
from sightglass.simulate.fast import run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteEngine

MIN = 60_000
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip


class _Capture:
    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []
        self.events: list[Event] = []
        self.lineage: list[LineageEvent] = []

    def append(self, batch: SampleBatch, **_: Any) -> None:
        self.batches.append(batch)

    def append_events(self, events: list[Event]) -> int:
        self.events.extend(events)
        return len(events)

    def append_lineage(self, events: list[LineageEvent]) -> int:
        self.lineage.extend(events)
        return len(events)


def _requests(batches: list[SampleBatch], per_request: int) -> list[bytes]:
    """Time-ordered remote-write bodies of about ``per_request`` samples."""
    import numpy as np

    lo = min(int(b.ts_ms.min()) for b in batches)
    hi = max(int(b.ts_ms.max()) for b in batches)
    total = sum(len(b) for b in batches)
    n_slices = max(1, total // per_request)
    width = max(10_000, (hi - lo + 1) // n_slices + 1)
    out = []
    for t in range(lo, hi + 1, width):
        part = SampleBatch()
        for b in batches:
            keep = (b.ts_ms >= t) & (b.ts_ms < t + width)
            if np.any(keep):
                part.extend(SampleBatch(series=b.series, series_index=b.series_index[keep], ts_ms=b.ts_ms[keep],
                                        values=b.values[keep], metadata=b.metadata))  # fmt: skip
        if len(part):
            out.append(compress(encode_batch(part)))
    return out


def _push(ports: list[int], bodies: list[bytes], clients: int) -> float:
    """Send every body (client k to replica k mod len(ports), requests in order); wall seconds."""

    def run(k: int) -> None:
        for i in range(k, len(bodies), clients):
            status, text = _peers.request(ports[k % len(ports)], "POST", "/api/v1/write", bodies[i], HEADERS)
            if status >= 300:
                raise RuntimeError(f"remote write answered {status}: {text[:200]!r}")

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(run, k) for k in range(clients)]:
            f.result()
    return time.perf_counter() - t0


def _sightglass(tmp: Path, name: str, extra: str) -> _peers.Server:
    port = _peers.free_port()
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        'log_level = "warning"\n[analytics]\nenabled = false\n[storage]\ncompact_every = "1h"\n' + extra
    )
    exe = shutil.which("sightglass") or str(Path(sys.executable).with_name("sightglass"))
    data = tmp / name
    argv = [exe, "up", "--data", str(data), "--listen", f"127.0.0.1:{port}", "--config", str(cfg)]
    return _peers._spawn(name, argv, tmp, data, port, "/-/health")


def _rca(store: Any, engine: Any, symptom: str, at_ms: int) -> tuple[float, str]:
    from sightglass.rca.engine import analyze

    t0 = time.perf_counter()
    res = analyze(store, symptom, at_ms, engine=engine)
    top = res.causes[0].entity_id if res.causes else "-"
    return time.perf_counter() - t0, top


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--per-request", type=int, default=20_000, help="samples per remote-write request")
    args = ap.parse_args(argv)
    for b in (_peers.VM_BIN,):
        if not _peers.have(b):
            print(f"skipped: {b} is not installed")
            return 0
    now = int(time.time() * 1000)
    start = now - now % 10_000 - args.minutes * MIN
    cap = _Capture()
    fault_at = args.minutes * MIN // 2
    scripted = [
        ScriptedFault("gpu_thermal", fault_at, args.minutes * MIN // 3, {"Hostname": "node-02", "gpu": "3"})
    ]
    run_ingest(cap, nodes=args.nodes, duration_s=args.minutes * 60, seed=7, start_ms=start, scripted=scripted,
               fault_every_s=None)  # fmt: skip
    bodies = _requests(cap.batches, args.per_request)
    samples = sum(len(b) for b in cap.batches)
    series = len({k for b in cap.batches for k in b.series})
    job = next(dict(k.labels)["slurm_job_id"] for b in cap.batches for k in b.series
               if k.metric == "training_step_duration_seconds" and "slurm_job_id" in dict(k.labels))  # fmt: skip
    symptom = f'training_step_duration_seconds{{slurm_job_id="{job}"}}'
    at_ms = start + fault_at + 5 * MIN
    print(f"shape: {args.nodes} nodes / {args.nodes * 8} GPUs, {series} series, {samples} samples over "
          f"{args.minutes} min at 10 s; {len(bodies)} remote-write requests, {args.clients} clients")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="sgbench-scaleout-"))
    rows = []
    try:
        # one embedded process
        sg = _sightglass(tmp, "embedded", "")
        secs = _push([sg.port], bodies, args.clients)
        rss = sg.peak_rss()
        sg.stop(keep_data=True)
        store = DuckDBStore(tmp / "embedded", options=StoreOptions(compact_every_s=3600))
        store.append_events(cap.events)
        store.append_lineage(cap.lineage)
        rca_s, top = _rca(store, None, symptom, at_ms)
        store.close()
        rows.append(("embedded (1 process)", secs, samples / secs, rss, rca_s, top))
        # two replicas over VictoriaMetrics + PostgreSQL
        vm = _peers.start_vm()
        pg = start_postgres()
        try:
            url = f"http://127.0.0.1:{vm.port}"
            extra = (f'[backends.metrics]\nkind = "victoriametrics"\nurl = "{url}"\nremote_write_url = "{url}/api/v1/write"\n'
                     f'[backends.catalog]\nkind = "postgres"\ndsn = "{pg.dsn}"\n')  # fmt: skip
            reps = [_sightglass(tmp, f"replica{i}", extra) for i in (1, 2)]
            secs = _push([r.port for r in reps], bodies, args.clients)
            rss = max(r.peak_rss() for r in reps)
            for r in reps:
                r.stop(keep_data=True)
            _peers.vm_flush(vm)
            time.sleep(1.5)
            cat = PostgresCatalog(pg.dsn)
            cat.append_events(cap.events)
            cat.append_lineage(cap.lineage)
            cat.close()
            cfg = Config.load(None, data=str(tmp / "rca")).model_copy(update={"backends": {
                "metrics": {"kind": "victoriametrics", "url": url}, "catalog": {"kind": "postgres", "dsn": pg.dsn}}})  # fmt: skip
            remote = open_scaleout(cfg)
            assert remote is not None
            remote.refresh(force=True)
            rca_s, top = _rca(remote, RemoteEngine(remote.metrics), symptom, at_ms)
            remote.close()
            rows.append(("2 replicas -> VictoriaMetrics + PostgreSQL", secs, samples / secs, rss, rca_s, top))
        finally:
            vm.stop()
            pg.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'setup':44} {'ingest s':>9} {'samples/s':>10} {'peak RSS MiB':>13} {'RCA s':>7}  top cause")
    for name, secs, rate, rss, rca_s, top in rows:
        print(f"{name:44} {secs:9.2f} {rate:10.0f} {rss / 2**20:13.0f} {rca_s:7.2f}  {top}")
    print(
        "(peak RSS: the sightglass process, the larger replica for two; VictoriaMetrics/PostgreSQL not counted)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
