"""Run Sightglass and BARO over external benchmark cases and score the rankings (AC@k, Avg@5)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sightglass.rca.external import nezha, rcaeval
from sightglass.rca.external.baro import BaroUnavailable, baro_rank, load_baro
from sightglass.rca.external.cases import Case, CaseError
from sightglass.rca.external.scoring import rank_services

FORMATS = ("rcaeval", "nezha")
Progress = Callable[[int, int], None]


def _sightglass(case: Case) -> list[str]:
    return rank_services(case, edges=case.extras.get("edges", ()))


def _baro_input(case: Case, fmt: str) -> pd.DataFrame:
    """BARO's input. For Nezha, the same preparation as the untuned run in its PROVENANCE.md:
    client-side latency dropped, and columns more than 20 % empty dropped."""
    frame = case.frame
    if fmt == "nezha":
        frame = frame[[c for c in frame.columns if "Client" not in c]]
        frame = frame.loc[:, frame.isna().mean() <= 0.2]
    return frame


def _timed(fn: Callable[[], list[str]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    ranking = fn()
    return {"ranking": ranking, "seconds": round(time.perf_counter() - t0, 6)}


def _extra_methods(case: Case, fmt: str) -> dict[str, Callable[[], list[str]]]:
    if fmt == "nezha" and case.system == "TT":
        from sightglass.rca.external.multimodal import rank_with_logs_traces

        return {"sightglass+logs+traces": lambda: rank_with_logs_traces(case)}
    return {}


def evaluate_cases(
    paths: list[str], fmt: str, progress: Progress | None = None, *, with_baro: bool = True,
    only: str | None = None,
) -> list[dict[str, Any]]:
    """Rank every case under ``paths`` with Sightglass and BARO.

    One dict per case: ``case``, ``system``, ``fault``, ``truth``, ``candidates`` and ``methods``
    (``{name: {"ranking": [...], "seconds": float}}``). A case that cannot be read comes back with an
    ``error`` message and empty ``methods``; the others still run. When RCAEval is not installed the
    ``baro`` entry is absent and ``unavailable["baro"]`` says why (also with ``with_baro=False``).
    ``only`` (a regular expression) keeps the cases whose id it matches anywhere (``re.search``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    planner = rcaeval.plan_cases if fmt == "rcaeval" else nezha.plan_cases
    plan = planner([Path(p) for p in paths])
    if only is not None:
        try:
            pattern = re.compile(only)
        except re.error as exc:
            raise ValueError(f"--cases {only!r} is not a regular expression: {exc}") from exc
        plan = [p for p in plan if isinstance(p, CaseError) or pattern.search(p[0])]
    baro_error: str | None = None if with_baro else "BARO skipped (with_baro=False)"
    baro_checked = not with_baro
    results: list[dict[str, Any]] = []
    total = len(plan)
    for i, item in enumerate(plan):
        if isinstance(item, CaseError):
            results.append(_error_row(str(item).split(":", 1)[0], str(item)))
        else:
            name, load = item
            try:
                case = load()
            except CaseError as exc:
                results.append(_error_row(name, str(exc)))
            else:
                if not baro_checked:  # import RCAEval (seconds) only once a case has loaded
                    baro_checked = True
                    try:
                        load_baro()
                    except BaroUnavailable as exc:
                        baro_error = str(exc)
                results.append(evaluate_one(case, fmt, baro_error))
        if progress is not None:
            progress(i + 1, total)
    return results


def _error_row(name: str, message: str) -> dict[str, Any]:
    return {"case": name, "system": "", "fault": "", "truth": "", "candidates": 0, "methods": {}, "error": message}


def evaluate_one(case: Case, fmt: str, baro_error: str | None) -> dict[str, Any]:
    """Rank one loaded case with every method; ``baro_error`` (why BARO cannot run) skips BARO."""
    methods: dict[str, dict[str, Any]] = {"sightglass": _timed(lambda: _sightglass(case))}
    for name, fn in _extra_methods(case, fmt).items():
        methods[name] = _timed(fn)
    row: dict[str, Any] = {
        "case": case.case,
        "system": case.system,
        "fault": case.fault,
        "truth": case.truth,
        "candidates": len(case.services),
        "methods": methods,
    }
    if baro_error is None:
        try:
            frame = _baro_input(case, fmt)
            methods["baro"] = _timed(lambda: baro_rank(frame, case.inject_time))
            if case.fault_window_s is not None:  # also on the fault window alone, as Sightglass sees it
                short = frame[frame["time"] <= case.inject_time + case.fault_window_s]
                methods["baro-window"] = _timed(lambda: baro_rank(short, case.inject_time))
        except ValueError as exc:
            row.setdefault("unavailable", {})["baro"] = f"BARO could not rank this case: {exc}"
    else:
        row["unavailable"] = {"baro": baro_error}
    return row


def rank_of(truth: str, ranking: Sequence[str]) -> int | None:
    """1-based position of ``truth`` in ``ranking``, or None when absent."""
    try:
        return list(ranking).index(truth) + 1
    except ValueError:
        return None


def accuracy(ranks: Iterable[int | None], k: int) -> float:
    """AC@k: the share of cases whose truth is within the top k (absent counts as a miss)."""
    rs = list(ranks)
    return sum(1 for r in rs if r is not None and r <= k) / len(rs) if rs else float("nan")


def avg_at(ranks: Iterable[int | None], k: int = 5) -> float:
    """Avg@k = mean of AC@1..AC@k (RCAEval's definition)."""
    rs = list(ranks)
    return sum(accuracy(rs, j) for j in range(1, k + 1)) / k


def chance(candidates: Iterable[int], k: int) -> float:
    cs = [c for c in candidates if c > 0]
    return sum(min(k, c) / c for c in cs) / len(cs) if cs else float("nan")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per system and per method: cases, AC@1, AC@3, Avg@5, mean seconds; plus the chance level."""
    ok = [r for r in rows if not r.get("error")]
    out: list[dict[str, Any]] = []
    for system in sorted({r["system"] for r in ok}):
        sub = [r for r in ok if r["system"] == system]
        names = sorted({m for r in sub for m in r["methods"]}, key=lambda m: (m != "sightglass", m))
        for m in names:
            have = [r for r in sub if m in r["methods"]]
            ranks = [rank_of(r["truth"], r["methods"][m]["ranking"]) for r in have]
            secs = [r["methods"][m]["seconds"] for r in have]
            out.append({"system": system, "method": m, "cases": len(have), "ac1": accuracy(ranks, 1),
                        "ac3": accuracy(ranks, 3), "avg5": avg_at(ranks), "mean_s": sum(secs) / len(secs)})
        cands = [r["candidates"] for r in sub]
        out.append({"system": system, "method": "chance", "cases": len(sub), "ac1": chance(cands, 1),
                    "ac3": chance(cands, 3), "avg5": sum(chance(cands, k) for k in range(1, 6)) / 5, "mean_s": 0.0})
    return out
