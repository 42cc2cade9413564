"""Agent overhead: CPU (% of one core) and RSS at 1 s sampling, host collectors + a fake 8-GPU NVML.

The fake NVML backend replays a recorded ``nvidia-smi -q -x`` of an A100-SXM4-80GB (MIG on, 4 GPU
instances) eight times with distinct identities, plus 12 NVLinks per GPU: the agent does all of its
own work (per-GPU series, MIG, NVLink rates, config snapshots, attribution, encoding, spooling,
pushing) but the NVML calls themselves cost nothing here, so the NVML side is NOT measured (that
needs a GPU machine). Push mode sends to a local sink process that answers 204 (its CPU is not
counted). Targets from issue #10: <= 1 % of one core, <= 60 MB RSS.

    python bench/agent.py                  # push mode, 30 s
    python bench/agent.py --mode listen    # serve /metrics instead (scraped once a second)
    python bench/agent.py --seconds 10 --gpus 8
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "agent" / "fixtures"

_SINK = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
s.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mode", choices=("push", "listen"), default="push")
    ap.add_argument("--warmup", type=float, default=3)
    args = ap.parse_args()

    rss_start = _rss_mb()
    from sightglass.agent.assemble import build
    from sightglass.agent.attribution import Attributor
    from sightglass.agent.config import AgentConfig
    from sightglass.agent.gpu import GpuCollector
    from sightglass.agent.nvml import NvLink
    from sightglass.agent.smi_xml import SmiXmlBackend

    rss_imported = _rss_mb()
    sink = None
    tmp = tempfile.mkdtemp(prefix="sg-agent-bench-")
    if args.mode == "push":
        port = _free_port()
        sink = subprocess.Popen([sys.executable, "-c", _SINK, str(port)], stdout=subprocess.PIPE)
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        cfg = AgentConfig(
            server=f"http://127.0.0.1:{port}", interval="1s", spool_dir=tmp, hostname="bench-node"
        )
    else:
        cfg = AgentConfig(listen="127.0.0.1:0", interval="1s", hostname="bench-node")
    asm = build(cfg.model_copy(update={"collectors": ["host", "infiniband", "nfs", "lustre"]}))
    backend = SmiXmlBackend.from_file(FIXTURES / "a100-sxm4-v12.xml", replicate=args.gpus)
    counters = {i: 0 for i in range(args.gpus)}

    def links() -> None:
        for i in range(args.gpus):
            counters[i] += 25_000_000  # ~25 GB/s of NVLink traffic per GPU
            backend.nvlink_state[i] = [
                NvLink(n, True, 0, 0, 0, 0, counters[i] // 12, counters[i] // 12) for n in range(12)
            ]

    attr = Attributor("/proc")
    gpu = GpuCollector(backend, cfg.hostname, process_labels=attr.labels, process_env=attr.nccl_env)
    asm.agent.collectors.append(gpu)
    durations: dict[str, list[float]] = {}
    sizes: list[int] = []

    def record(col: object) -> None:
        from sightglass.agent.collection import Collection

        assert isinstance(col, Collection)
        sizes.append(len(col))
        links()
        for k, v in zip(col.keys, col.values, strict=True):
            if k.metric == "sightglass_agent_collect_duration_seconds":
                durations.setdefault(dict(k.labels)["collector"], []).append(v)

    asm.agent.on_collection = record
    stop = threading.Event()
    asm.start()
    scraper_stop = threading.Event()
    if args.mode == "listen":
        import urllib.request

        assert asm.server is not None
        url = asm.server.url + "/metrics"

        def scrape() -> None:
            while not scraper_stop.wait(1.0):
                urllib.request.urlopen(url, timeout=5).read()

        threading.Thread(target=scrape, daemon=True).start()
    t = threading.Thread(target=asm.agent.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(args.warmup)
    n0, cpu0, w0 = len(sizes), _cpu_s(), time.monotonic()
    time.sleep(args.seconds)
    n1, cpu1, w1 = len(sizes), _cpu_s(), time.monotonic()
    rss_end = _rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stop.set()
    scraper_stop.set()
    t.join(timeout=5)
    spooled = len(asm.spool) if asm.spool else 0
    sent = asm.pusher.stats.sent_files if asm.pusher else 0
    asm.stop()
    if sink:
        sink.kill()
    cpu_pct = 100 * (cpu1 - cpu0) / (w1 - w0)
    per = statistics.mean(sizes[n0:n1]) if n1 > n0 else 0
    print(
        f"shape: {args.gpus} fake GPUs (A100-80GB record, MIG 4x, 12 NVLinks each) + host/IB/NFS/Lustre collectors, "
        f"1 s interval, mode {args.mode}, measured {w1 - w0:.1f} s after {args.warmup:.0f} s warm-up"
    )
    print(f"samples per cycle: {per:.0f}  cycles: {n1 - n0}  pushes sent: {sent}  still spooled: {spooled}")
    print(f"CPU: {cpu_pct:.2f} % of one core (all agent threads; target <= 1 %)")
    print(
        f"RSS: {rss_end:.1f} MB now, {peak:.1f} MB peak (target <= 60 MB); interpreter {rss_start:.1f} MB, "
        f"after imports {rss_imported:.1f} MB"
    )
    print("collect time per cycle (ms, median / max):")
    for name, vals in sorted(durations.items()):
        vv = vals[n0:n1] or vals
        print(f"  {name:12s} {1000 * statistics.median(vv):7.2f} / {1000 * max(vv):7.2f}")


if __name__ == "__main__":
    main()
