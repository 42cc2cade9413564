"""Ingest side by side: Sightglass vs a real VictoriaMetrics and a real Prometheus, same data, one run.

    python bench/ingest.py                      # 1,000 nodes x 8 GPUs x 20 DCGM metrics = 160k series, 60 scrapes
    python bench/ingest.py --nodes 100          # quick: 16k series
    python bench/ingest.py --no-peers           # Sightglass only
    python bench/ingest.py --paths sg-rw,vm-rw  # a subset

Method (docs: performance-anchors §1-§3): every request body is built before the clock starts;
requests of ``--per-request`` series (10,000), ``--threads`` (4) keep-alive client threads, each owning a
fixed set of requests (per-series order kept); phase 1 = the first scrape (every series new), steady =
scrapes 2..N. Each round starts a fresh server (its data in a temp dir, on a free 127.0.0.1 port) and
stops it by PID. Reported per path: steady samples/s (median, min-max of ``--rounds``), server
CPU-seconds per 1 M samples (psutil, steady phase), first-scrape new series/s, wire bytes/sample, peak
server RSS (VmHWM), bytes/sample on disk, and that every sample landed (VictoriaMetrics:
``sum(count_over_time)`` after ``/internal/force_flush``; Prometheus: head samples appended + head
series, and ``sum(count_over_time)``; Sightglass: the store's sample count).

Disk: VictoriaMetrics after ``/internal/force_flush`` and after ``/internal/force_merge``; Prometheus the
whole data dir (WAL + head chunks) and the head written as a block (``/api/v1/admin/tsdb/snapshot``);
Sightglass: the server is stopped, the store opened here, ``DuckDBStore.compact(force=True)`` (which
CHECKPOINTs), then the data dir is measured (rollup tables included; the samples partition alone too).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import _fleet
import _peers
import _storage
import cramjam
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from sightglass.ingest import remote_write as _rw

PATHS: dict[str, tuple[str, str, str]] = {
    # name: (engine, format, url path)
    "vm-text": ("vm", "text", "/api/v1/import/prometheus"),
    "vm-rw": ("vm", "rw", "/api/v1/write"),
    "prom-rw": ("prometheus", "rw", "/api/v1/write"),
    "sg-text": ("sightglass", "text", "/api/v1/import/prometheus"),
    "sg-rw": ("sightglass", "rw", "/api/v1/write"),
    "sg-otlp": ("sightglass", "otlp", "/v1/metrics"),
}
HEADERS = {
    "text": {"Content-Type": "text/plain"},
    "rw": {
        "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    },
    "otlp": {"Content-Type": "application/x-protobuf"},
}  # fmt: skip
LABEL = {
    "vm-text": "VictoriaMetrics /api/v1/import/prometheus (text, ms ts)",
    "vm-rw": "VictoriaMetrics /api/v1/write (remote write 1.0)",
    "prom-rw": "Prometheus 2.42 /api/v1/write (remote write 1.0)",
    "sg-text": "Sightglass /api/v1/import/prometheus (text, ms ts)",
    "sg-rw": "Sightglass /api/v1/write (remote write 1.0)",
    "sg-otlp": "Sightglass /v1/metrics (OTLP/HTTP protobuf)",
}


@dataclass
class Round:
    first_s: float
    steady_s: float
    steady_cpu_s: float
    total_cpu_s: float
    peak_rss: int
    stored: int
    disk: dict[str, float] = field(default_factory=dict)  # name -> bytes/sample
    note: str = ""


@dataclass
class PathResult:
    name: str
    wire_bytes: float = 0.0  # per sample, as sent
    raw_bytes: float = 0.0  # per sample, before compression
    rounds: list[Round] = field(default_factory=list)
    skipped: str = ""


# ---------------------------------------------------------------------- load
def push(
    srv: _peers.Server,
    url: str,
    headers: dict[str, str],
    bodies: list[list[bytes]],
    threads: int,
    on_steady: Callable[[], None] | None = None,
) -> tuple[float, float, float, float, float]:
    """Post ``bodies[scrape][chunk]``; chunk c belongs to thread c % threads. Returns timings and CPU.

    ``on_steady`` runs once the first scrape is in, before the steady phase's clock starts.
    """
    n_chunks = len(bodies[0])
    marks: dict[str, float] = {}
    errors: list[str] = []

    def at_barrier() -> None:
        if on_steady is not None:
            on_steady()
        marks["t1"], marks["c1"] = time.perf_counter(), srv.cpu_seconds()

    barrier = threading.Barrier(threads, action=at_barrier)

    def worker(k: int) -> None:
        conn = HTTPConnection("127.0.0.1", srv.port, timeout=600)
        try:
            for scrape, per_chunk in enumerate(bodies):
                for c in range(k, n_chunks, threads):
                    if errors:
                        break
                    conn.request("POST", url, body=per_chunk[c], headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    if r.status not in (200, 204):
                        errors.append(f"{url} scrape {scrape} chunk {c}: HTTP {r.status} {data[:300]!r}")
                if scrape == 0:
                    try:
                        barrier.wait()
                    except threading.BrokenBarrierError:
                        return
        except Exception as e:
            errors.append(f"thread {k}: {e!r}")
            barrier.abort()
        finally:
            conn.close()

    c0 = srv.cpu_seconds()
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t2, c2 = time.perf_counter(), srv.cpu_seconds()
    if errors:
        raise RuntimeError(errors[0])
    if len(bodies) == 1:
        at_barrier()
    return t0, marks["t1"], t2, c2 - marks["c1"], c2 - c0


# ---------------------------------------------------------------------- verify and measure disk
def finish_vm(
    srv: _peers.Server, expected: int, window_s: int, last_ms: int
) -> tuple[int, dict[str, float], str]:
    _peers.vm_flush(srv)
    stored, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        stored = int(_peers.prom_query_scalar(
            srv, f'sum(count_over_time({{job="dcgm-exporter"}}[{window_s}s]))', last_ms / 1000, {"nocache": "1"}
        ))  # fmt: skip
        if stored >= expected:
            break
        time.sleep(1)
        _peers.vm_flush(srv)
    disk = {"flushed": _peers.dir_bytes(srv.data) / expected}
    _peers.vm_force_merge(srv)
    disk["merged"] = _peers.dir_bytes(srv.data) / expected
    return stored, disk, ""


def finish_prometheus(
    srv: _peers.Server, expected: int, window_s: int, last_ms: int, n_series: int
) -> tuple[int, dict[str, float], str]:
    appended = int(_peers.metric_value(srv, "prometheus_tsdb_head_samples_appended_total"))
    head_series = int(_peers.metric_value(srv, "prometheus_tsdb_head_series"))
    # one query per metric: Prometheus drops __name__ in count_over_time, and the series would collide
    stored = sum(
        int(
            _peers.prom_query_scalar(
                srv, f'sum(count_over_time({m}{{job="dcgm-exporter"}}[{window_s}s]))', last_ms / 1000
            )
        )
        for m, _, _ in _fleet.METRICS
    )
    note = (
        ""
        if appended == expected and head_series == n_series
        else f"appended {appended:,}, head series {head_series:,}"
    )
    disk = {"dir": _peers.dir_bytes(srv.data) / expected}
    disk["block"] = _peers.prom_snapshot_bytes(srv) / expected
    return stored, disk, note


def finish_sightglass(srv: _peers.Server, expected: int, report: bool) -> tuple[int, dict[str, float], str]:
    stats = _peers.get_json(srv.port, "/-/stats")["data"]
    served = int(stats["head_samples"]) + int(stats["compacted_samples"])
    srv.stop(keep_data=True)  # SIGTERM: the server CHECKPOINTs and closes the store
    disk = {"stopped": _peers.dir_bytes(srv.data) / expected}
    _storage.compact_store(srv.data)
    disk["compacted"] = _peers.dir_bytes(srv.data) / expected
    rep = _storage.analyse(srv.data)
    disk["partition"] = rep.partition_bytes() / expected
    notes = []
    if served != rep.samples:
        notes.append(f"server said {served:,}, store has {rep.samples:,}")
    if rep.samples != rep.matching:
        notes.append(f"+{rep.samples - rep.matching:,} samples of other series, e.g. OTLP target_info")
    if report:
        print(_storage.format_report(rep, "  Sightglass store after this round"), flush=True)
    return rep.matching, disk, "; ".join(notes)


# ---------------------------------------------------------------------- bodies
def _shuffled(fmt: str, bodies: list[bytes], seed: int, otlp_gzip: bool) -> list[bytes]:
    """The same requests with their series (text lines, TimeSeries, OTLP resources) in another order."""
    rng = random.Random(seed)
    out = []
    for b in bodies:
        if fmt == "text":
            lines = b.decode().splitlines()
            rng.shuffle(lines)
            out.append(("\n".join(lines) + "\n").encode())
        elif fmt == "rw":
            req = _rw.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(b)))
            ts = list(req.timeseries)
            rng.shuffle(ts)
            del req.timeseries[:]
            req.timeseries.extend(ts)
            out.append(bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
        else:
            raw = gzip.decompress(b) if otlp_gzip else b
            oreq = ExportMetricsServiceRequest.FromString(raw)
            rms = list(oreq.resource_metrics)
            rng.shuffle(rms)
            del oreq.resource_metrics[:]
            oreq.resource_metrics.extend(rms)
            body = oreq.SerializeToString()
            out.append(gzip.compress(body, 1) if otlp_gzip else body)
    return out


def build_bodies(fmt: str, fleet: _fleet.Fleet, scrapes: int, per_request: int, otlp_gzip: bool,
                 shuffle: bool = False) -> tuple[list[list[bytes]], float, float]:  # fmt: skip
    """All request bodies of all scrapes for one wire format; and raw/wire bytes per sample."""
    ranges = _fleet.chunks(fleet.n_series, per_request)
    out: list[list[bytes]] = []
    raw = 0
    make: Callable[[int], list[bytes]]
    if fmt == "text":
        prefixes = _fleet.text_prefixes(fleet)

        def make(s: int) -> list[bytes]:
            nonlocal raw
            b = _fleet.text_bodies(prefixes, fleet.values(s), fleet.start_ms + s * _fleet.STEP_MS, ranges)
            raw += sum(map(len, b))
            return b
    elif fmt == "rw":
        labels = _fleet.rw_label_bytes(fleet)

        def make(s: int) -> list[bytes]:
            nonlocal raw
            b, r = _fleet.rw_bodies(labels, fleet.values(s), fleet.start_ms + s * _fleet.STEP_MS, ranges)
            raw += r
            return b
    else:
        tpl = _fleet.OtlpTemplates(fleet, ranges)

        def make(s: int) -> list[bytes]:
            nonlocal raw
            b = tpl.bodies(fleet.values(s), fleet.start_ms + s * _fleet.STEP_MS, ranges)
            raw += sum(map(len, b))
            return [gzip.compress(x, 1) for x in b] if otlp_gzip else b

    for s in range(scrapes):
        out.append(_shuffled(fmt, make(s), s, otlp_gzip) if shuffle else make(s))
    n = fleet.n_series * scrapes
    wire = sum(len(b) for per in out for b in per)
    return out, raw / n, wire / n


# ---------------------------------------------------------------------- run
def run_path(name: str, bodies: list[list[bytes]], fleet: _fleet.Fleet, args: argparse.Namespace,
             res: PathResult) -> None:  # fmt: skip
    engine, fmt, url = PATHS[name]
    headers = dict(HEADERS[fmt])
    if fmt == "otlp" and args.otlp_gzip:
        headers["Content-Encoding"] = "gzip"
    scrapes, n = len(bodies), fleet.n_series
    expected = n * scrapes
    last_ms = fleet.start_ms + (scrapes - 1) * _fleet.STEP_MS
    window_s = scrapes * _fleet.STEP_MS // 1000 + 5
    for r in range(args.rounds):
        srv = _peers.STARTERS[engine]()
        try:
            if engine == "sightglass":
                status, _body = srv.post(url, b"", headers)
                if status in (404, 405):
                    res.skipped = f"route {url} not served by this Sightglass build (HTTP {status})"
                    return
            spies: list[subprocess.Popen[bytes]] = []

            def start_profiler(srv: _peers.Server = srv, r: int = r, spies: list[Any] = spies) -> None:
                spy = (
                    _start_profiler(srv, name, r, args.profile, not args.profile_all)
                    if engine == "sightglass"
                    else None
                )
                if spy is not None:
                    spies.append(spy)

            try:
                t0, t1, t2, steady_cpu, total_cpu = push(
                    srv, url, headers, bodies, args.threads, start_profiler if args.profile else None
                )
            finally:
                for spy in spies:
                    _stop_profiler(spy)
            peak = srv.peak_rss()
            if engine == "vm":
                stored, disk, note = finish_vm(srv, expected, window_s, last_ms)
            elif engine == "prometheus":
                stored, disk, note = finish_prometheus(srv, expected, window_s, last_ms, n)
            else:
                stored, disk, note = finish_sightglass(srv, expected, report=args.store_report and r == 0)
        except Exception as e:
            raise RuntimeError(f"{name} round {r + 1}: {e}\n--- server log ---\n{srv.log_tail()}") from e
        finally:
            srv.stop()
        rd = Round(t1 - t0, t2 - t1, steady_cpu, total_cpu, peak, stored, disk, note)
        res.rounds.append(rd)
        steady_n = n * (scrapes - 1)
        print(
            f"  {name:<8} round {r + 1}: first scrape {n / rd.first_s:>10,.0f} series/s, "
            f"steady {steady_n / max(rd.steady_s, 1e-9):>11,.0f} samples/s, "
            f"CPU {steady_cpu / max(steady_n, 1) * 1e6:6.2f} s/1M, peak RSS {peak / 2**20:,.0f} MiB, "
            f"stored {stored:,}/{expected:,}"
            + "".join(f", {k} {v:.2f} B/sample" for k, v in disk.items())
            + (f" [{note}]" if note else ""),
            flush=True,
        )


def _start_profiler(
    srv: _peers.Server, name: str, r: int, out_dir: str | None, gil: bool = True
) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the server (and its worker processes) in the steady phase, if asked."""
    if not out_dir:
        return None
    exe = shutil.which("py-spy")
    if exe is None:
        print("  (--profile: py-spy not on PATH; pip install py-spy)", flush=True)
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(out_dir) / f"{name}-round{r + 1}.txt"
    argv = [exe, "record", "--pid", str(srv.pid), "--subprocesses", "--format", "raw", "--rate", "200",
            *(["--gil"] if gil else []), "--output", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches before the first request
    print(f"  (profiling {name} into {out})", flush=True)
    return proc


def _stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(
    results: dict[str, PathResult], fleet: _fleet.Fleet, scrapes: int
) -> dict[str, dict[str, float]]:
    n = fleet.n_series
    steady_n = n * (scrapes - 1)
    out: dict[str, dict[str, float]] = {}
    for name, res in results.items():
        if not res.rounds:
            continue
        rates = [steady_n / r.steady_s for r in res.rounds]
        out[name] = {
            "rate": _median(rates), "rate_min": min(rates), "rate_max": max(rates),
            "cpu": _median([r.steady_cpu_s / steady_n * 1e6 for r in res.rounds]),
            "first": _median([n / r.first_s for r in res.rounds]),
            "rss": _median([r.peak_rss / 2**20 for r in res.rounds]),
            "rss_max": max(r.peak_rss / 2**20 for r in res.rounds),
            "wire": res.wire_bytes, "raw": res.raw_bytes,
            "ok": float(all(r.stored == n * scrapes for r in res.rounds)),
        }  # fmt: skip
        for key in res.rounds[0].disk:
            out[name]["disk_" + key] = _median([r.disk[key] for r in res.rounds])
    return out


def disk_main(name: str, s: dict[str, float]) -> str:
    if name.startswith("vm"):
        return f"{s['disk_merged']:.2f} (flushed {s['disk_flushed']:.2f})"
    if name.startswith("prom"):
        return f"{s['disk_dir']:.2f} dir incl. WAL; {s['disk_block']:.2f} head as block"
    return f"{s['disk_compacted']:.2f} (samples partition alone {s['disk_partition']:.2f}; before compaction {s['disk_stopped']:.2f})"


def print_table(results: dict[str, PathResult], fleet: _fleet.Fleet, args: argparse.Namespace) -> None:
    summ = summarize(results, fleet, args.scrapes)
    n = fleet.n_series
    print()
    print(
        f"Ingest, {fleet.nodes:,} nodes x 8 GPUs x 20 DCGM metrics = {n:,} series x {args.scrapes} scrapes "
        f"= {n * args.scrapes:,} samples; {args.threads} client threads, {args.per_request:,} series/request; "
        f"median (min-max) of {args.rounds} round(s)"
    )
    hdr = ("path", "steady samples/s", "CPU-s/1M", "first scrape series/s", "wire B/sample", "peak RSS MiB",
           "disk B/sample", "all stored")  # fmt: skip
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for name, res in results.items():
        if res.skipped:
            print(f"| {LABEL[name]} | skipped: {res.skipped} | | | | | | |")
            continue
        s = summ.get(name)
        if s is None:
            continue
        wire = f"{s['wire']:.0f}" + (f" ({s['raw']:.0f} raw)" if abs(s["raw"] - s["wire"]) > 0.5 else "")
        print(
            f"| {LABEL[name]} | {s['rate']:,.0f} ({s['rate_min']:,.0f}-{s['rate_max']:,.0f}) | {s['cpu']:.2f} | "
            f"{s['first']:,.0f} | {wire} | {s['rss']:,.0f} (max {s['rss_max']:,.0f}) | {disk_main(name, s)} | "
            f"{'yes' if s['ok'] else 'NO'} |"
        )
    ratios(summ)


def ratios(summ: dict[str, dict[str, float]]) -> None:
    sg = {k: v for k, v in summ.items() if k.startswith("sg-")}
    if not sg:
        return
    print()
    print("Ratios (Sightglass / peer) vs the issue's targets: ingest >= 1x Prometheus and >= 0.5x VictoriaMetrics"
          " samples/s; disk <= 2x VictoriaMetrics bytes/sample")  # fmt: skip
    vm_rate = max((summ[k]["rate"] for k in ("vm-text", "vm-rw") if k in summ), default=None)
    vm_same = {"sg-text": "vm-text", "sg-rw": "vm-rw"}
    vm_disk = (
        _median([summ[k]["disk_merged"] for k in ("vm-text", "vm-rw") if k in summ]) if vm_rate else None
    )
    prom = summ.get("prom-rw")
    for name, s in sg.items():
        parts = [f"  {name:<8}:"]
        peer = vm_same.get(name) if vm_same.get(name) in summ else ("vm-rw" if "vm-rw" in summ else None)
        if peer:
            x = s["rate"] / summ[peer]["rate"]
            parts.append(f"samples/s {x:.2f}x {peer} ({'OK' if x >= 0.5 else 'MISS'} >= 0.5x)")
            if summ[peer]["cpu"] > 0:  # 0 when the run is too short for the 10-ms CPU clock
                parts.append(f"CPU/sample {s['cpu'] / summ[peer]['cpu']:.1f}x {peer}")
        if prom:
            x = s["rate"] / prom["rate"]
            parts.append(f"samples/s {x:.2f}x prom-rw ({'OK' if x >= 1 else 'MISS'} >= 1x)")
        if vm_disk:
            x = s["disk_compacted"] / vm_disk
            xp = s["disk_partition"] / vm_disk
            parts.append(
                f"disk {x:.2f}x VM whole dir / {xp:.2f}x samples partition ({'OK' if x <= 2 else 'MISS'} <= 2x)"
            )
        if prom:
            parts.append(f"disk {s['disk_compacted'] / prom['disk_block']:.2f}x Prometheus block")
        print(parts[0] + " " + "; ".join(parts[1:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--nodes", type=int, default=1000, help="nodes of 8 GPUs x 20 metrics [1000 -> 160,000 series]"
    )
    ap.add_argument("--scrapes", type=int, default=60, help="scrapes, 10 s apart [60]")
    ap.add_argument("--rounds", type=int, default=3, help="fresh server per round; median reported [3]")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--per-request", type=int, default=10_000, help="series per request [10,000]")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--no-peers", action="store_true", help="Sightglass paths only")
    ap.add_argument(
        "--no-otlp-gzip",
        dest="otlp_gzip",
        action="store_false",
        help="send OTLP uncompressed (default: gzip level 1, the Collector's default encoding)",
    )
    ap.add_argument(
        "--store-report", action="store_true", help="print the Sightglass store's per-table sizes"
    )
    ap.add_argument(
        "--profile", metavar="DIR", default=None,
        help="record the Sightglass server's steady phase with py-spy --gil (collapsed stacks per path and round)",
    )  # fmt: skip
    ap.add_argument(
        "--shuffle", action="store_true",
        help="send each scrape's series in another order (as a sender that batches differently each time)",
    )  # fmt: skip
    ap.add_argument(
        "--profile-all", action="store_true",
        help="with --profile: sample every thread that is on a CPU (DuckDB's threads too), not only the GIL holder",
    )  # fmt: skip
    ap.add_argument("--start-ms", type=int, default=None, help="first timestamp [a UTC hour 2-3 h ago]")
    args = ap.parse_args(argv)
    if args.scrapes < 2:
        ap.error("--scrapes must be >= 2 (phase 1 + steady)")

    names = [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in names:
        if p not in PATHS:
            ap.error(f"unknown path {p!r}")
    results: dict[str, PathResult] = {}
    for p in names:
        engine = PATHS[p][0]
        res = results[p] = PathResult(p)
        if engine != "sightglass" and args.no_peers:
            res.skipped = "--no-peers"
        elif engine == "vm" and not _peers.have(_peers.VM_BIN):
            res.skipped = f"{_peers.VM_BIN} not installed"
        elif engine == "prometheus" and not _peers.have(_peers.PROM_BIN):
            res.skipped = f"{_peers.PROM_BIN} not installed"

    now_ms = int(time.time() * 1000)
    start_ms = args.start_ms or ((now_ms - 3 * 3_600_000) // 3_600_000 + 1) * 3_600_000
    fleet = _fleet.Fleet(nodes=args.nodes, start_ms=start_ms)
    print(f"fleet: {fleet.nodes:,} nodes, {fleet.n_gpus:,} GPUs, {fleet.n_series:,} series, {args.scrapes} scrapes "
          f"from {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start_ms / 1000))}", flush=True)  # fmt: skip
    for fmt in ("text", "rw", "otlp"):
        todo = [p for p in names if PATHS[p][1] == fmt and not results[p].skipped]
        if not todo:
            continue
        t = time.perf_counter()
        bodies, raw, wire = build_bodies(
            fmt, fleet, args.scrapes, args.per_request, args.otlp_gzip, args.shuffle
        )
        print(f"built {fmt} bodies: {sum(map(len, bodies)):,} requests, {wire:.1f} B/sample on the wire, "
              f"{time.perf_counter() - t:.1f} s (not timed)", flush=True)  # fmt: skip
        for p in todo:
            results[p].raw_bytes, results[p].wire_bytes = raw, wire
            run_path(p, bodies, fleet, args, results[p])
        del bodies
        gc.collect()
    print_table(results, fleet, args)
    if _storage.COMPACT_ERRORS:
        print(f"note: DuckDBStore.compact() raised {len(_storage.COMPACT_ERRORS)}x (fell back to close + FORCE "
              f"CHECKPOINT): {_storage.COMPACT_ERRORS[0]}")  # fmt: skip
    bad = [
        p
        for p, r in results.items()
        if r.rounds and any(rd.stored != fleet.n_series * args.scrapes for rd in r.rounds)
    ]
    if bad:
        print(f"NOT ALL SAMPLES STORED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
