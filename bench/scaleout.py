"""Scale-out benchmark: remote-write ingest through two ``sightglass up`` replicas into VictoriaMetrics
(catalog on PostgreSQL) against one embedded ``sightglass up``, and RCA time-to-answer on both.

Every server is real, on 127.0.0.1, in a temporary directory (``_peers.py``; PostgreSQL through
``sightglass.scaleout.pgserver``). The data is the simulator's factory with a thermal fault on one GPU
of a training job, sent as remote-write 1.0 requests by ``--clients`` threads (round-robin over the
replicas). The analytics loops are off while ingesting, so the figures are ingest only. The RCA runs
in this process on each store (the embedded file, then VictoriaMetrics + PostgreSQL with PromQL passed
through) for the job's step-time symptom.

    python bench/scaleout.py --nodes 4 --minutes 30

``--probe N`` instead measures what the newest-sample clock costs on a backend holding N series
(30 minutes at 60 s, ending 8 minutes ago, so the plain probe at "now" finds nothing): the plain
``max(timestamp(probe))``, the step-on probe from the last known time (what ``RemoteMetricStore`` does
once it knows one), the 6 h subquery (its first look), Prometheus' ``/api/v1/status/tsdb`` head
``maxTime``, and the shadow series-table upsert of N rows (Arrow, and the ``executemany`` it replaced).

    python bench/scaleout.py --probe 20000
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
from sightglass.model import SampleBatch
from sightglass.scaleout.pgserver import start_postgres
from sightglass.scaleout.store import open_scaleout
from sightglass.simulate.fast import Capture, run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteEngine

MIN = 60_000
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip


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


def _timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _probes(kind: str, url: str, end: int, now: int) -> list[tuple[str, str, float, Any]]:
    import httpx

    from sightglass.store.remote import RemoteMetricStore, RemoteOptions

    out: list[tuple[str, str, float, Any]] = []
    r = RemoteMetricStore(RemoteOptions(url, None))
    try:
        secs, got = _timed(lambda: r._ts_probe("max(timestamp({p}))", now))
        out.append((kind, "max(timestamp(probe)) at now", secs, got))
        secs, got = _timed(lambda: r._gallop(end - 5 * MIN, now))
        out.append((kind, "step-on probe from newest - 5 min", secs, got))
        secs, got = _timed(lambda: r._ts_probe("max(max_over_time(timestamp({p})[21600000ms:1m]))", now), 1)
        out.append((kind, "6 h subquery (first look)", secs, got))
        if kind == "prometheus":
            secs, got = _timed(
                lambda: httpx.get(url + "/api/v1/status/tsdb", timeout=60).json()["data"]["headStats"]["maxTime"]
            )
            out.append((kind, "/api/v1/status/tsdb headStats.maxTime", secs, got))
    finally:
        r.close()
    return out


def probe_bench(n: int) -> int:
    import duckdb
    import pyarrow as pa

    from sightglass.store.remote import _SHADOW_SCHEMA, RemoteMetricStore, RemoteOptions

    now = int(time.time() * 1000)
    end = now - now % 60_000 - 8 * MIN
    ts = [end - k * MIN for k in range(30)][::-1]
    rows = [("sg_probe_bench", {"i": str(i), "host": f"h{i % 500}"}, t, float(i)) for t in ts for i in range(n)]
    print(f"shape: {n} series x {len(ts)} samples (60 s), newest {(now - end) / 1000:.0f} s before now")
    out = []
    servers = [("victoriametrics", _peers.start_vm)]
    if _peers.have(_peers.PROM_BIN):
        servers.append(("prometheus", _peers.start_prometheus))
    for kind, start in servers:
        srv = start()
        try:
            url = f"http://127.0.0.1:{srv.port}"
            w = RemoteMetricStore(RemoteOptions(url, url + "/api/v1/write", max_samples_per_write=50_000))
            for a in range(0, len(rows), 200_000):
                w.append(SampleBatch.from_rows(rows[a : a + 200_000]))
            w.close()
            if kind == "victoriametrics":
                _peers.vm_flush(srv)
                time.sleep(2)
            out += _probes(kind, url, end, now)
        finally:
            srv.stop()
    recs = [(i, "sg_probe_bench", f'{{"i":"{i}"}}', end - 30 * MIN, end) for i in range(n)]
    for how in ("arrow", "executemany"):
        con = duckdb.connect(":memory:")
        con.execute(_SHADOW_SCHEMA)
        t0 = time.perf_counter()
        if how == "arrow":
            cols = list(zip(*recs, strict=True))
            tbl = pa.table({"id": pa.array(cols[0], pa.int32()), "metric": cols[1], "labels": cols[2],
                            "first_ms": pa.array(cols[3], pa.int64()), "last_ms": pa.array(cols[4], pa.int64())})  # fmt: skip
            con.register("u", tbl)
            con.execute("INSERT OR REPLACE INTO series SELECT * FROM u")
        else:
            con.executemany("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?)", recs)
        out.append(("shadow", f"upsert {n} series rows ({how})", time.perf_counter() - t0, None))
        con.close()
    print(f"{'backend':16} {'what':42} {'seconds':>8}  answer (newest ms - true newest)")
    for kind, what, secs, got in out:
        diff = "" if got is None else f"{int(got) - end:+d}"
        print(f"{kind:16} {what:42} {secs:8.3f}  {diff}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--per-request", type=int, default=20_000, help="samples per remote-write request")
    ap.add_argument("--probe", type=int, default=0, metavar="N", help="measure the newest-sample probes on N series")
    args = ap.parse_args(argv)
    if args.probe:
        return probe_bench(args.probe)
    for b in (_peers.VM_BIN,):
        if not _peers.have(b):
            print(f"skipped: {b} is not installed")
            return 0
    now = int(time.time() * 1000)
    start = now - now % 10_000 - args.minutes * MIN
    cap = Capture()
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
