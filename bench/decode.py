"""Push ingest speed: decoding alone (one core), then end to end through the handlers into the store.

    python bench/decode.py                     # 20,000 series (2,500 nodes x 8 GPUs), 5 rounds
    python bench/decode.py --nodes 12500       # 100,000 series per request

Decode numbers are samples (OTLP: flattened points) per second of process CPU time on one core, best
of ``--rounds``, with warm caches (the steady state of a sender pushing the same series every interval). "cold" is
the first request, which validates and interns every series. End to end runs the ASGI handlers
in-process (read body, decompress, decode, group-committed write to a fresh DuckDB store, 2xx) one
request at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from starlette.applications import Starlette

from sightglass.api import ingest
from sightglass.api.context import AppContext
from sightglass.config import Config
from sightglass.ingest.limits import decompress, snappy_block_compress
from sightglass.ingest.otlp import MetricsDecoder, parse_request
from sightglass.ingest.prometheus_text import TextParser
from sightglass.ingest.remote_write import (
    RemoteWriteDecoder,
    WriteRequest,
    encode_v2_request,
    encode_write_request,
)
from sightglass.store.duckdb import DuckDBStore, StoreOptions

T0 = 1_700_000_000_000


def _labels(n: int, g: int) -> dict[str, str]:
    host = f"node-{n:05d}"
    return {
        "Hostname": host, "gpu": str(g), "UUID": f"GPU-{n:05d}-{g}", "modelName": "NVIDIA H100 80GB HBM3",
        "job": "dcgm-exporter", "instance": f"{host}:9400", "cluster": "a",
    }  # fmt: skip


def rw_series(nodes: int, t: int) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    return [
        ({"__name__": "DCGM_FI_DEV_GPU_UTIL", **_labels(n, g)}, [(T0 + t * 10_000, float((n + g + t) % 100))])
        for n in range(nodes)
        for g in range(8)
    ]


def otlp_request(nodes: int, t: int) -> ExportMetricsServiceRequest:
    """One resource per node (host.name promoted), one gauge point per GPU and metric."""
    req = ExportMetricsServiceRequest()
    for n in range(nodes):
        rm = req.resource_metrics.add()
        for k, v in (("service.name", "nvml-agent"), ("host.name", f"node-{n:05d}")):
            rm.resource.attributes.add(key=k).value.string_value = v
        m = rm.scope_metrics.add().metrics.add(name="gpu.utilization", unit="1")
        for g in range(8):
            dp = m.gauge.data_points.add(time_unix_nano=(T0 + t * 10_000) * 1_000_000, as_double=float(g))
            for k, v in (("gpu", str(g)), ("gpu.uuid", f"GPU-{n:05d}-{g}"), ("gpu.model", "H100")):
                dp.attributes.add(key=k).value.string_value = v
    return req


def best(fn: Callable[[], Any], rounds: int) -> float:
    """The least process CPU time of ``rounds`` calls (CPU, not wall: the benchmark boxes are shared)."""
    times = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return max(min(times), 1e-9)


def text_body(nodes: int, t: int) -> bytes:
    return "".join(
        "DCGM_FI_DEV_GPU_UTIL{"
        + ",".join(f'{k}="{v}"' for k, v in _labels(n, g).items())
        + f"}} {(n + g + t) % 100} {T0 + t * 10_000}\n"
        for n in range(nodes)
        for g in range(8)
    ).encode()


def _full_rw(d: RemoteWriteDecoder, body: bytes) -> Any:
    """The full (validating, per-label) remote-write 1.0 decoder, without the fast path."""
    return d._decode_v1(WriteRequest.FromString(body))


def _without_fast_path(m: MetricsDecoder) -> MetricsDecoder:
    m._numbers_fast = lambda *a: None  # type: ignore[method-assign]
    m._learn = lambda *a: None  # type: ignore[method-assign]
    return m


def decode_speeds(nodes: int, rounds: int) -> None:
    n = nodes * 8
    rw1 = encode_write_request(rw_series(nodes, 0))
    rw2 = encode_v2_request(rw_series(nodes, 0))
    pb = otlp_request(nodes, 0).SerializeToString()
    from google.protobuf import json_format

    js = json_format.MessageToJson(otlp_request(nodes, 0)).encode()
    print(f"decode, one core (process CPU time), {n} samples per request (samples/s):")
    print("  warm = the same series again (a sender's steady state); full = without the fast path")
    txt = text_body(nodes, 0)
    p = TextParser()
    cold = best(lambda: p.parse(txt), 1)
    warm = best(lambda: p.parse(txt), rounds)
    print(f"  text (ms ts)       cold {n / cold:>10,.0f}   warm {n / warm:>10,.0f}")
    d = RemoteWriteDecoder()
    cold = best(lambda: d.decode(rw1), 1)
    warm = best(lambda: d.decode(rw1), rounds)
    full_d = RemoteWriteDecoder()
    full = best(lambda: _full_rw(full_d, rw1), rounds)
    print(f"  remote-write 1.0   cold {n / cold:>10,.0f}   warm {n / warm:>10,.0f}   full {n / full:>10,.0f}")
    warm = best(lambda: d.decode(rw2, 2), rounds)
    print(f"  remote-write 2.0                    warm {n / warm:>10,.0f}   (no fast path)")
    m = MetricsDecoder()

    def server(body: bytes) -> Any:  # what the OTLP handler runs: the body path, else the full parse
        return m.decode_body(body) or m.decode(parse_request(body, "protobuf", "metrics"), body)

    cold = best(lambda: server(pb), 1)
    warm = best(lambda: server(pb), rounds)
    parsed = best(lambda: m.decode(parse_request(pb, "protobuf", "metrics"), pb), rounds)
    full_m = _without_fast_path(MetricsDecoder())
    full = best(lambda: full_m.decode(parse_request(pb, "protobuf", "metrics")), rounds)
    print(
        f"  OTLP protobuf      cold {n / cold:>10,.0f}   warm {n / warm:>10,.0f}   full {n / full:>10,.0f}"
        f"   (warm with the full parse {n / parsed:,.0f})"
    )
    warm = best(lambda: m.decode(parse_request(js, "json", "metrics")), max(1, rounds // 2))
    print(f"  OTLP JSON                           warm {n / warm:>10,.0f}")
    snappy = snappy_block_compress(rw1)
    gz = gzip.compress(pb, 1)
    snappy_mb_s = len(rw1) / best(lambda: decompress(snappy, "snappy", 1 << 30), rounds) / 1e6
    gzip_mb_s = len(pb) / best(lambda: decompress(gz, "gzip", 1 << 30), rounds) / 1e6
    print(f"  (decompression: snappy block {snappy_mb_s:,.0f} MB/s, gzip {gzip_mb_s:,.0f} MB/s of output)")


async def end_to_end(nodes: int, rounds: int) -> None:
    n = nodes * 8
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(data=tmp)
        store = DuckDBStore(Path(tmp), options=StoreOptions(compact_every_s=3600))
        try:
            ctx = AppContext.build(config, store)
            app = Starlette(routes=ingest.make_routes(ctx))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as c:
                print(
                    f"end to end, in-process handlers + DuckDB commit, {n} samples per request (samples/s):"
                )
                for name, path, headers, make in (
                    ("remote-write 1.0", "/api/v1/write",
                     {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
                     lambda t: snappy_block_compress(encode_write_request(rw_series(nodes, t)))),
                    ("OTLP protobuf+gzip", "/v1/metrics",
                     {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                     lambda t: gzip.compress(otlp_request(nodes, t).SerializeToString(), 1)),
                ):  # fmt: skip
                    times = []
                    for t in range(rounds + 1):
                        body = make(t)
                        t0 = time.perf_counter()
                        r = await c.post(path, content=body, headers=headers)
                        times.append(time.perf_counter() - t0)
                        assert r.status_code in (200, 204), r.text
                    print(f"  {name:<18} first {n / times[0]:>10,.0f}   steady {n / min(times[1:]):>10,.0f}")
        finally:
            store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2500, help="8 GPUs each [2500 → 20,000 series]")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    decode_speeds(args.nodes, args.rounds)
    asyncio.run(end_to_end(args.nodes, args.rounds))


if __name__ == "__main__":
    main()
