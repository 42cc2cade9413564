"""The broken-code-path signal (multimodal.path_*) on hand-made logs and traces."""

from __future__ import annotations

import pandas as pd
import pytest

from sightglass.rca.external.multimodal import (
    SpanTable,
    broken_spans,
    path_profile,
    path_rates,
    path_scores,
)


def _log(span: str, pod: str, template: str) -> dict[str, object]:
    return {"TraceID": "t" * 16, "SpanID": span, "PodName": pod, "TimeUnixNano": 0,
            "Log": f'{{"log":"10:00:00.000 {template} TraceID: x SpanID: {span} [m]"}}'}


def _requests(n: int, *, callee_breaks: bool = False, prefix: str = "r") -> tuple[pd.DataFrame, pd.DataFrame]:
    """n requests: front (caller) logs A, calls back (callee) which logs S then E; front then logs B.

    With ``callee_breaks`` the callee stops after S and throws; the caller then logs an error instead
    of B (its path changes only because its callee broke)."""
    spans, logs = [], []
    for i in range(n):
        f, c = f"{prefix}f{i}", f"{prefix}c{i}"
        spans += [
            {"TraceID": f"{prefix}{i}", "SpanID": f, "ParentID": "root", "PodName": "front-5d9f8b7c6d-abcde",
             "OperationName": "GET /page"},
            {"TraceID": f"{prefix}{i}", "SpanID": c, "ParentID": f, "PodName": "back-6c8d7f5b4a-fghij",
             "OperationName": "BackController.get"},
        ]
        logs += [_log(f, "front-5d9f8b7c6d-abcde", "INFO f.Front#10"), _log(c, "back-6c8d7f5b4a-fghij", "INFO b.Back#20")]
        if callee_breaks:
            logs.append(_log(f, "front-5d9f8b7c6d-abcde", "ERROR f.Front#99"))
        else:
            logs += [_log(c, "back-6c8d7f5b4a-fghij", "INFO b.Back#30"), _log(f, "front-5d9f8b7c6d-abcde", "INFO f.Front#11")]
    return pd.DataFrame(logs), pd.DataFrame(spans)


def test_profile_learns_steady_events_per_span_kind() -> None:
    ref = SpanTable.build(*_requests(6))
    prof = path_profile(ref)
    back = prof["back|BackController.get|GET /page"]
    assert back.spans == 6 and back.steady == {"INFO b.Back#20": 1, "INFO b.Back#30": 1}
    front = prof["front|GET /page|ROOT"]
    assert front.steady["SPAN BackController.get"] == 1 and front.steady["INFO f.Front#11"] == 1


def test_the_deepest_broken_span_gets_the_vote() -> None:
    ref = SpanTable.build(*_requests(6))
    # 4 broken requests beside 4 normal ones
    logs = pd.concat([_requests(4, callee_breaks=True)[0], _requests(4, prefix="n")[0]], ignore_index=True)
    traces = pd.concat([_requests(4, callee_breaks=True)[1], _requests(4, prefix="n")[1]], ignore_index=True)
    win = SpanTable.build(logs, traces)
    prof = path_profile(ref)
    bad = broken_spans(win, prof)
    # both the callee (missing Back#30) and the caller (missing Front#11, new ERROR) left their path...
    assert {win.service[s] for s in bad} == {"front", "back"}
    assert any("missing INFO b.Back#30" in w for w in bad["rc0"])
    assert "new ERROR f.Front#99" in bad["rf0"]
    # ...but the caller only follows its callee: the callee gets every vote
    rates = path_rates(win, prof, prior_spans=0)
    assert rates == {"front": 0.0, "back": 0.5}
    scores = path_scores(rates, {"back": 0.1})
    assert scores["front"] == 0.0 and scores["back"] == pytest.approx(3.7136, abs=1e-3)  # log1p(40 %)


def test_normal_traffic_breaks_nothing_and_rare_kinds_are_not_judged() -> None:
    ref = SpanTable.build(*_requests(6))
    win = SpanTable.build(*_requests(5, prefix="w"))
    assert broken_spans(win, path_profile(ref)) == {}
    # two reference spans are too few to learn a kind from: nothing is judged
    few = SpanTable.build(*_requests(2))
    assert broken_spans(SpanTable.build(*_requests(3, callee_breaks=True)), path_profile(few)) == {}


def test_half_valid_input() -> None:
    logs, traces = _requests(4)
    assert SpanTable.build(logs, traces.iloc[0:0]).span_ids == []  # no traces: no spans
    no_ids = SpanTable.build(logs.drop(columns=["SpanID"]), traces)  # logs without span ids: spans only
    assert no_ids.events["rf0"] == {"SPAN BackController.get": 1}
    garbage = logs.assign(Log="not a log line", SpanID="nowhere")  # lines that match no span are ignored
    assert SpanTable.build(garbage, traces).events == {"rf0": {"SPAN BackController.get": 1},
                                                       "rf1": {"SPAN BackController.get": 1},
                                                       "rf2": {"SPAN BackController.get": 1},
                                                       "rf3": {"SPAN BackController.get": 1}}
    dup = pd.concat([traces, traces], ignore_index=True)  # a span listed twice counts once
    assert len(SpanTable.build(logs, dup).span_ids) == 8
    assert path_rates(SpanTable.build(logs.iloc[0:0], traces.iloc[0:0]), {}) == {}
