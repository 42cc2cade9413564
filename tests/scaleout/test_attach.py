"""Attach mode: ``sightglass up --attach URL`` on a Prometheus that already holds the data.

The simulator writes one labelled RCA case (a thermal fault on one GPU of a 2-node training job) as
OpenMetrics; ``promtool tsdb create-blocks-from openmetrics`` turns it into TSDB blocks that a real
Prometheus serves (as ``sightglass.promql.compliance`` does). Sightglass never ingests a sample: the
real server process, attached read-only, finds the data two hours in the past, builds the topology,
runs the anomaly detector over it, answers PromQL by passing it through, refuses writes, and an RCA
of the case's symptom over the attached store names the faulty GPU.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scaleout_helpers import wait_for

from sightglass.config import Config
from sightglass.ingest.remote_write import compress, encode_write_request
from sightglass.promql.compliance import prometheus
from sightglass.rca.cases import read_case
from sightglass.scaleout.commands import attach_config
from sightglass.scaleout.store import open_scaleout
from sightglass.simulate.fast import run_cases
from sightglass.store.duckdb import DuckDBStore
from sightglass.store.remote import RemoteEngine

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("promtool")), reason="prometheus/promtool not installed"
)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("case")
    now = int(time.time() * 1000)
    start = now - now % 10_000 - 2 * 3_600_000  # history: nothing near "now"
    run_cases(cases=1, nodes=2, duration_s=1800, seed=3, start_ms=start, out=out, only=["gpu_thermal"])
    return read_case(out / "case-000")


@pytest.fixture(scope="module")
def prom_url(case: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus(case.path / "metrics.om", tmp_path_factory.mktemp("prom")) as url:
        yield url


def _sightglass(url: str, data: Path, cfg: Path, port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("sightglass") or str(Path(sys.executable).with_name("sightglass"))
    argv = [
        exe,
        "up",
        "--attach",
        url,
        "--data",
        str(data),
        "--listen",
        f"127.0.0.1:{port}",
        "--config",
        str(cfg),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(data.parent / "sg.log", "wb"))


def test_attach_gives_topology_anomalies_and_rca(case: Any, prom_url: str, tmp_path: Path) -> None:
    import _peers

    data, port = tmp_path / "data", _peers.free_port()
    data.mkdir()
    cfg = tmp_path / "sightglass.toml"
    cfg.write_text(
        'log_level = "warning"\n[analytics]\ninterval = "1s"\nhistory = "10m"\n'
        '[backends.replicas]\nbackfill = "20m"\n'
    )
    proc = _sightglass(prom_url, data, cfg, port)
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "sg.log").read_text()[-3000:]
            try:
                return httpx.get(base + "/-/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "sightglass up --attach")

        def analysed() -> dict[str, Any] | None:
            st = httpx.get(base + "/-/stats", timeout=10).json()["data"]
            a = st.get("analytics") or {}
            wm = (a.get("watermarks") or {}).get("0")
            return (
                st
                if wm is not None and wm == a.get("analysed_until_ms") and a.get("batches", 0) >= 4
                else None
            )

        stats = wait_for(analysed, 90, "the attached analytics to catch up", every=0.5)
        assert stats["read_only"] is True and stats["series"] > 100
        assert abs(stats["newest_ms"] - (case.at_ms + 600_000)) < 700_000  # found the data in the past
        ents = httpx.get(base + "/api/v1/topology/entities", params={"kind": "gpu"}, timeout=30).json()[
            "data"
        ]
        assert len(ents) == 16
        r = httpx.get(
            base + "/api/v1/query", params={"query": "count(DCGM_FI_DEV_GPU_TEMP)", "time": case.at_ms / 1000}
        )
        assert r.json()["data"]["result"][0]["value"][1] == "16"
        # read-only: a write is refused with the reason
        body = compress(encode_write_request([({"__name__": "x", "a": "b"}, [(case.at_ms, 1.0)])]))
        w = httpx.post(base + "/api/v1/write", content=body, timeout=10,
                       headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"})  # fmt: skip
        assert w.status_code == 503 and "read-only" in w.text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    # the anomalies went to the local catalog: the faulty GPU is among them
    want = case.truth["match"]
    cat = DuckDBStore(data)
    try:
        evs = cat.query_events(0, 2**62, kind="anomaly.entity")
    finally:
        cat.close()
    flagged = {e.entity.get("entity") for e in evs}
    assert flagged, "no anomaly events written in attach mode"
    # the RCA over the attached (read-only) store, with those events as evidence
    store = open_scaleout(attach_config(Config.load(None, data=str(data)), prom_url))
    assert store is not None
    try:
        from sightglass.rca.engine import analyze

        result = analyze(store, case.symptom, case.at_ms, engine=RemoteEngine(store.metrics)).to_dict()
    finally:
        store.close()
    top = result["causes"][:3]
    assert top, json.dumps(result)[:2000]
    hits = [c for c in top if c["entity"]["kind"] == case.truth["kind"]
            and all(c["entity"]["labels"].get(k) == v for k, v in want.items())]  # fmt: skip
    assert hits, [c["summary"] for c in top]
    assert hits[0]["entity"]["id"] in flagged  # the detector flagged the root too, on its own
