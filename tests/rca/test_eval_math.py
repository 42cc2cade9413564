"""The evaluation's arithmetic on hand-made answers."""

from __future__ import annotations

import pytest

from sightglass.rca.evaluation import (
    CaseScore,
    aggregate,
    chance_at,
    matches,
    scores_from_external,
    summarize,
)


def _s(rank: int | None, n: int = 10, fault: str = "f", method: str = "m", present: bool = True) -> CaseScore:
    return CaseScore("c", fault, method, rank, n, present, 0.5)


def test_accuracy_at_k() -> None:
    scores = [_s(1), _s(2), _s(None), _s(4)]
    a = aggregate(scores)
    assert a["cases"] == 4
    assert a["AC@1"] == 0.25
    assert a["AC@2"] == 0.5
    assert a["AC@3"] == 0.5
    assert a["AC@4"] == 0.75
    assert a["AC@5"] == 0.75
    assert a["Avg@5"] == pytest.approx((0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5)
    assert a["seconds_p50"] == 0.5


def test_chance_level() -> None:
    assert chance_at(1, 10, True) == 0.1
    assert chance_at(3, 2, True) == 1.0  # fewer candidates than k
    assert chance_at(1, 10, False) == 0.0  # the truth is not among the candidates
    a = aggregate([_s(1, n=4), _s(None, n=20, present=False)])
    assert a["chance_AC@1"] == pytest.approx((0.25 + 0.0) / 2)
    assert a["chance_AC@3"] == pytest.approx((0.75 + 0.0) / 2)
    assert a["chance_Avg@5"] == pytest.approx(((0.25 + 0.5 + 0.75 + 1 + 1) / 5) / 2)


def test_per_fault_and_method() -> None:
    scores = [_s(1, fault="a"), _s(None, fault="a"), _s(3, fault="b"), _s(1, fault="b", method="baro")]
    s = summarize(scores)
    assert set(s) == {"m", "baro"}
    assert s["m"]["per_fault"]["a"]["AC@1"] == 0.5
    assert s["m"]["per_fault"]["b"]["AC@3"] == 1.0 and s["m"]["per_fault"]["b"]["AC@1"] == 0.0
    assert s["m"]["overall"]["AC@1"] == pytest.approx(1 / 3)
    assert s["baro"]["overall"]["AC@1"] == 1.0


def test_time_percentiles() -> None:
    scores = [CaseScore("c", "f", "m", 1, 5, True, float(t)) for t in range(1, 21)]
    a = aggregate(scores)
    assert a["seconds_p50"] == pytest.approx(10.5)
    assert a["seconds_p95"] == pytest.approx(19.05)


def test_matching_rule() -> None:
    truth = {"kind": "gpu", "match": {"Hostname": "n1", "gpu": "3"}}
    assert matches("gpu", {"Hostname": "n1", "gpu": "3", "UUID": "GPU-x"}, truth)
    assert not matches("gpu", {"Hostname": "n1", "gpu": "4"}, truth)
    assert not matches("node", {"Hostname": "n1", "gpu": "3"}, truth)
    assert not matches("gpu", {"Hostname": "n1"}, truth)


def test_external_rows() -> None:
    rows = [
        {"case": "a", "fault": "cpu", "truth": "svc-a", "candidates": 5,
         "methods": {"sightglass": {"ranking": ["svc-b", "svc-a"], "seconds": 0.1},
                     "baro": {"ranking": ["svc-a"], "seconds": 0.2}}},
        {"case": "b", "fault": "mem", "truth": "svc-c", "candidates": 4,
         "methods": {"sightglass": {"ranking": ["svc-c"], "seconds": 0.3},
                     "baro": {"ranking": ["x", "y", "z", "w", "v", "svc-c"], "seconds": 0.2}}},
    ]
    scores = scores_from_external(rows)
    by = {(s.case, s.method): s for s in scores}
    assert by[("a", "sightglass")].rank == 2 and by[("a", "baro")].rank == 1
    assert by[("b", "sightglass")].rank == 1
    assert by[("b", "baro")].rank is None  # sixth is outside the top 5
    s = summarize(scores)
    assert s["sightglass"]["overall"]["AC@1"] == 0.5 and s["sightglass"]["overall"]["AC@3"] == 1.0
    assert s["sightglass"]["overall"]["chance_AC@1"] == pytest.approx((1 / 5 + 1 / 4) / 2)


def test_external_rows_per_system_and_unreadable_cases_count_as_misses() -> None:
    rows = [
        {"case": "ob1", "system": "OB", "fault": "cpu", "truth": "a", "candidates": 2,
         "methods": {"sightglass": {"ranking": ["a"], "seconds": 0.1}}},
        {"case": "tt1", "system": "TT", "fault": "cpu", "truth": "b", "candidates": 2,
         "methods": {"sightglass": {"ranking": ["b"], "seconds": 0.1}}},
        {"case": "tt2", "system": "", "fault": "", "truth": "", "candidates": 0, "methods": {},
         "error": "tt2: no inject_time.txt"},
    ]
    scores = scores_from_external(rows)
    methods = {s.method for s in scores}
    assert methods == {"sightglass [OB]", "sightglass [TT]", "sightglass"}
    broken = [s for s in scores if s.case == "tt2"]
    assert len(broken) == 1 and broken[0].rank is None and "inject_time" in (broken[0].error or "")


def test_vectorised_baro_ranks_as_rcaeval_does() -> None:
    """The suite runs BARO's per-column loop on the whole matrix: same ranking as RCAEval's own code."""
    import numpy as np
    import pandas as pd
    import pytest

    from sightglass.rca.evaluation import baro_rank_vectorised

    external = pytest.importorskip("sightglass.rca.external")
    try:
        external.baro.load_baro()
    except Exception as e:  # RCAEval not installed here
        pytest.skip(str(e))
    rng = np.random.default_rng(5)
    for trial in range(4):
        n, cols = 120, 60
        data: dict[str, object] = {"time": np.arange(n, dtype=float) * 10}
        for j in range(cols):
            v = rng.normal(rng.uniform(-5, 5), rng.uniform(0.01, 3), n)
            if j % 7 == 0:
                v[:] = 3.0  # constant: IQR 0, scale 1
            if j % 11 == 0:
                v[70:] += rng.uniform(1, 20)  # a shift after the injection
            if j % 13 == 0:
                v[rng.integers(0, n, 10)] = np.nan  # gaps, filled as baro_rank fills them
            data[f"e{j % 9}_m.{j}"] = v
        df = pd.DataFrame(data)
        assert baro_rank_vectorised(df, 700.0 + trial) == external.baro_rank(df, 700.0 + trial)
