"""A few real Nezha cases from ../shared/data/rca/nezha (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sightglass.rca.external import baro_available
from sightglass.rca.external.evaluate import evaluate_one
from sightglass.rca.external.nezha import find_root, load_day_metrics, plan_cases

NEZHA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rca" / "nezha"

pytestmark = pytest.mark.skipif(
    not (NEZHA / "cases.csv").is_file(), reason=f"Nezha dataset not found at {NEZHA} (shared data absent)"
)


def test_index_and_timestamp_traps() -> None:
    plan = plan_cases([NEZHA])
    assert len(plan) == 101
    # a day folder selects that day only
    assert len(plan_cases([NEZHA / "rca_data" / "2023-01-30"])) == 17
    assert find_root(NEZHA / "rca_data" / "2023-01-30") == NEZHA
    # the adservice pod's TimeStamp column is 200 000 000 s off; the Time string is used
    day = load_day_metrics(str(NEZHA / "rca_data" / "2022-08-22" / "metric"))
    t = pd.to_datetime(day["time"], unit="s", utc=True)
    assert t.min() >= pd.Timestamp("2022-08-22", tz="UTC") and t.max() < pd.Timestamp("2022-08-23", tz="UTC")
    assert day["adservice_CpuUsageRate(%)"].notna().mean() > 0.9


def test_tt_case_uses_the_inject_time_string() -> None:
    first = next(item for item in plan_cases([NEZHA / "rca_data" / "2023-01-29"]) if not isinstance(item, Exception))
    case = first[1]()
    # 2023-01-29 08:43:04 UTC; the published inject_timestamp (1674953044) is 8 h early
    assert case.inject_time == pd.Timestamp("2023-01-29 08:43:04", tz="UTC").timestamp() == 1674981784
    assert case.truth == "ts-contacts-service"
    assert len(case.services) == 46


def test_a_few_cases_end_to_end() -> None:
    plan = [p for p in plan_cases([NEZHA / "rca_data" / "2022-08-22"]) if not isinstance(p, Exception)]
    picked = [load() for name, load in plan if name.endswith(("_06", "_07"))]
    ob = [evaluate_one(case, "nezha", None if baro_available() else "RCAEval missing") for case in picked]
    assert len(ob) == 2
    for r in ob:
        assert r["system"] == "OB" and r["candidates"] == 10 and r["fault"] == "cpu_contention"
        assert sorted(r["methods"]["sightglass"]["ranking"]) == sorted(picked[0].services)
        assert "sightglass+logs+traces" not in r["methods"]  # OB has no fault-window logs/traces here
        if baro_available():
            assert len(r["methods"]["baro"]["ranking"]) == 10
    # cpu contention stands out in the metrics: both are found first
    assert [r["methods"]["sightglass"]["ranking"][0] for r in ob] == [r["truth"] for r in ob]


def test_one_tt_case_with_logs_and_traces() -> None:
    plan = [p for p in plan_cases([NEZHA / "rca_data" / "2023-01-30"]) if not isinstance(p, Exception)]
    case = plan[4][1]()  # a network delay: the call-delay signal from the traces finds it
    assert case.fault == "network_delay"
    r = evaluate_one(case, "nezha", "skipped in this test")
    ranking = r["methods"]["sightglass+logs+traces"]["ranking"]
    assert sorted(ranking) == sorted(case.services)
    assert ranking[0] == case.truth
    assert r["unavailable"] == {"baro": "skipped in this test"}


def test_one_tt_code_fault_through_broken_paths() -> None:
    from sightglass.rca.external.multimodal import multimodal_scores, rank_with_logs_traces

    plan = {name: load for name, load in
            (p for p in plan_cases([NEZHA / "rca_data" / "2023-01-29"]) if not isinstance(p, Exception))}
    case = plan["nezha_tt_2023-01-29_13"]()  # an exception in ts-travel-service
    assert case.fault == "exception" and case.truth == "ts-travel-service"
    parts = multimodal_scores(case)
    paths = {svc: v["paths"] for svc, v in parts.items()}
    assert max(paths, key=paths.__getitem__) == case.truth  # its spans stop where the exception is thrown
    assert rank_with_logs_traces(case)[0] == case.truth
