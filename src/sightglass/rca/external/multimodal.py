"""Train Ticket's logs and traces in Nezha, as extra evidence beside the metrics.

Baseline: the fault-free reference minute that Nezha itself uses (``construct_data/<day>/``).
Window: the minute files from the injection minute to two minutes after it (Nezha analyses
inject + 2 min). Per service, these signals:

- **cpu** (metrics): the cpu family of :mod:`.scoring` (the metric signal that holds up on TT,
  whose latency series are a third empty).
- **call delay** (traces): for every cross-service call, the time the caller's span waits beyond the
  callee's span (network and queueing on that edge), median shift against the reference. A delayed
  service slows the edges it serves; the callee of the anomalous edges is blamed, unless its own
  outgoing calls are slower still (then the delay is further down).
- **paths** (logs and spans together): per span *kind* (service, operation, parent operation), what
  every reference span does (steady log lines and child calls, lines that follow others); a window
  span that stops short of them, or shows an error event its kind never had, is *broken*; the deepest
  broken span of a chain gets the vote (:func:`path_rates`), less the service's usual share that day
  (:func:`path_background`). Weighted 2 in the fusion.
- reported, not fused: ``errors`` (first new WARN/ERROR template per trace), ``breaks`` (one-for-one
  line counts per service), ``self`` (p90 span self time), ``mix`` (template-mix distance),
  ``metrics``.

Fusion (:func:`fuse`): each signal becomes a peer z-score across the case's services, times its
weight; a service's score is its most decisive signal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sightglass.rca.external.cases import Case, CaseError
from sightglass.rca.external.nezha import service_of_pod
from sightglass.rca.external.scoring import ScoringConfig, score_services

_TEMPLATE = re.compile(r"\b(INFO|WARN|ERROR|DEBUG|TRACE)\s+(\S+#\d+)")
_BAD_LEVELS = ("WARN", "ERROR")
REFERENCE_MINUTES = 1  # construct_data holds one fault-free minute per day
WINDOW_MINUTES = 3  # inject minute, +1, +2


@dataclass(frozen=True, slots=True)
class MultimodalConfig:
    """Fusion settings, chosen on the development day (2023-01-29) and reported on 2023-01-30."""

    signals: tuple[str, ...] = ("cpu", "delay", "paths")  # fused; "errors", "breaks", "self", "mix", "metrics": reported
    peer_floor: float = 0.5  # smallest peer scale, in log1p units
    peer_rel_floor: float = 0.1  # and as a fraction of the signal's top value in the case
    min_spans: int = 5
    min_ref_calls: int = 2  # reference calls on an edge needed to judge its delay
    min_path_spans: int = 3  # reference spans of a kind needed to learn its code path
    weights: tuple[tuple[str, float], ...] = (("paths", 2.0),)  # per-signal weight on its peer z (default 1)
    path_prior_spans: float = 10.0  # spans added to a service's count in the broken-span share (3 min)
    path_background: str = "day"  # "day": median of the day's other minutes; "before": earlier ones only; "none"
    metrics: ScoringConfig = field(default_factory=ScoringConfig)


def _read_minutes(folder: Path, kind: str, minutes: list[str]) -> pd.DataFrame:
    frames = []
    for m in minutes:
        path = folder / kind / f"{m}_{kind}.csv.gz"
        if path.is_file():
            frames.append(pd.read_csv(path, on_bad_lines="skip"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@lru_cache(maxsize=8)
def _reference(day_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    construct = Path(day_dir).parents[1] / "construct_data" / Path(day_dir).name
    logs = _read_minutes_all(construct / "log")
    traces = _read_minutes_all(construct / "trace")
    if logs.empty or traces.empty:
        raise CaseError(f"{construct}: no fault-free reference logs/traces")
    return logs, traces


@lru_cache(maxsize=8)
def _span_table(day_dir: str) -> SpanTable:
    logs, traces = _reference(day_dir)
    return SpanTable.build(logs, traces)


def _read_minutes_all(folder: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p, on_bad_lines="skip") for p in sorted(folder.glob("*.csv.gz"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def window_minutes(inject_time: float) -> list[str]:
    start = int(inject_time // 60) * 60
    return [pd.Timestamp(start + 60 * i, unit="s", tz="UTC").strftime("%H_%M") for i in range(WINDOW_MINUTES)]


def _spans(traces: pd.DataFrame) -> pd.DataFrame:
    t = traces[["SpanID", "ParentID", "PodName", "Duration"]].copy()
    t["service"] = t["PodName"].astype(str).map(service_of_pod)
    t["Duration"] = pd.to_numeric(t["Duration"], errors="coerce")
    return t.dropna(subset=["Duration"])


def _edges_and_self(traces: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cross-service call gaps (caller span minus callee span, µs) and per-span self time."""
    s = _spans(traces)
    child = s.merge(s, left_on="ParentID", right_on="SpanID", suffixes=("", "_p"))
    kids = child.groupby("ParentID")["Duration"].sum()
    s = s.assign(self_us=(s["Duration"] - s["SpanID"].map(kids).fillna(0.0)).clip(lower=0.0))
    cross = child[child["service"] != child["service_p"]]
    gaps = pd.DataFrame({
        "caller": cross["service_p"], "callee": cross["service"],
        "gap_us": (cross["Duration_p"] - cross["Duration"]).clip(lower=0.0),
    })
    return gaps, s[["service", "self_us"]]


def _z(base: np.ndarray, window: np.ndarray, q: float = 0.5, min_base: int = 3) -> float:
    if base.size < min_base or window.size < 3:
        return 0.0
    med = float(np.median(base))
    mad = 1.4826 * float(np.median(np.abs(base - med)))
    scale = max(mad, 0.05 * abs(med), 1000.0)  # 1 ms floor: span times are in µs
    return max(0.0, (float(np.quantile(window, q)) - float(np.quantile(base, q))) / scale)


def delay_scores(ref_gaps: pd.DataFrame, win_gaps: pd.DataFrame, min_spans: int, min_ref: int = 3) -> dict[str, float]:
    ref = {k: g["gap_us"].to_numpy() for k, g in ref_gaps.groupby(["caller", "callee"])}
    inbound: dict[str, list[float]] = {}
    outbound: dict[str, float] = {}
    for (caller, callee), g in win_gaps.groupby(["caller", "callee"]):
        base = ref.get((caller, callee))
        if base is None or len(g) < min_spans:
            continue
        v = math.log1p(_z(base, g["gap_us"].to_numpy(), min_base=min_ref))
        inbound.setdefault(str(callee), []).append(v)
        outbound[str(caller)] = max(outbound.get(str(caller), 0.0), v)
    return {c: (sum(v) / len(v)) * (0.0 if outbound.get(c, 0.0) > sum(v) / len(v) else 1.0)
            for c, v in inbound.items()}


def self_scores(ref_self: pd.DataFrame, win_self: pd.DataFrame, min_spans: int) -> dict[str, float]:
    ref = {k: g["self_us"].to_numpy() for k, g in ref_self.groupby("service")}
    out = {}
    for svc, g in win_self.groupby("service"):
        if str(svc) in ref and len(g) >= min_spans:
            out[str(svc)] = math.log1p(_z(ref[str(svc)], g["self_us"].to_numpy(), 0.9))
    return out


def _templates(logs: pd.DataFrame) -> pd.DataFrame:
    text = logs["Log"].astype(str)
    m = text.str.extract(_TEMPLATE)
    level = m[0].fillna("OTHER")
    return pd.DataFrame({
        "service": logs["PodName"].astype(str).map(service_of_pod),
        "level": level,
        "template": level + " " + m[1].fillna(""),
        "trace": logs["TraceID"].astype(str) if "TraceID" in logs else "",
        "t": pd.to_numeric(logs["TimeUnixNano"], errors="coerce") if "TimeUnixNano" in logs else 0.0,
    })


def log_scores(
    ref_logs: pd.DataFrame, win_logs: pd.DataFrame, ref_minutes: float, win_minutes: float
) -> dict[str, tuple[float, float]]:
    """Per service: log1p of the requests per minute in which it logged the first WARN/ERROR line of a
    template the reference never shows (the callers that log after it inherit its error), plus the
    total-variation distance of its template mix (an early return changes which lines follow which).
    """
    ref = _templates(ref_logs)
    win = _templates(win_logs)
    known = set(ref["service"] + "\0" + ref["template"])  # per service: a caller's usual error is not the callee's
    new_bad = win[win["level"].isin(_BAD_LEVELS) & ~(win["service"] + "\0" + win["template"]).isin(known)]
    traced = new_bad[new_bad["trace"].str.len() > 8]
    first = traced.loc[traced.groupby("trace")["t"].idxmin()] if not traced.empty else traced
    untraced = new_bad[new_bad["trace"].str.len() <= 8]
    votes = pd.concat([first["service"], untraced["service"]]).value_counts()
    ref_by = {k: g["template"].value_counts() for k, g in ref.groupby("service")}
    out: dict[str, tuple[float, float]] = {}
    for svc, g in win.groupby("service"):
        c = g["template"].value_counts()
        q = ref_by.get(str(svc), pd.Series(dtype=float))
        keys = c.index.union(q.index)
        p_win = c.reindex(keys, fill_value=0) / max(c.sum(), 1)
        p_ref = q.reindex(keys, fill_value=0) / max(q.sum(), 1)
        tvd = 0.5 * float((p_win - p_ref).abs().sum()) if q.sum() else 0.0
        out[str(svc)] = (math.log1p(float(votes.get(svc, 0)) / win_minutes), tvd)
    return out


def break_scores(ref_events: pd.DataFrame, win_events: pd.DataFrame, min_count: int = 3) -> dict[str, float]:
    """Per service: how far a line that used to follow another, one for one, now stops following it.

    Events are a service's log templates and its span operation names. Pairs (A, B) that occur equally
    often in the reference (within 10 %, at least ``min_count`` times) are steps of one code path; in
    the window, ``log((c_A + ½) / (c_B + ½))`` measures how often the path now ends between them
    (an exception or an early return). The score is the largest such break, zero when none.
    """
    out: dict[str, float] = {}
    ref_by = {k: g["event"].value_counts() for k, g in ref_events.groupby("service")}
    for svc, g in win_events.groupby("service"):
        q = ref_by.get(str(svc))
        if q is None:
            continue
        c = g["event"].value_counts()
        q = q[q >= min_count]
        best = 0.0
        names = list(q.index)
        counts = q.to_numpy(dtype=float)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i == j or abs(counts[i] - counts[j]) > 0.1 * max(counts[i], counts[j]):
                    continue
                ca, cb = float(c.get(a, 0)), float(c.get(b, 0))
                if ca >= min_count:
                    best = max(best, math.log((ca + 0.5) / (cb + 0.5)))
        out[str(svc)] = best
    return out


def _events(logs: pd.DataFrame, traces: pd.DataFrame) -> pd.DataFrame:
    parts = []
    if not logs.empty:
        t = _templates(logs)
        parts.append(pd.DataFrame({"service": t["service"], "event": t["template"]}))
    if not traces.empty:
        parts.append(pd.DataFrame({"service": traces["PodName"].astype(str).map(service_of_pod),
                                   "event": "SPAN " + traces["OperationName"].astype(str)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"service": [], "event": []})


def _is_error_event(event: str) -> bool:
    return event.startswith(_BAD_LEVELS) or (event.startswith("SPAN ") and "error" in event.lower())


@dataclass(slots=True)
class SpanTable:
    """Spans of a set of traces with their kind and the events each span holds.

    A span's *kind* is (service, operation, parent operation): one code path entry. Its *events* are
    the log templates written under its span id and the operation names of its child spans, with
    counts.
    """

    span_ids: list[str]
    parent: dict[str, str]
    service: dict[str, str]
    kind: dict[str, str]
    events: dict[str, dict[str, int]]

    @classmethod
    def build(cls, logs: pd.DataFrame, traces: pd.DataFrame) -> SpanTable:
        if traces.empty:
            return cls([], {}, {}, {}, {})
        t = traces[["SpanID", "ParentID", "PodName", "OperationName"]].astype(str).drop_duplicates("SpanID")
        ids = t["SpanID"].tolist()
        op = dict(zip(ids, t["OperationName"], strict=True))
        parent = dict(zip(ids, t["ParentID"], strict=True))
        service = {i: service_of_pod(p) for i, p in zip(ids, t["PodName"], strict=True)}
        kind = {i: f"{service[i]}|{op[i]}|{op.get(parent[i], 'ROOT')}" for i in ids}
        events: dict[str, dict[str, int]] = {}
        known = set(ids)
        if not logs.empty and "SpanID" in logs:
            tpl = _templates(logs)["template"].to_numpy()
            for sid, e in zip(logs["SpanID"].astype(str).to_numpy(), tpl, strict=True):
                if sid in known:
                    d = events.setdefault(sid, {})
                    d[e] = d.get(e, 0) + 1
        for sid, par in parent.items():
            if par in known:
                d = events.setdefault(par, {})
                e = "SPAN " + op[sid]
                d[e] = d.get(e, 0) + 1
        return cls(ids, parent, service, kind, events)


@dataclass(slots=True)
class _KindProfile:
    spans: int
    steady: dict[str, int]  # event -> the count almost every reference span of this kind has
    follows: list[tuple[str, str]]  # (a, b): b occurs at least as often as a in almost every span with a
    seen: set[str]


def path_profile(ref: SpanTable, min_spans: int = 3, modal: float = 0.9) -> dict[str, _KindProfile]:
    """What a normal span of each kind does, from the fault-free reference (error events excluded:
    an error that stops is a recovery, not a fault)."""
    by_kind: dict[str, list[str]] = {}
    for sid in ref.span_ids:
        by_kind.setdefault(ref.kind[sid], []).append(sid)
    out: dict[str, _KindProfile] = {}
    for k, ids in by_kind.items():
        evs = [ref.events.get(i, {}) for i in ids]
        seen = set().union(*[set(e) for e in evs])
        if len(ids) < min_spans:
            out[k] = _KindProfile(len(ids), {}, [], seen)
            continue
        steady: dict[str, int] = {}
        for e in seen:
            if _is_error_event(e):
                continue
            counts: dict[int, int] = {}
            for d in evs:
                counts[d.get(e, 0)] = counts.get(d.get(e, 0), 0) + 1
            value, freq = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
            if value > 0 and freq >= modal * len(ids):
                steady[e] = value
        loose = sorted(e for e in seen if not _is_error_event(e) and e not in steady)
        follows = []
        for a in loose:
            with_a = [d for d in evs if d.get(a, 0) > 0]
            if len(with_a) < min_spans:
                continue
            for b in loose:
                if b != a and sum(d.get(b, 0) >= d[a] for d in with_a) >= modal * len(with_a):
                    follows.append((a, b))
        out[k] = _KindProfile(len(ids), steady, follows, seen)
    return out


def broken_spans(win: SpanTable, profile: dict[str, _KindProfile], min_spans: int = 3) -> dict[str, list[str]]:
    """Spans whose code path left the reference: a steady event missing, a following event cut off,
    or an error event this kind never showed. Values say why (for the evidence)."""
    bad: dict[str, list[str]] = {}
    for sid in win.span_ids:
        prof = profile.get(win.kind[sid])
        if prof is None or prof.spans < min_spans:
            continue
        mine = win.events.get(sid, {})
        why = [f"missing {e}" for e, v in prof.steady.items() if mine.get(e, 0) < v]
        why += [f"{a} without {b}" for a, b in prof.follows if mine.get(b, 0) < mine.get(a, 0)]
        why += [f"new {e}" for e in mine if _is_error_event(e) and e not in prof.seen]
        if why:
            bad[sid] = why
    return bad


def path_rates(win: SpanTable, profile: dict[str, _KindProfile], min_spans: int = 3,
               prior_spans: float = 10.0) -> dict[str, float]:
    """Per service: the share of its spans whose code path broke *there*.

    A broken span is explained away when one of its descendants, in any service, is broken too: a
    caller whose response changed only follows its callee, so the deepest broken span of a chain
    gets the vote (an exception or early return is where the path ends). ``prior_spans`` shrinks the
    share of services with few spans.
    """
    bad = broken_spans(win, profile, min_spans)
    explained: set[str] = set()
    for sid in bad:
        p, hops = win.parent.get(sid), 0
        while p in win.service and hops < 256:
            if p in bad:
                explained.add(p)
            p, hops = win.parent.get(p), hops + 1
    votes: dict[str, int] = {}
    for sid in bad:
        if sid not in explained:
            votes[win.service[sid]] = votes.get(win.service[sid], 0) + 1
    spans: dict[str, int] = {}
    for svc in win.service.values():
        spans[svc] = spans.get(svc, 0) + 1
    return {svc: votes.get(svc, 0) / (n + prior_spans) for svc, n in spans.items()}


def path_scores(rates: dict[str, float], background: dict[str, float]) -> dict[str, float]:
    """``log1p`` of the percent of broken spans above the service's usual level that day."""
    return {svc: math.log1p(100.0 * max(0.0, r - background.get(svc, 0.0))) for svc, r in rates.items()}


@lru_cache(maxsize=8)
def _day_profile(day_dir: str, min_spans: int) -> dict[str, _KindProfile]:
    return path_profile(_span_table(day_dir), min_spans)


@lru_cache(maxsize=4)
def _day_path_rates(day_dir: str, min_spans: int, prior_spans: float) -> dict[str, dict[str, float]]:
    """Per minute file of the day (``HH_MM``): each service's broken-span share in that minute."""
    profile = _day_profile(day_dir, min_spans)
    folder = Path(day_dir)
    out: dict[str, dict[str, float]] = {}
    for path in sorted((folder / "trace").glob("*_trace.csv.gz")):
        minute = path.name.removesuffix("_trace.csv.gz")
        logs = _read_minutes(folder, "log", [minute])
        traces = _read_minutes(folder, "trace", [minute])
        out[minute] = path_rates(SpanTable.build(logs, traces), profile, min_spans, prior_spans / WINDOW_MINUTES)
    return out


BACKGROUNDS = ("day", "before", "none")


def path_background(day_dir: str, skip: list[str], min_spans: int = 3, prior_spans: float = 10.0,
                    mode: str = "day") -> dict[str, float]:
    """Each service's median broken-span share over the day's other minute files (label-free: every
    minute the day folder holds, less the case's own window ``skip``). It absorbs branches the one
    reference minute never took but the service takes all day. ``mode="before"`` takes only the
    minutes before the window (causal), ``"none"`` no background."""
    if mode not in BACKGROUNDS:
        raise ValueError(f"path background {mode!r}: expected one of {', '.join(BACKGROUNDS)}")
    if mode == "none":
        return {}
    first = min(skip) if skip else ""
    minutes = [r for m, r in _day_path_rates(day_dir, min_spans, prior_spans).items()
               if m not in skip and (mode == "day" or m < first)]
    services = {svc for r in minutes for svc in r}
    return {svc: float(np.median([r.get(svc, 0.0) for r in minutes])) for svc in services} if minutes else {}


def call_graph(traces: pd.DataFrame) -> set[tuple[str, str]]:
    gaps, _ = _edges_and_self(traces)
    return {(str(a), str(b)) for a, b in zip(gaps["caller"], gaps["callee"], strict=True)}


def multimodal_scores(case: Case, cfg: MultimodalConfig | None = None) -> dict[str, dict[str, float]]:
    """Per service: the metric score and each log/trace signal, before weighting."""
    cfg = cfg or MultimodalConfig()
    day_dir = Path(case.extras["day_dir"])
    ref_logs, ref_traces = _reference(str(day_dir))
    minutes = window_minutes(case.inject_time)
    win_logs = _read_minutes(day_dir, "log", minutes)
    win_traces = _read_minutes(day_dir, "trace", minutes)
    if win_logs.empty and win_traces.empty:
        raise CaseError(f"{case.case}: no log or trace files for minutes {', '.join(minutes)} in {day_dir}")
    ref_gaps, ref_self = _edges_and_self(ref_traces)
    win_gaps, win_self = _edges_and_self(win_traces) if not win_traces.empty else (ref_gaps[:0], ref_self[:0])
    graph = {(str(a), str(b)) for a, b in zip(win_gaps["caller"], win_gaps["callee"], strict=True)}
    graph |= {(str(a), str(b)) for a, b in zip(ref_gaps["caller"], ref_gaps["callee"], strict=True)}
    scored = score_services(case, cfg.metrics, edges=graph)
    metric = {s.service: s.score for s in scored}
    cpu = {s.service: s.families.get("cpu", 0.0) for s in scored}
    delay = delay_scores(ref_gaps, win_gaps, cfg.min_spans, cfg.min_ref_calls)
    selft = self_scores(ref_self, win_self, cfg.min_spans)
    breaks = break_scores(_events(ref_logs, ref_traces), _events(win_logs, win_traces))
    logs = log_scores(ref_logs, win_logs, REFERENCE_MINUTES, len(minutes)) if not win_logs.empty else {}
    profile = _day_profile(str(day_dir), cfg.min_path_spans)
    rates = path_rates(SpanTable.build(win_logs, win_traces), profile, cfg.min_path_spans, cfg.path_prior_spans)
    paths = path_scores(rates, path_background(str(day_dir), minutes, cfg.min_path_spans, cfg.path_prior_spans,
                                               cfg.path_background))
    out: dict[str, dict[str, float]] = {}
    for svc in case.services:
        out[svc] = {"metrics": metric.get(svc, 0.0), "cpu": cpu.get(svc, 0.0), "delay": delay.get(svc, 0.0),
                    "self": selft.get(svc, 0.0), "errors": logs.get(svc, (0.0, 0.0))[0],
                    "mix": logs.get(svc, (0.0, 0.0))[1], "breaks": breaks.get(svc, 0.0),
                    "paths": paths.get(svc, 0.0)}
    return out


def fuse(parts: dict[str, dict[str, float]], cfg: MultimodalConfig) -> dict[str, float]:
    """Each signal becomes a peer z-score (how far a service stands above the case's median service,
    in units of the spread across services); a service's score is its most decisive signal."""
    fused: dict[str, float] = {s: 0.0 for s in parts}
    weights = dict(cfg.weights)
    for key in cfg.signals:
        w = weights.get(key, 1.0)
        values = np.array([parts[s].get(key, 0.0) for s in parts], dtype=float)
        if values.size == 0:
            continue
        med = float(np.median(values))
        mad = 1.4826 * float(np.median(np.abs(values - med)))
        scale = max(mad, cfg.peer_floor, cfg.peer_rel_floor * float(values.max()))
        for s in parts:
            fused[s] = max(fused[s], w * (parts[s].get(key, 0.0) - med) / scale)
    return fused


def rank_with_logs_traces(case: Case, cfg: MultimodalConfig | None = None) -> list[str]:
    """Services best first from Train Ticket's metrics, traces and logs together."""
    cfg = cfg or MultimodalConfig()
    fused = fuse(multimodal_scores(case, cfg), cfg)
    return sorted(fused, key=lambda s: (-round(fused[s], 9), s))
