"""Every real exporter fixture ingests into a real store and reads back equal to what went in."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sightglass.ingest.prometheus_text import TextParser
from sightglass.model import Matcher, SeriesKey
from sightglass.store.duckdb import DuckDBStore

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "exposition"
FIXTURES = sorted(SHARED.glob("*.prom"))


def _reference(text: str) -> dict[SeriesKey, float]:
    """prometheus_client's view, with its one liberty undone: it appends _total to counter samples."""
    raw_names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            if name not in raw_names and name.endswith("_total") and name[:-6] in raw_names:
                name = name[:-6]
            out[SeriesKey.of(name, s.labels)] = s.value
    return out


@pytest.mark.skipif(not FIXTURES, reason=f"no fixtures at {SHARED} (../shared beside the repo)")
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_roundtrip(path: Path, tmp_path: Path) -> None:
    text = path.read_text()
    expected = _reference(text)
    res = TextParser().parse(text, default_ts_ms=1_700_000_000_000)
    with DuckDBStore(tmp_path) as store:
        store.append(res.batch)
        for compacted in (False, True):
            if compacted:
                store.compact()
            got = {}
            for s in store.select([Matcher("__name__", "=~", ".+")], 0, 2**62):
                assert list(s.ts_ms) == [1_700_000_000_000]
                got[s.key] = float(s.values[0])
            assert got.keys() == expected.keys()
            for k, v in expected.items():
                assert got[k] == v or (math.isnan(v) and math.isnan(got[k])), k
        assert store.metadata()  # HELP/TYPE survived
