"""Ranking math and the service-level scorer on small hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sightglass.rca.external import accuracy, avg_at, rank_of
from sightglass.rca.external.cases import Case, split_column
from sightglass.rca.external.evaluate import chance
from sightglass.rca.external.multimodal import MultimodalConfig, fuse
from sightglass.rca.external.nezha import service_of_pod
from sightglass.rca.external.scoring import ScoringConfig, call_scores, metric_family, score_services


def test_rank_and_accuracy() -> None:
    assert rank_of("b", ["a", "b", "c"]) == 2
    assert rank_of("z", ["a", "b"]) is None
    ranks = [1, 2, 3, None, 6]
    assert accuracy(ranks, 1) == pytest.approx(0.2)
    assert accuracy(ranks, 3) == pytest.approx(0.6)
    assert avg_at(ranks, 5) == pytest.approx((0.2 + 0.4 + 0.6 + 0.6 + 0.6) / 5)
    assert math.isnan(accuracy([], 1))
    assert chance([10, 4], 1) == pytest.approx((0.1 + 0.25) / 2)
    assert chance([2], 3) == 1.0


def test_names() -> None:
    assert split_column("ts-order-service_CpuUsageRate(%)") == ("ts-order-service", "CpuUsageRate(%)")
    assert split_column("cartservice_latency_90") == ("cartservice", "latency_90")
    assert service_of_pod("ts-contacts-service-866bd68c97-xcqfx") == "ts-contacts-service"
    assert service_of_pod("frontend-579b9bff58-t2dbm") == "frontend"
    assert service_of_pod("redis") == "redis"
    assert metric_family("PodClientLatencyP90(s)") is None  # measures the callees
    assert metric_family("NodeCpuUsageRate(%)") is None
    assert metric_family("CpuUsageRate(%)") == ("cpu", 1)
    assert metric_family("PodSuccessRate(%)") == ("errors", -1)
    assert metric_family("PodWorkload(Ops)") == ("traffic", 0)


def _case(cols: dict[str, np.ndarray], inject: float, **extras: object) -> Case:
    n = len(next(iter(cols.values())))
    frame = pd.DataFrame({"time": np.arange(n, dtype=float) * 60.0, **cols})
    return Case("c", "S", "f", "?", inject, frame, extras=dict(extras))


def test_scorer_direction_and_evidence() -> None:
    rng = np.random.default_rng(0)
    n, at = 40, 30
    base = {f"{s}_{m}": 1.0 + 0.05 * rng.standard_normal(n) for s in "abc" for m in ("cpu", "PodSuccessRate(%)")}
    base["b_cpu"][at:] -= 0.8  # cpu falling is not a fault signal
    base["c_PodSuccessRate(%)"][at:] -= 0.5  # success falling is
    scores = score_services(_case(base, inject=at * 60.0 - 1))
    assert scores[0].service == "c"
    assert scores[0].families["errors"] > 2.0
    assert scores[0].to_dict()["top_evidence"][0]["column"] == "c_PodSuccessRate(%)"
    b = next(s for s in scores if s.service == "b")
    assert b.families["cpu"] < 0.5


def test_window_limits_the_fault() -> None:
    n, at = 40, 20
    cols = {"a_cpu": np.ones(n), "b_cpu": np.ones(n)}
    cols["a_cpu"][at + 10:] = 9.0  # long after the fault window
    cols["b_cpu"][at:at + 3] = 3.0
    case = _case(cols, inject=at * 60.0 - 1)
    case.fault_window_s = 240
    assert score_services(case)[0].service == "b"
    case.fault_window_s = None
    assert score_services(case)[0].service == "a"


def test_call_scores_blame_the_callee_all_callers_agree_on() -> None:
    rng = np.random.default_rng(1)
    n, at = 40, 30
    e = {k: 0.01 + 0.001 * rng.standard_normal(n) for k in ("fe->cart", "co->cart", "fe->co", "co->pay")}
    e["fe->cart"][at:] = 0.2
    e["co->cart"][at:] = 0.2
    e["fe->co"][at:] = 0.02  # the caller sees a bit of it
    frame = pd.DataFrame({"time": np.arange(n) * 60.0, **e})
    s = call_scores(frame, at * 60.0 - 1, math.inf, ScoringConfig())
    assert max(s, key=lambda k: s[k]) == "cart"
    assert s["pay"] < 1.0


def test_fuse_takes_the_most_decisive_signal() -> None:
    parts = {f"s{i}": {"cpu": 0.3, "delay": 0.0, "errors": 0.0} for i in range(10)}
    parts["s3"]["delay"] = 6.0
    parts["s5"]["cpu"] = 0.9  # a small cpu bump among peers
    fused = fuse(parts, MultimodalConfig())
    assert max(fused, key=lambda k: fused[k]) == "s3"


def test_break_scores_find_a_code_path_that_now_ends_early() -> None:
    from sightglass.rca.external.multimodal import break_scores

    def events(svc: str, counts: dict[str, int]) -> pd.DataFrame:
        rows = [(svc, e) for e, n in counts.items() for _ in range(n)]
        return pd.DataFrame(rows, columns=["service", "event"])

    ref = pd.concat([events("a", {"start": 20, "end": 20}), events("b", {"x": 10, "y": 10})])
    win = pd.concat([events("a", {"start": 30, "end": 2}), events("b", {"x": 25, "y": 24})])
    s = break_scores(ref, win)
    assert s["a"] == pytest.approx(math.log(30.5 / 2.5))
    assert s["b"] < 0.1
