"""``sightglass eval rca``: accuracy of the ranked causes against ground truth, next to BARO and chance.

Per case the evaluation keeps the rank of the first cause matching the truth (``None``: not in the
top 5), the number of candidates, the seconds to answer; then aggregates per fault class and
overall:

- ``AC@k``: share of cases whose truth is among the first ``k`` causes;
- ``Avg@5``: mean of AC@1..AC@5;
- chance: the expected AC@k of a uniformly random ranking of the same candidates, ``min(k, n) / n``
  when the truth is one of the ``n`` candidates (0 when it is not);
- time to answer: p50 and p95 of the analysis seconds (loading a case into a store is not counted).

A cause matches the simulator's truth when its kind equals ``truth.kind`` and its labels include every
``truth.match`` pair; for the public benchmarks (``--format rcaeval|nezha``) a ranking item matches when
it equals the truth's service name.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sightglass.rca.cases import Case, load_case_store, read_case

KS = (1, 2, 3, 4, 5)


@dataclass(slots=True)
class CaseScore:
    """One method's answer on one case."""

    case: str
    fault: str
    method: str
    rank: int | None  # 1-based rank of the truth, None when not in the ranking
    candidates: int
    truth_in_candidates: bool
    seconds: float
    top: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "fault": self.fault,
            "method": self.method,
            "rank": self.rank,
            "candidates": self.candidates,
            "truth_in_candidates": self.truth_in_candidates,
            "seconds": round(self.seconds, 4),
            "top": self.top,
            "error": self.error,
        }


def matches(kind: str, labels: Mapping[str, str], truth: Mapping[str, Any]) -> bool:
    """A ranked cause matches when its kind is the truth's and it has every truth label."""
    if kind != truth.get("kind"):
        return False
    return all(labels.get(k) == str(v) for k, v in (truth.get("match") or {}).items())


def chance_at(k: int, n: int, present: bool) -> float:
    """Expected AC@k of a uniformly random ranking of ``n`` candidates holding the truth once."""
    if not present or n <= 0:
        return 0.0
    return min(k, n) / n


def _percentile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    i = q * (len(s) - 1)
    lo, hi = math.floor(i), math.ceil(i)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def aggregate(scores: Sequence[CaseScore]) -> dict[str, Any]:
    """AC@k, Avg@5, chance and time, for the cases given (one method)."""
    n = len(scores)
    out: dict[str, Any] = {"cases": n}
    if n == 0:
        return out
    for k in KS:
        out[f"AC@{k}"] = sum(1 for s in scores if s.rank is not None and s.rank <= k) / n
    out["Avg@5"] = sum(out[f"AC@{k}"] for k in KS) / len(KS)
    for k in (1, 3):
        out[f"chance_AC@{k}"] = sum(chance_at(k, s.candidates, s.truth_in_candidates) for s in scores) / n
    out["chance_Avg@5"] = sum(
        sum(chance_at(k, s.candidates, s.truth_in_candidates) for k in KS) / len(KS) for s in scores
    ) / n
    secs = [s.seconds for s in scores if s.error is None]
    out["seconds_p50"] = _percentile(secs, 0.5)
    out["seconds_p95"] = _percentile(secs, 0.95)
    out["errors"] = sum(1 for s in scores if s.error is not None)
    return out


def summarize(scores: Sequence[CaseScore]) -> dict[str, Any]:
    """Per method: overall and per fault class."""
    methods = list(dict.fromkeys(s.method for s in scores))
    out: dict[str, Any] = {}
    for m in methods:
        ms = [s for s in scores if s.method == m]
        faults = sorted({s.fault for s in ms})
        out[m] = {
            "overall": aggregate(ms),
            "per_fault": {f: aggregate([s for s in ms if s.fault == f]) for f in faults},
        }
    return out


# ---------------------------------------------------------------------- the simulator format
def evaluate_sim_case(case: Case, *, with_baro: bool = True, workdir: str | None = None) -> list[CaseScore]:
    """Load one case into a temporary store and score Sightglass (and BARO) on it."""
    with tempfile.TemporaryDirectory(prefix="sightglass-rca-", dir=workdir) as tmp:
        store = load_case_store(case, Path(tmp) / "data")
        try:
            return score_store_case(
                store, case.name, case.symptom, case.at_ms, case.truth, case.inventory,
                inject_ms=_inject_ms(case), with_baro=with_baro,
            )
        finally:
            store.close()


def score_store_case(
    store: Any,
    name: str,
    symptom: str,
    at_ms: int,
    truth: Mapping[str, Any],
    inventory: Mapping[str, Any] | None,
    *,
    inject_ms: int,
    with_baro: bool = True,
) -> list[CaseScore]:
    """Score Sightglass (and BARO, given the true injection time) on one case already in a store."""
    from sightglass.rca.engine import analyze, entity_labels
    from sightglass.topology.infer import TopologyBuilder

    fault = str(truth.get("fault", "unknown"))
    out: list[CaseScore] = []
    builder = TopologyBuilder()
    if inventory:
        builder.add_inventory(dict(inventory))
    topo = builder.update(store)
    t0 = time.perf_counter()
    try:
        res = analyze(store, symptom, at_ms, builder=builder, top=5)
    except Exception as e:  # one case failing must not stop the suite; it counts as a miss
        out.append(CaseScore(name, fault, "sightglass", None, 0, False, time.perf_counter() - t0, error=f"{type(e).__name__}: {e}"))
        return out
    secs = time.perf_counter() - t0
    rank = next((i + 1 for i, c in enumerate(res.causes) if matches(c.kind, c.labels, truth)), None)
    truth_ids = [
        eid for eid in res.candidate_ids
        if topo.entity(eid) is not None and matches(topo.entity(eid).kind, entity_labels(topo, eid), truth)  # type: ignore[union-attr]
    ]
    out.append(CaseScore(name, fault, "sightglass", rank, len(res.candidate_ids), bool(truth_ids), secs, [c.entity_id for c in res.causes]))
    if with_baro:
        out.append(_baro_case(name, fault, res, topo, truth_ids, inject_ms))
    return out


def _inject_ms(case: Case) -> int:
    """The fault's start from the case's ``truth.jsonl`` (BARO is given it, as RCAEval does)."""
    f = case.path / "truth.jsonl"
    if f.is_file():
        try:
            first = json.loads(f.read_text().splitlines()[0])
            return int(first["start_ms"])
        except (ValueError, KeyError, IndexError):
            pass
    return case.at_ms - 300_000


def _baro_case(name: str, fault: str, res: Any, topo: Any, truth_ids: list[str], inject_ms: int) -> CaseScore:
    """BARO on the same signals Sightglass read (the symptom's neighbourhood)."""
    t0 = time.perf_counter()
    try:
        import sightglass.rca.external.baro  # noqa: F401  (RCAEval's BARO behind it)
    except ImportError as e:
        return CaseScore(name, fault, "baro", None, 0, False, 0.0, error=f"BARO unavailable: {e}")
    frame = res.frame
    if frame is None or not frame.values.shape[1]:
        return CaseScore(name, fault, "baro", None, 0, False, 0.0, error="BARO: no signals to rank")
    import pandas as pd

    alias: dict[str, str] = {}
    back: dict[str, str] = {}
    cols: dict[str, Any] = {"time": frame.ts_ms / 1000.0}
    fold = {}
    for eid in res.candidate_ids:
        fold[eid] = eid
    for j, (ent, metric) in enumerate(zip(frame.entities, frame.metrics, strict=True)):
        if ent is None:
            continue
        if ent.startswith("model:"):
            svc = topo.related(ent, "model-served-by-service")
            ent = svc[0] if len(svc) == 1 else ent
        a = alias.setdefault(ent, f"e{len(alias)}")
        back[a] = ent
        cols[f"{a}_{metric.replace('_', '.')}{j}"] = frame.values[:, j]
    df = pd.DataFrame(cols)
    try:
        ranked = baro_rank_vectorised(df, inject_ms / 1000.0)
    except Exception as e:  # BaroUnavailable, or BARO failing on this frame
        return CaseScore(name, fault, "baro", None, 0, False, time.perf_counter() - t0, error=f"BARO unavailable: {e}" if "nstall" in str(e) else f"BARO failed: {e}")
    ents = [back.get(a, a) for a in ranked]
    truth = set(truth_ids)
    rank = next((i + 1 for i, e in enumerate(ents[:5]) if e in truth), None)
    return CaseScore(name, fault, "baro", rank, len(back), bool(truth & set(back.values())), time.perf_counter() - t0, ents[:5])


def baro_rank_vectorised(df: Any, inject_time: float) -> list[str]:
    """RCAEval's BARO (``RCAEval.e2e.baro.baro``, as ``sightglass.rca.external.baro_rank`` runs it) with
    its per-column loop done on the whole matrix at once: the same numbers in the same order
    (sklearn's ``RobustScaler``: median centre, 25-75 % IQR scale, a scale under 10 eps set to 1; the
    score is the largest scaled value after the injection; a stable sort, best first). On a
    few-thousand-column neighbourhood the loop costs seconds per case; tests/rca compare the two."""
    import pandas as pd

    from sightglass.rca.external.baro import load_baro
    from sightglass.rca.external.cases import split_column

    if "time" not in df.columns:
        raise ValueError("baro_rank: the frame needs a 'time' column (unix seconds)")
    if not math.isfinite(inject_time):
        raise ValueError(f"baro_rank: inject_time must be a finite number, got {inject_time!r}")
    load_baro()  # RCAEval must be installed: BARO is its method, this only runs it faster
    data = df.apply(pd.to_numeric, errors="coerce")
    data = data.loc[:, data.notna().any()]
    data = data[data["time"].notna()].sort_values("time").reset_index(drop=True)
    data = data.ffill().bfill()
    t = data["time"].to_numpy()
    before = int((t < inject_time).sum())
    if before == 0 or before == len(data):
        raise ValueError("baro_rank: need samples both before and after inject_time")
    x = data.to_numpy(dtype=np.float64)
    normal, anomal = x[t < inject_time], x[t >= inject_time]
    centre = np.nanmedian(normal, axis=0)
    q25, q75 = np.nanpercentile(normal, [25.0, 75.0], axis=0)
    scale = q75 - q25
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    score = ((anomal - centre) / scale).max(axis=0)
    ranks = sorted(zip(data.columns, score.tolist(), strict=True), key=lambda r: r[1], reverse=True)
    ranked: dict[str, None] = {}
    for col, _ in ranks:
        if col == "time":
            continue
        ranked.setdefault(split_column(str(col))[0], None)
    return list(ranked)


def find_cases(paths: Sequence[str]) -> list[Path]:
    """Case folders under each path (the path itself when it holds case.json)."""
    out: list[Path] = []
    for p in paths:
        root = Path(p)
        if (root / "case.json").is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(sorted(d for d in root.iterdir() if (d / "case.json").is_file()))
        else:
            raise FileNotFoundError(f"{p}: no such directory")
    return out


def evaluate_sim(
    paths: Sequence[str],
    *,
    with_baro: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[CaseScore]:
    out: list[CaseScore] = []
    for d in find_cases(paths):
        case = read_case(d)
        out.extend(evaluate_sim_case(case, with_baro=with_baro))
        if progress:
            progress(case.name)
    return out


# ---------------------------------------------------------------------- public benchmarks
def scores_from_external(rows: Sequence[Mapping[str, Any]]) -> list[CaseScore]:
    """Turn ``sightglass.rca.external.evaluate_cases`` rows into scores (item == truth).

    Each benchmark system (Nezha's Online Boutique and Train Ticket) is its own method label, so the
    summary is per system, never pooled only. A case that could not be read counts as a miss of every
    method seen on the other cases, with its error, rather than vanishing from the denominator.
    """
    out: list[CaseScore] = []
    seen_methods = sorted({str(m) for r in rows for m in (r.get("methods") or {})}) or ["sightglass"]
    for r in rows:
        truth = str(r.get("truth", ""))
        n = int(r.get("candidates") or 0)
        system = str(r.get("system") or "")
        suffix = f" [{system}]" if system else ""
        methods = r.get("methods") or {}
        if r.get("error") and not methods:
            for method in seen_methods:
                out.append(
                    CaseScore(
                        str(r.get("case", "")), str(r.get("fault") or "unreadable"), method + suffix, None,
                        n, False, 0.0, [], str(r["error"]),
                    )
                )
            continue
        for method, m in methods.items():
            ranking = [str(x) for x in (m.get("ranking") or [])]
            rank = next((i + 1 for i, x in enumerate(ranking) if x == truth), None)
            out.append(
                CaseScore(
                    str(r.get("case", "")), str(r.get("fault", "unknown")), str(method) + suffix, rank if rank is not None and rank <= 5 else None,
                    n, bool(n), float(m.get("seconds") or 0.0), ranking[:5], m.get("error"),
                )
            )
    return out
