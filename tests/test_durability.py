"""An acknowledged write survives ``kill -9``: a real ``sightglass up`` process, real HTTP, SIGKILL."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from sightglass.ingest.limits import snappy_block_compress
from sightglass.ingest.remote_write import encode_write_request
from sightglass.model import Matcher
from sightglass.store.duckdb import DuckDBStore

T0 = 1_700_000_000_000
N_REQUESTS = 40
SAMPLES_PER_REQUEST = 25
RW_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def _start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "up", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    marker = data / "server.json"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"sightglass up exited with {proc.returncode}:\n{out}")
        if marker.exists():
            try:
                info = json.loads(marker.read_text())
                if info.get("pid") == proc.pid:
                    return proc, str(info["url"])
            except ValueError:
                pass  # being written
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("sightglass up did not start within 60 s")
        time.sleep(0.05)


def _rw_body(i: int) -> bytes:
    series = [
        ({"__name__": "durable_samples", "req": str(i), "k": str(k)}, [(T0 + i * 1000, float(i * 100 + k))])
        for k in range(SAMPLES_PER_REQUEST)
    ]
    return snappy_block_compress(encode_write_request(series))


def _otlp_body(i: int) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    a = rm.resource.attributes.add()
    a.key, a.value.string_value = "service.name", "trainer"
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = "durable.otlp", "1"
    dp = m.gauge.data_points.add()
    dp.time_unix_nano = (T0 + i * 1000) * 1_000_000
    dp.as_double = float(i)
    return gzip.compress(req.SerializeToString())


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    """Four clients push until N requests are acknowledged; SIGKILL lands while others are in flight."""
    data = tmp_path / "data"
    data.mkdir()
    proc, url = _start(data)
    acked_rw: list[int] = []
    acked_otlp: list[int] = []
    counter = itertools.count()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                i = next(counter)
                try:
                    r = client.post("/api/v1/write", content=_rw_body(i), headers=RW_HEADERS)
                    assert r.status_code == 204, r.text
                    acked_rw.append(i)
                    r = client.post(
                        "/v1/metrics",
                        content=_otlp_body(i),
                        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                    )
                    assert r.status_code == 200, r.text
                    acked_otlp.append(i)
                except httpx.TransportError:
                    return  # the server is gone: whatever was not acknowledged may be lost

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acked_otlp) < N_REQUESTS:
            assert time.monotonic() < deadline, f"only {len(acked_otlp)} requests acknowledged in 120 s"
            assert all(t.is_alive() for t in threads) or len(acked_otlp) >= N_REQUESTS, "a client failed"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only the WAL has the data
        stop.set()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
        for t in threads:
            t.join(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    rw_done, otlp_done = list(acked_rw), list(acked_otlp)
    assert len(otlp_done) >= N_REQUESTS

    with DuckDBStore(data, read_only=True) as store:
        got = {
            (s.key.label_dict()["req"], s.key.label_dict()["k"]): (int(s.ts_ms[-1]), float(s.values[-1]))
            for s in store.select([Matcher("__name__", "=", "durable_samples")], 0, 2**50)
        }
        for i in rw_done:  # every acknowledged sample is there, exactly
            for k in range(SAMPLES_PER_REQUEST):
                assert got[(str(i), str(k))] == (T0 + i * 1000, float(i * 100 + k))
        (otlp_series,) = store.select([Matcher("__name__", "=", "durable_otlp_ratio")], 0, 2**50)
        stored = dict(zip(otlp_series.ts_ms.tolist(), otlp_series.values.tolist(), strict=True))
        for i in otlp_done:
            assert stored[T0 + i * 1000] == float(i)
