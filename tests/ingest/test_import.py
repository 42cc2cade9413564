from __future__ import annotations

import gzip
from pathlib import Path

from click.testing import CliRunner

from sightglass.cli import cli
from sightglass.model import Matcher
from sightglass.store.duckdb import DuckDBStore

OM = (
    "# HELP gpu_temp_celsius GPU temperature\n# TYPE gpu_temp_celsius gauge\n"
    + "".join(
        f'gpu_temp_celsius{{gpu="{g}"}} {60 + i} {1700000000 + 10 * i}\n' for g in range(2) for i in range(50)
    )
    + "# TYPE energy_joules counter\n"
    + "".join(f"energy_joules_total {i * 100} {1700000000 + 10 * i}.5\n" for i in range(50))
    + "# EOF\n"
)


def test_import_openmetrics_file_and_gz(tmp_path: Path) -> None:
    (tmp_path / "a.om").write_text(OM)
    with gzip.open(tmp_path / "b.om.gz", "wt") as f:
        f.write(OM.replace('gpu="', 'gpu="x'))
    r = CliRunner().invoke(
        cli, ["import", str(tmp_path / "a.om"), str(tmp_path / "b.om.gz"), "--data", str(tmp_path / "d")]
    )
    assert r.exit_code == 0, r.output
    assert "imported 300 samples" in r.output
    with DuckDBStore(tmp_path / "d", read_only=True) as s:
        temps = s.select([Matcher("__name__", "=", "gpu_temp_celsius")], 0, 2**62)
        assert len(temps) == 4 and all(len(x) == 50 for x in temps)
        (energy,) = s.select([Matcher("__name__", "=", "energy_joules_total")], 0, 2**62)
        assert energy.ts_ms[0] == 1_700_000_000_500 and energy.values[-1] == 4900
        assert s.stats()["head_samples"] == 0  # compacted after the import
        assert s.metadata()["gpu_temp_celsius"][0].help == "GPU temperature"


def test_import_in_small_chunks_keeps_line_numbers(tmp_path: Path, monkeypatch: object) -> None:
    import sightglass.ingest.importer as imp

    monkeypatch.setattr(imp, "CHUNK_BYTES", 64)  # type: ignore[attr-defined]
    bad = OM.replace('gpu_temp_celsius{gpu="1"} 65', 'gpu_temp_celsius{gpu="1} 65', 1)
    (tmp_path / "bad.om").write_text(bad)
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "bad.om"), "--data", str(tmp_path / "d")])
    assert r.exit_code != 0
    line = next(i for i, t in enumerate(bad.splitlines(), 1) if 'gpu="1} 65' in t)
    assert f"bad.om:{line}:" in r.output


def test_import_errors_are_clear(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "missing.om"), "--data", str(tmp_path / "d")])
    assert r.exit_code != 0 and "no such file" in r.output
    (tmp_path / "nots.om").write_text("m 1\n# EOF\n")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "nots.om"), "--data", str(tmp_path / "d")])
    assert r.exit_code != 0 and "no scrape time" in r.output


def test_import_prometheus_ms_format(tmp_path: Path) -> None:
    (tmp_path / "p.prom").write_text("m 1 1700000000000\nm 2 1700000010000\n")
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "p.prom"), "--data", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    with DuckDBStore(tmp_path / "d", read_only=True) as s:
        (m,) = s.select([Matcher("__name__", "=", "m")], 0, 2**62)
        assert list(m.ts_ms) == [1_700_000_000_000, 1_700_000_010_000]
