"""Text exposition parsing speed: Sightglass' parser vs prometheus_client's, on one core.

    python bench/parse_text.py               # 1,000 nodes x 8 GPUs x 20 DCGM metrics = 160k samples
    python bench/parse_text.py --nodes 100   # quick

Shape: dcgm-exporter lines with the labels it emits (gpu, UUID, pci_bus_id, device, modelName,
Hostname, DCGM_FI_DRIVER_VERSION) plus the scraper's instance and job, ~270-byte series keys. "first"
is a parser seeing every series for the first time (the first scrape); "steady" is the same parser on
the next scrape (known series, new values); "timestamped" is a back-fill line with a ms timestamp.
"""

from __future__ import annotations

import argparse
import time

from prometheus_client.parser import text_string_to_metric_families

from sightglass.ingest.prometheus_text import TextParser


def exposition(nodes: int, value_offset: int, ts_ms: int | None) -> str:
    lines = []
    for n in range(nodes):
        for g in range(8):
            for m in range(20):
                key = (
                    f'DCGM_FI_DEV_METRIC_{m}{{gpu="{g}",UUID="GPU-7351513a-3a2c-1796-8df9-1056{n:04d}e{g}4c",'
                    f'pci_bus_id="00000000:{g:02X}:00.0",device="nvidia{g}",modelName="NVIDIA H100 80GB HBM3",'
                    f'Hostname="gpu-node-{n:04d}",DCGM_FI_DRIVER_VERSION="535.129.03",'
                    f'instance="gpu-node-{n:04d}:9400",job="dcgm-exporter"}}'
                )
                value = (n * 7 + g * 3 + m + value_offset) % 100
                lines.append(f"{key} {value}" + (f" {ts_ms}" if ts_ms is not None else ""))
    return "\n".join(lines) + "\n"


def best(fn: object, rounds: int) -> float:
    out = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out = min(out, time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    first_text, next_text = exposition(args.nodes, 0, None), exposition(args.nodes, 1, None)
    ts_text = exposition(args.nodes, 2, 1_790_000_000_000)
    n = args.nodes * 160
    first = best(lambda: TextParser().parse(first_text, default_ts_ms=1), args.rounds)
    warm = TextParser()
    warm.parse(first_text, default_ts_ms=1)
    steady = best(lambda: warm.parse(next_text, default_ts_ms=2), args.rounds)
    warm_ts = TextParser()
    warm_ts.parse(exposition(args.nodes, 3, 1_789_999_990_000))
    stamped = best(lambda: warm_ts.parse(ts_text), args.rounds)
    ref = best(lambda: [s for f in text_string_to_metric_families(next_text) for s in f.samples], 1)
    print(
        f"shape: {args.nodes} nodes x 8 GPUs x 20 metrics = {n:,} samples, {len(next_text) / n:.0f} B/sample"
    )
    print("| parser | samples/s | vs prometheus_client |")
    print("|---|---:|---:|")
    for name, secs in (
        ("sightglass, first scrape (all series new)", first),
        ("sightglass, steady (known series)", steady),
        ("sightglass, timestamped back-fill (known series)", stamped),
        ("prometheus_client.parser", ref),
    ):
        print(f"| {name} | {n / secs:,.0f} | {ref / secs:.1f}x |")


if __name__ == "__main__":
    main()
