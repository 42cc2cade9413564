"""The ingest and disk benchmarks run end to end at a tiny size (CI proves the scripts work)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cramjam
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_remote_write_encoding_matches_the_decoder() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import _fleet
    finally:
        sys.path.remove(str(BENCH))
    from sightglass.ingest.remote_write import RemoteWriteDecoder

    fleet = _fleet.Fleet(nodes=1, start_ms=1_795_132_800_000)
    ranges = _fleet.chunks(fleet.n_series, 100)
    bodies, _ = _fleet.rw_bodies(_fleet.rw_label_bytes(fleet), fleet.values(0), fleet.start_ms, ranges)
    res = RemoteWriteDecoder().decode(bytes(cramjam.snappy.decompress_raw(bodies[0])), 1)
    labels = next(iter(fleet.series_labels()))
    first = res.batch.rows()[0]
    assert res.samples == 100
    assert first[0].all_labels() == labels
    assert first[1] == fleet.start_ms
    assert first[2] == fleet.values(0)[0]


def test_ingest_bench_sightglass_only() -> None:
    r = _run(
        "ingest.py", "--nodes", "2", "--scrapes", "3", "--rounds", "1", "--per-request", "80", "--no-peers"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| Sightglass /api/v1/write (remote write 1.0) |" in r.stdout
    assert "NO |" not in r.stdout, r.stdout


@pytest.mark.peer
def test_ingest_bench_with_peers() -> None:
    if not (shutil.which("victoria-metrics") and shutil.which("prometheus")):
        pytest.skip("victoria-metrics and prometheus binaries are not installed")
    r = _run("ingest.py", "--nodes", "2", "--scrapes", "3", "--rounds", "1", "--per-request", "80",
             "--paths", "vm-rw,prom-rw,sg-rw")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    for label in (
        "VictoriaMetrics /api/v1/write",
        "Prometheus 2.42 /api/v1/write",
        "Sightglass /api/v1/write",
    ):
        assert f"| {label}" in r.stdout, r.stdout
    assert "NO |" not in r.stdout, r.stdout
    assert "samples/s" in r.stdout.split("Ratios")[1]


def test_store_disk_bench_tiny() -> None:
    r = _run("store_disk.py", "--nodes", "1", "--hours", "0.5", "--batch-min", "5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pragma_storage_info" in r.stdout
    assert "wide: one row per GPU" in r.stdout
