"""Dashboard queries on a simulated GPU factory: Sightglass' embedded PromQL next to VictoriaMetrics.

    python bench/query.py                 # quick: 1,000 GPUs x 24 h at 10 s
    python bench/query.py --gpus 8000     # the full run
    python bench/query.py --no-vm         # Sightglass only
    python bench/query.py --data /tmp/q   # keep the loaded data there and reuse it on the next run

The same samples (generated with numpy, DCGM metric names, Hostname/gpu labels) go into a fresh
Sightglass store and, when ``victoria-metrics`` is installed, into a VictoriaMetrics started for the run
(``/api/v1/import``, then ``/internal/force_flush``). Each query runs ``--repeat`` times on both;
VictoriaMetrics is asked with ``nocache=1`` over HTTP, Sightglass is timed in-process including
JSON encoding of the result (``QueryResult.to_json()``, the text its HTTP API sends). Besides the median wall time, the median CPU time of each query is
printed: Sightglass' whole process (DuckDB's threads included) and the VictoriaMetrics process (from
``/proc/<pid>/stat``), because on a shared machine the wall clock moves with the load. The two engines differ in semantics (VictoriaMetrics' ``rate`` does not
extrapolate, for one), so the numbers compare latency, not answers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np

from sightglass.model import SampleBatch, SeriesKey
from sightglass.promql.engine import Engine
from sightglass.store.duckdb import DuckDBStore, StoreOptions

HOUR = 3_600_000
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2", "4", "8", "16", "+Inf")
MODELS = ("llama-70b", "llama-8b", "mixtral", "qwen-32b")


def generate(
    gpus: int, hours: float, interval_s: int, end_ms: int, chunk: int = 250
) -> Iterator[SampleBatch]:
    """Batches of ``chunk`` GPUs (util, temperature, energy, XID counter), then the TTFT histograms."""
    rng = np.random.default_rng(42)
    n = int(hours * 3600 // interval_s)
    grid = end_ms - (n - 1 - np.arange(n, dtype=np.int64)) * interval_s * 1000
    for a in range(0, gpus, chunk):
        keys: list[SeriesKey] = []
        vals: list[np.ndarray] = []
        for g in range(a, min(gpus, a + chunk)):
            lab = {"Hostname": f"node-{g // 8:04d}", "gpu": str(g % 8)}
            util = np.clip(60 + np.cumsum(rng.normal(0, 3, n)), 0, 100).round(1)
            temp = (45 + util * 0.35 + rng.normal(0, 1, n)).round(1)
            energy = np.cumsum(rng.uniform(200_000, 700_000, n) * interval_s / 10).round()
            xid = np.cumsum(rng.random(n) < 0.0005).astype(np.float64)
            for name, v in (
                ("DCGM_FI_DEV_GPU_UTIL", util),
                ("DCGM_FI_DEV_GPU_TEMP", temp),
                ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", energy),
                ("DCGM_FI_DEV_XID_ERRORS_total", xid),
            ):
                keys.append(SeriesKey.of(name, lab))
                vals.append(v)
        yield _batch(keys, vals, grid)
    keys, vals = [], []
    for model in MODELS:
        for pod in range(8):
            obs = rng.poisson(50, n).astype(np.float64)
            shares = rng.dirichlet(np.arange(1, len(BUCKETS) + 1)[::-1].astype(float), n)
            cum = np.cumsum(np.cumsum(np.round(obs[:, None] * shares), axis=1), axis=0)
            for j, le in enumerate(BUCKETS):
                keys.append(
                    SeriesKey.of(
                        "vllm:time_to_first_token_seconds_bucket",
                        {"model": model, "pod": f"p{pod}", "le": le},
                    )
                )
                vals.append(cum[:, j])
    yield _batch(keys, vals, grid)


def _batch(keys: list[SeriesKey], vals: list[np.ndarray], grid: np.ndarray) -> SampleBatch:
    n = len(grid)
    return SampleBatch(
        keys,
        np.repeat(np.arange(len(keys), dtype=np.int64), n),
        np.tile(grid, len(keys)),
        np.concatenate(vals),
    )


def queries(end_ms: int) -> list[tuple[str, str, int, int, int]]:
    """(title, query, start_ms, end_ms, step_ms); step 0 means an instant query at end."""
    day = end_ms - 24 * HOUR
    return [
        ("per-node avg SM activity, 24h @1m", "avg by (Hostname) (avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))",
         day, end_ms, 60_000),
        ("top-10 hottest GPUs, last hour", "topk(10, max_over_time(DCGM_FI_DEV_GPU_TEMP[1h]))",
         end_ms, end_ms, 0),
        ("node power from energy counter, 24h @1m",
         "sum by (Hostname) (rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1m]))", day, end_ms, 60_000),
        ("XID error rate per node, 24h @5m", "sum by (Hostname) (rate(DCGM_FI_DEV_XID_ERRORS_total[5m]))",
         day, end_ms, 300_000),
        ("p99 TTFT per model, 24h @1m",
         "histogram_quantile(0.99, sum by (model, le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))",
         day, end_ms, 60_000),
        # a whole-hour window at hour steps: answered from the hourly rollup on sealed days
        ("hourly energy per node, 24h @1h",
         "sum by (Hostname) (increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1h]))",
         (day // HOUR + 1) * HOUR, (end_ms // HOUR) * HOUR, HOUR),
    ]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


_CLK_TCK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


class Victoria:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "vm.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"-storageDataPath={workdir / 'vm'}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.maxUniqueTimeseries=10000000"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.client = httpx.Client(timeout=600)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get(self.url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("victoria-metrics did not start")
            time.sleep(0.2)

    def load(self, batch: SampleBatch) -> None:
        lines = []
        bounds = np.flatnonzero(np.diff(batch.series_index)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(batch)]])
        for a, b in zip(starts, ends, strict=True):
            key = batch.series[int(batch.series_index[a])]
            metric = {"__name__": key.metric, **dict(key.labels)}
            vals = batch.values[a:b]
            lines.append(
                f'{{"metric":{json.dumps(metric)},"values":[{",".join(map(repr, vals.tolist()))}],'
                f'"timestamps":[{",".join(map(str, batch.ts_ms[a:b].tolist()))}]}}'
            )
        r = self.client.post(self.url + "/api/v1/import", content="\n".join(lines).encode())
        r.raise_for_status()

    def flush(self) -> None:
        self.client.get(self.url + "/internal/force_flush").raise_for_status()

    def query(self, q: str, start: int, end: int, step: int) -> int:
        if step:
            params = {"query": q, "start": start / 1000, "end": end / 1000, "step": step / 1000, "nocache": 1}
            r = self.client.post(self.url + "/api/v1/query_range", data=params)
        else:
            r = self.client.post(
                self.url + "/api/v1/query", data={"query": q, "time": end / 1000, "nocache": 1}
            )
        body = r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"victoria-metrics: {body}")
        return len(body["data"]["result"])

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def _sightglass(engine: Engine, q: str, start: int, end: int, step: int) -> int:
    res = engine.range(q, start, end, step) if step else engine.instant(q, end)
    res.to_json()  # the JSON text /api/v1/query(_range) sends (api/prom.py)
    return len(res.matrix) if step else len(res.vector)


def _median(fn: Callable[[], object], repeat: int, cpu: Callable[[], float]) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (as ``cpu()`` counts them) of ``repeat`` calls."""
    times, cpus = [], []
    for _ in range(repeat):
        c0 = cpu()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
    return statistics.median(times), statistics.median(cpus)


def _load(args: argparse.Namespace, store: DuckDBStore, vm: Victoria | None, end_ms: int) -> None:
    t0 = time.perf_counter()
    total, t_sg, t_vm = 0, 0.0, 0.0
    for batch in generate(args.gpus, args.hours, args.interval, end_ms):
        total += len(batch)
        a = time.perf_counter()
        store.append(batch)
        t_sg += time.perf_counter() - a
        if vm:
            a = time.perf_counter()
            vm.load(batch)
            t_vm += time.perf_counter() - a
    a = time.perf_counter()
    store.compact(force=False)
    t_compact = time.perf_counter() - a
    if vm:
        vm.flush()
    print(
        f"loaded {total:,} samples (load: sightglass {t_sg:.1f} s + compaction {t_compact:.1f} s, "
        f"victoria-metrics {t_vm:.1f} s incl. JSON encoding; total {time.perf_counter() - t0:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PromQL dashboard latency: Sightglass vs VictoriaMetrics")
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--interval", type=int, default=10, help="seconds between samples")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--data", help="keep the loaded data in this directory and reuse it when the shape matches")
    ap.add_argument("--no-rollups", action="store_true", help="answer every query from raw samples")
    ap.add_argument("--only", help="run only the queries whose title contains this")
    ap.add_argument("--vm", default=shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics")
    args = ap.parse_args(argv)
    use_vm = not args.no_vm and Path(args.vm).exists()
    with contextlib.ExitStack() as stack:
        if args.data:
            work = Path(args.data)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sightglass-bench-")))
        shape = f"{args.gpus} GPUs, {args.hours:g} h at {args.interval} s"
        stamp = work / "shape.json"
        reuse = stamp.exists() and json.loads(stamp.read_text()).get("shape") == shape
        if reuse and use_vm and not (work / "vm").exists():
            reuse = False
        if not reuse:
            for sub in ("vm", "sg"):
                shutil.rmtree(work / sub, ignore_errors=True)
            stamp.unlink(missing_ok=True)
            end_ms = (int(time.time() * 1000) // 60_000) * 60_000 - 60_000
        else:
            end_ms = int(json.loads(stamp.read_text())["end_ms"])
        vm = Victoria(args.vm, work) if use_vm else None
        if vm:
            stack.callback(vm.close)
        # compaction runs once, after the load: all but the newest hour goes to sorted day partitions
        store = DuckDBStore(work / "sg", options=StoreOptions(compact_every_s=10**9))
        stack.callback(store.close)
        if reuse:
            print(f"reusing the data in {work}")
        else:
            _load(args, store, vm, end_ms)
            if args.data:
                stamp.write_text(json.dumps({"shape": shape, "end_ms": end_ms}))
        print(f"{shape}; {store.count('samples_head'):,} samples still in the head")
        engine = Engine(store, use_rollups=not args.no_rollups)
        print(
            f"{'query':44s} {'series':>6s} {'sightglass':>10s} {'(cpu)':>7s} "
            f"{'victoria':>8s} {'(cpu)':>7s} {'ratio':>6s} {'cpu ratio':>9s}"
        )
        for title, q, start, end, step in queries(end_ms):
            if args.only and args.only not in title:
                continue
            n = _sightglass(engine, q, start, end, step)  # warm-up (and the series count)
            sg, sg_cpu = _median(
                functools.partial(_sightglass, engine, q, start, end, step), args.repeat, time.process_time
            )
            line = f"{title:44s} {n:6d} {sg * 1000:8.0f}ms {sg_cpu * 1000:5.0f}ms"
            if vm:
                vm.query(q, start, end, step)
                vt, vt_cpu = _median(functools.partial(vm.query, q, start, end, step), args.repeat, vm.cpu_s)
                line += f" {vt * 1000:6.0f}ms {vt_cpu * 1000:5.0f}ms {sg / vt:5.1f}x"
                line += f" {sg_cpu / vt_cpu:8.1f}x" if vt_cpu > 0 else f" {'-':>8s}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
