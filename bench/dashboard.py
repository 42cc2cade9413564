"""Dashboard render time in a real Chromium on a simulated factory (default 1,000 nodes = 8,000 GPUs).

    python bench/dashboard.py                       # 1,000 nodes, 10 simulated minutes
    python bench/dashboard.py --nodes 100 --duration 5m
    python bench/dashboard.py --data DIR            # reuse a store made by `sightglass simulate --ingest DIR`

Loads the simulator's fast mode into a DuckDB store (``sightglass simulate --ingest``), starts the
real server on it (``sightglass up`` in a subprocess, a free 127.0.0.1 port), then drives Debian's
``/usr/bin/chromium`` with Playwright and measures, per page, navigation start → the page's content
rendered from its JSON twin (the overview: its KPI cards and the node strip). The page is opened
``?time=`` the end of the data, as a deep link would, because the simulated data ends in the past.
It prints the data shape, the twin's own latency (after one warm-up request for another instant,
which pays the process' first-request costs; cold: a fresh answer; warm: the same instant again,
a shared answer) and the render figures (median, min-max of ``--rounds``), cold
(a fresh answer) and warm (a second viewer within the window). Target: overview < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
# page -> JS condition that is true once its content is on screen
PAGES = {
    "/": "document.querySelectorAll('#cards .card').length > 5 && document.querySelectorAll('#nodes a').length > 0",
    "/ui/heatmap": "document.querySelectorAll('#heatmap a.cell').length > 0",
    "/ui/topology": "document.querySelectorAll('.rack .tgpus a').length > 0",
    "/ui/inference": "document.querySelectorAll('#models tbody tr').length > 0",
    "/ui/network": "document.querySelectorAll('#ports tbody tr').length > 0",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _simulate(data: Path, nodes: int, duration: str) -> float:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sightglass.cli", "simulate", "--nodes", str(nodes), "--duration", duration,
         "--start", start, "--fault-every", "2m", "--ingest", str(data)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def _get(url: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = json.load(r)
    return time.perf_counter() - t0, body


def _stats(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--duration", default="10m")
    ap.add_argument("--data", help="existing store (skips the simulation)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pages", default="all", help="comma list of paths, or all")
    ap.add_argument(
        "--background", action="store_true", help="keep the server's analytics, cost and alerting loops on"
    )
    ap.add_argument("--keep", action="store_true", help="keep the simulated store (reuse it with --data)")
    a = ap.parse_args()
    import psutil
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp(prefix="sg-bench-dash-")
    data = Path(a.data) if a.data else Path(tmp) / "data"
    if not a.data:
        print(f"simulating {a.nodes} nodes x {a.duration} into {data} ...", flush=True)
        print(f"  simulate + ingest: {_simulate(data, a.nodes, a.duration):.1f} s")
    from sightglass.store.duckdb import DuckDBStore

    with DuckDBStore(str(data)) as st:  # the newest sample: pages are opened "as of" it
        at = st.newest_ms / 1000
    port = _free_port()
    conf = Path(tmp) / "sightglass.toml"
    on = "true" if a.background else "false"
    conf.write_text(f"[analytics]\nenabled = {on}\n[cost]\nenabled = {on}\n[alerting]\nenabled = {on}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "up", "--data", str(data), "--listen", f"127.0.0.1:{port}",
         "--config", str(conf)],
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                _get(base + "/-/stats")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start") from None
                time.sleep(0.5)
        _, stats = _get(base + "/-/stats")
        shape = {k: stats["data"].get(k) for k in ("series", "head_samples", "compacted_samples")}
        print(f"data: {a.nodes} nodes, {shape}, newest sample {time.strftime('%H:%M:%S', time.gmtime(at))}Z")
        print(f"server: sightglass up, background loops {'on' if a.background else 'off (--background)'}")
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work shares them)"
        )
        _get(f"{base}/api/v1/ui/overview?time={at - 3600}")  # warm-up: the process' first request
        twin_cold: list[float] = []
        twin_warm: list[float] = []
        twin_cpu: list[float] = []
        proc = psutil.Process(server.pid)
        for i in range(a.rounds):
            c0 = proc.cpu_times()
            t, body = _get(f"{base}/api/v1/ui/overview?time={at - i * 10}")
            c1 = proc.cpu_times()
            twin_cpu.append(c1.user + c1.system - c0.user - c0.system)
            twin_cold.append(t)
            t2, _ = _get(f"{base}/api/v1/ui/overview?time={at - i * 10}")
            twin_warm.append(t2)
        g = body["data"]["gpus"]
        print(f"overview twin: {g} ; {len(body['data']['nodes'])} node cells")
        print(f"  twin latency cold {_stats(twin_cold)}; warm {_stats(twin_warm)}")
        print(f"  server CPU per cold answer {_stats(twin_cpu)} (less sensitive to other load than latency)")
        pages = list(PAGES) if a.pages == "all" else a.pages.split(",")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for path in pages:
                cold: list[float] = []
                warm: list[float] = []
                for i in range(a.rounds):
                    for bucket in (cold, warm):
                        sep = "&" if "?" in path else "?"
                        url = f"{base}{path}{sep}time={at - 100 - i * 10}&live=0"
                        page.goto("about:blank")
                        t0 = time.perf_counter()
                        page.goto(url, wait_until="commit")
                        page.wait_for_function(PAGES.get(path, "true"), timeout=120_000, polling="raf")
                        bucket.append(time.perf_counter() - t0)
                print(f"render {path:<14} cold {_stats(cold)}; warm {_stats(warm)}")
            browser.close()
            if errors:
                print("page errors:", errors)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        if a.keep and not a.data:
            print(f"store kept: {data} (reuse it with --data)")
        else:  # the simulated store (unless kept) and the server's config file
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
