"""Fast-mode throughput: simulate a factory and format OpenMetrics text, print samples/s and the shape.

    python bench/simulate.py [--nodes 1000] [--duration 10m] [--out /dev/null | DIR]

By default the text goes to /dev/null (generation + formatting speed, independent of the disk); with
``--out DIR`` it writes DIR/metrics.om like ``sightglass simulate``. A 1,000-node hour is ~130 M
samples and ~30 GB of text, so the default measures a 10-minute slice and extrapolates.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from sightglass.config import parse_duration_ms
from sightglass.simulate.engine import Simulator
from sightglass.simulate.exposition import Recorder, write_openmetrics
from sightglass.simulate.fast import DEFAULT_START
from sightglass.timeutil import parse_time_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--duration", default="10m")
    ap.add_argument("--step", default="10s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/dev/null")
    args = ap.parse_args()
    dur_s = parse_duration_ms(args.duration) / 1000
    dt = parse_duration_ms(args.step) / 1000
    t0 = time.perf_counter()
    sim = Simulator(args.nodes, args.seed, parse_time_ms(DEFAULT_START), dt_s=dt, fault_every_s=600)
    t_build = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix="sightglass-bench-"))
    try:
        rec = Recorder(work)
        ticks = int(dur_s // dt) + 1
        t1 = time.perf_counter()
        for _ in range(ticks):
            rec.add(sim.step())
        t_sim = time.perf_counter() - t1
        target = Path(args.out)
        if target != Path("/dev/null"):
            target.mkdir(parents=True, exist_ok=True)
            target = target / "metrics.om"
        t2 = time.perf_counter()
        with target.open("wb") as f:
            n = write_openmetrics(rec, sim.labels, f)
        t_fmt = time.perf_counter() - t2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = t_build + t_sim + t_fmt
    series = rec.n_series
    print(
        f"shape: {args.nodes} nodes x 8 GPUs = {sim.factory.n_gpus} GPUs, {series:,} series, {ticks} ticks "
        f"of {dt:g}s ({args.duration})"
    )
    print(
        f"samples: {n:,}  build {t_build:.1f}s  simulate {t_sim:.1f}s  format+write {t_fmt:.1f}s"
        f"  total {total:.1f}s"
    )
    print(
        f"throughput: {n / total:,.0f} samples/s end to end; simulate {n / t_sim:,.0f}/s; "
        f"format {n / t_fmt:,.0f}/s"
    )
    hour = 3600 / dur_s * total
    print(f"extrapolated: one simulated hour of this factory at {dt:g}s takes ~{hour / 60:.1f} min")


if __name__ == "__main__":
    main()
