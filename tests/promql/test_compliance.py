"""Sightglass' PromQL against a real Prometheus 2.42 on the same data (``sightglass.promql.compliance``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sightglass.promql import compliance

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
)


@pytest.mark.peer
@pytest.mark.skipif(
    PROMETHEUS is None or shutil.which("promtool") is None,
    reason="needs /usr/bin/prometheus and promtool (apt-get install prometheus); CI installs them",
)
def test_agrees_with_prometheus(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    outcomes = compliance.run(tmp_path, binary=PROMETHEUS)
    assert len(outcomes) >= 200
    assert len({o.query for o in outcomes}) >= 150
    failed = [o for o in outcomes if not o.ok]
    assert not failed, compliance.report(outcomes)


def test_compare_rules() -> None:
    vec = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1.0000000001"]}]}
    same = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1"]}]}
    other = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "1.001"]}]}
    nan = {"resultType": "vector", "result": [{"metric": {"a": "1"}, "value": [1, "NaN"]}]}
    assert compliance.compare(vec, same, ordered=False) == ""
    assert compliance.compare(vec, other, ordered=False) != ""
    assert compliance.compare(nan, nan, ordered=False) == ""
    assert compliance.compare(nan, same, ordered=False) != ""


def test_openmetrics_is_ordered_and_terminated() -> None:
    fams = compliance.dataset()
    text = compliance.to_openmetrics(fams)
    assert text.endswith("# EOF\n")
    assert len(compliance.to_batch(fams)) == sum(len(s.ts_ms) for f in fams for s in f.series)
    for fam in fams:
        for s in fam.series:
            assert (s.ts_ms[1:] > s.ts_ms[:-1]).all()
