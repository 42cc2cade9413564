"""Root cause analysis: from a symptom to ranked causes with their evidence chain.

Deterministic and explainable (DESIGN.md, "Root cause analysis"):

1. The symptom's PromQL is evaluated at ``at`` and over the window before it; its series and its
   selectors' equality matchers name the symptom entities (a job, a model, a pipeline, a GPU...), and
   the change point of its values gives the symptom's onset.
2. The topology is walked from the symptom entities to everything they depend on (GPUs, nodes,
   NICs, switches, storage, the service behind a model) — only that neighbourhood is read.
3. Each candidate's signals are compared with their own baseline (median/MAD of the window before
   the onset): a robust z that must hold over a good part of the fault window. Signals are weighted by
   whether they point at a cause on their own entity (a temperature, an XID, NFS latency) or are an
   effect felt by whatever runs there (utilisation, step time) — ``knowledge.role_of``.
4. Discrete evidence is added: events (XIDs, deploys, config changes, OOM kills, switch down), throttle
   reasons newly set, configuration labels that changed on a live series, hardware series that stopped.
5. Peers: a member like its peers is a symptom of their common cause (all GPUs of a braked node, all
   nodes of a congested spine), so the group's entity takes the score; a member unlike its peers (one
   hot GPU, one slow rank) keeps it.
6. The score multiplies the anomaly by onset precedence (the cause changed before the symptom), graph
   distance, and the share of symptom entities the candidate explains. Each cause gets a fault class
   hypothesis and a runbook line.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.signals import SignalFrame, is_signal_metric
from sightglass.model import Event, Matcher, SeriesKey
from sightglass.promql.engine import Engine
from sightglass.promql.result import QueryError
from sightglass.rca import diagnostics, fetch, knowledge
from sightglass.rca.result import Cause, EventEvidence, PeerEvidence, RcaResult, SignalEvidence
from sightglass.rca.symptom import MAX_SYMPTOM_BYTES, aggregated_parts, entity_of_labels, equality_labels
from sightglass.topology.graph import DEPENDS, Topology
from sightglass.topology.infer import TopologyBuilder, host_of

DEFAULT_WINDOW_MS = 30 * 60_000
STEP_MS = 10_000
Z_CAP = 50.0
Z_ONSET = 4.0
ANOMALOUS = 6.0  # an entity scoring at least this is anomalous (for common causes)
MAX_DEPTH = 6
MAX_EXTRA_HOSTS = 24  # hosts read only to judge a switch's other members
READ_BUDGET = 20_000  # series: a larger neighbourhood is read cause signals first (fetch.plan_read)
SCREEN_TOP = 10  # causes of the first read whose hosts are then read whole
PEER_HOSTS = 8  # hosts of a job or switch read whole besides the suspects, for its peers' baseline
CANDIDATE_KINDS = frozenset({"gpu", "mig", "node", "nic", "switch", "storage", "service", "model", "job", "pipeline", "pod"})
OBSERVED_KINDS = frozenset({"storage", "service", "model"})
ENGINE_INFO_PREFIXES = ("vllm:", "sglang:", "tgi_")  # inference engines' own series (config info)
EVENT_WEIGHT = {
    "gpu.xid": 40.0,
    "switch.down": 40.0,
    "node.oom_kill": 30.0,
    "config.change": 30.0,
    "k8s.deploy": 30.0,
    "ib.link_down": 25.0,
    "config.label": 30.0,
    "throttle": 25.0,
}


class RcaError(Exception):
    """A symptom that cannot be analysed; ``error_type`` follows the Prometheus API."""

    def __init__(self, message: str, error_type: str = "bad_data") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(slots=True)
class _Cand:
    id: str
    kind: str
    distance: int
    own: float = 0.0
    own_cause: float = 0.0  # from cause signals only
    rollup: float = 0.0
    event_score: float = 0.0
    signals: list[SignalEvidence] = field(default_factory=list)
    events: list[EventEvidence] = field(default_factory=list)
    peers: list[PeerEvidence] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    metrics: set[str] = field(default_factory=set)
    reasons: set[str] = field(default_factory=set)
    event_kinds: set[str] = field(default_factory=set)
    xids: set[int] = field(default_factory=set)
    absent: bool = False
    onset_ms: int | None = None
    outlier_in: set[str] = field(default_factory=set)  # peer groups it stands out in
    net: float = 0.0  # anomaly of its network (a node: its NICs)
    demote: float = 1.0
    explains: int = 0

    @property
    def anomaly(self) -> float:
        return (self.own + self.event_score) * self.demote + self.rollup

    @property
    def cause_anomaly(self) -> float:
        """What the entity itself shows that points at a cause (for common causes)."""
        return (self.own_cause + self.event_score) * self.demote + self.rollup


def analyze(
    store: Any,
    symptom: str,
    at_ms: int,
    *,
    engine: Engine | None = None,
    builder: TopologyBuilder | None = None,
    top: int = 5,
    window_ms: int | None = None,
    read_budget: int | None = None,
    evidence_until_ms: int | None = None,
) -> RcaResult:
    """Rank the likely root causes of ``symptom`` (PromQL) as of ``at_ms``, with their evidence.

    ``read_budget``: a neighbourhood with more series than this is read cause signals first
    (``fetch.plan_read``; default ``READ_BUDGET``); the result's warnings say what was not read.
    ``evidence_until_ms``: GPU diagnostics (``rca.diagnostics``) that finished up to then count too
    (an incident's RCA re-run after the diagnostics it asked for)."""
    # the analysis makes many short-lived containers and no lasting cycles: with the cyclic
    # collector paused they die young instead of being promoted, so no full collection (one walk of
    # the whole heap: ~0.6 s with a 1,000-node factory's index and topology loaded) lands in it
    with _collector_paused():
        return _analyze(store, symptom, at_ms, engine, builder, top, window_ms, read_budget, evidence_until_ms)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """``gc`` off for the block, back on after it (unless it was off already, or another analysis
    running in another thread turned it off first and will turn it back on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _analyze(
    store: Any,
    symptom: str,
    at_ms: int,
    engine: Engine | None,
    builder: TopologyBuilder | None,
    top: int,
    window_ms: int | None,
    read_budget: int | None,
    evidence_until_ms: int | None,
) -> RcaResult:
    t0 = time.perf_counter()
    if not isinstance(symptom, str) or not symptom.strip():
        raise RcaError("the symptom is empty: give a PromQL expression")
    if len(symptom.encode()) > MAX_SYMPTOM_BYTES:
        raise RcaError(f"the symptom is longer than {MAX_SYMPTOM_BYTES} bytes")
    if top < 1 or top > 100:
        raise RcaError("top must be between 1 and 100")
    if read_budget is not None and read_budget < 0:
        raise RcaError("the read budget must be 0 or more series")
    window = window_ms if window_ms is not None else DEFAULT_WINDOW_MS
    if window < 10 * STEP_MS or window > 7 * 86_400_000:
        raise RcaError("the window must be between 100 s and 7 days")
    engine = engine or Engine(store)
    builder = builder or TopologyBuilder()
    topo = builder.update(store)
    start = at_ms - window
    warnings: list[str] = []
    # 1. the symptom
    try:
        matcher_sets = equality_labels(symptom)
        # one range evaluation: its last step is ``at`` (the window is a whole number of steps)
        series = engine.range(symptom, at_ms - (window // STEP_MS) * STEP_MS, at_ms, STEP_MS, timeout_s=30)
    except QueryError as e:
        raise RcaError(f"cannot evaluate the symptom: {e}", e.error_type) from None
    sym_ents: list[str] = []
    for labels in [*(s.labels for s in series.matrix), *matcher_sets]:
        eid = entity_of_labels(labels, topo, builder)
        if eid and eid not in sym_ents:
            sym_ents.append(eid)
    last = [float(s.values[-1]) for s in series.matrix if len(s.ts_ms) and int(s.ts_ms[-1]) == at_ms]
    sym_value = last[0] if last else None
    sym_onset = _symptom_onset(series.matrix, start, at_ms)
    if not sym_ents:
        # a fleet-wide symptom (a label-less sum): walk it down to the entities of the series it
        # adds up, keeping those whose own series changed
        sym_ents = _walk_down(engine, symptom, topo, builder, start, at_ms, window, warnings)
    if not sym_ents:
        warnings.append("the symptom names no entity the topology knows (use labels such as slurm_job_id, model_name, Hostname)")
        return RcaResult(symptom, at_ms, start, [], sym_onset, sym_value, [], 0, time.perf_counter() - t0, warnings)
    if sym_onset is None:
        warnings.append("the symptom did not change in the window; comparing its last quarter with the rest")
    first = min((int(s.ts_ms[0]) for s in series.matrix if len(s.ts_ms)), default=start)
    # no onset: the last quarter of the window against the rest, keeping half the history as baseline
    t_on = sym_onset if sym_onset is not None else max(at_ms - window // 4, first + (at_ms - first) // 2)
    # 2. the neighbourhood
    deps: dict[tuple[str, int], dict[str, int]] = {}
    related: dict[tuple[str, str, bool, int | None], list[str]] = {}
    cands = _neighbourhood(topo, sym_ents, [at_ms, t_on, t_on - 120_000], deps)
    fold = _service_of_models(topo, cands, at_ms)
    ids, extra_hosts = _series_ids(store, topo, cands, at_ms)
    events = store.query_events(start, at_ms)
    budget = READ_BUDGET if read_budget is None else read_budget
    plan = fetch.plan_read(store.index.keys, ids, budget=budget)

    def run(
        frame: SignalFrame | None, read: list[int], n_top: int, stats: _Stats | None = None
    ) -> tuple[_Ctx, list[Cause], _Stats | None]:
        ctx = _Ctx(topo, builder, cands, fold, start, at_ms, t_on)
        ctx.deps = deps
        ctx.related_memo = related
        ctx.sym = {fold.get(s, s) for s in sym_ents} - {fold.get(s) for s in sym_ents if s in fold}
        if frame is not None and frame.values.shape[1]:
            stats = ctx.score_columns(frame, stats)
        ctx.add_events(events)
        ctx.add_config_labels(store, read)
        ctx.peers_and_rollups(extra_hosts)
        return ctx, ctx.rank(sym_ents, sym_onset, n_top, symptom), stats

    frame = fetch.load_frame(store, start, at_ms, plan.first, builder=builder) if plan.first else None
    read = list(plan.first)
    if not plan.pruned:
        ctx, causes, _ = run(frame, read, top)
    else:
        # 3a. cause signals first: the hosts they point at (and a few peers) are then read whole
        ctx, causes, stats = run(frame, read, max(top, SCREEN_TOP))
        explained = bool(causes) and ctx.c[causes[0].entity_id].cause_anomaly >= ANOMALOUS
        all_hosts = sorted(
            ent.labels.get("Hostname") or eid[5:] for eid in cands if (ent := topo.entity(eid)) is not None and ent.kind == "node"
        )
        hosts = _suspect_hosts(topo, causes, all_hosts) if explained else set(all_hosts)
        more = fetch.host_series(store, hosts, plan.later) if explained else list(plan.later)
        if more:
            extra = fetch.load_frame(store, start, at_ms, more, builder=builder)
            # the first read's columns are not scored again: their statistics carry over
            ok = stats is not None and frame is not None and frame.values.shape[1] and extra.values.shape[1]
            stats = extend_stats(stats, extra, start, at_ms, t_on) if ok and stats is not None else None
            frame = fetch.concat(frame, extra)
            read = sorted(read + more)
        ctx, causes, _ = run(frame, read, top, stats)
        left = len(ids) - len(read)
        if explained and left:
            warnings.append(
                f"large neighbourhood ({len(ids)} series over the read budget of {budget}): read the cause signals "
                f"of every entity first, then every signal of {len(hosts)} hosts (those they pointed at, and a "
                f"spread of peers); {left} other signals of {len(all_hosts) - len(hosts)} hosts were not read "
                "(a larger read budget reads them)"
            )
        elif explained:
            warnings.append(
                f"large neighbourhood ({len(ids)} series over the read budget of {budget}): read the cause signals "
                "of every entity first; the hosts they pointed at and the peers read with them are all its hosts, "
                "so every signal was read"
            )
        else:
            warnings.append(
                f"large neighbourhood ({len(ids)} series over the read budget of {budget}): nothing the cause "
                "signals showed explained the symptom, so every signal was read"
            )
    causes, notes = diagnostics.apply(
        causes, store=store, topo=topo, entity_of=lambda lb: entity_of_labels(lb, topo, builder), neighbourhood=cands,
        symptom=symptom, start_ms=start, until_ms=max(at_ms, evidence_until_ms or at_ms), top=top,
        labels_of=lambda eid: entity_labels(topo, eid),
    )  # fmt: skip
    warnings += notes
    pool = sorted(c for c in ctx.c if c not in fold and c in cands)
    return RcaResult(
        symptom,
        at_ms,
        start,
        sym_ents,
        sym_onset,
        sym_value,
        causes,
        len(pool),
        time.perf_counter() - t0,
        warnings,
        candidate_ids=pool,
        frame=frame,
    )


# ---------------------------------------------------------------------- symptom onset
def _robust(base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        import warnings as _w

        with _w.catch_warnings():
            _w.simplefilter("ignore", RuntimeWarning)
            med = _nanmedian(base)
            mad = _nanmedian(np.abs(base - med)) * 1.4826
    med = np.nan_to_num(med, nan=0.0)
    mad = np.nan_to_num(mad, nan=0.0)
    return med, mad


def _symptom_onset(matrix: list[Any], start: int, at: int) -> int | None:
    """Where the symptom's values left their baseline (the first half of the window) for good."""
    best: int | None = None
    for s in matrix:
        ts, v = np.asarray(s.ts_ms), np.asarray(s.values, dtype=np.float64)
        if len(v) < 12:
            continue
        mid = _baseline_end(ts, v, start, at)
        base = v[ts < mid]
        if len(base) < 6:
            continue
        med, mad = _robust(base[:, None])
        scale = max(float(mad[0]), 0.02 * abs(float(med[0])), 1e-9)
        z = np.abs((v - med[0]) / scale)
        z = np.where(np.isfinite(z), z, Z_CAP)  # NaN/Inf (a rate of 0 over 0) counts as changed
        on = _last_run(z > Z_ONSET, ts)
        if on is not None and on >= mid - (at - mid) // 2 and (best is None or on < best):
            best = on
    return best


MAX_WALKED = 32  # entities a fleet-wide symptom is walked down to


def _walk_down(
    engine: Engine, symptom: str, topo: Topology, builder: TopologyBuilder, start: int, at: int, window: int, warnings: list[str]
) -> list[str]:
    """The entities behind an aggregated symptom: those whose own part of it changed (at most
    ``MAX_WALKED``, the earliest and largest changes first), else a spread of all of them."""
    changed: dict[str, tuple[int, float]] = {}
    every: list[str] = []
    n_series = 0
    for part in aggregated_parts(symptom):
        try:
            got = engine.range(part, at - (window // STEP_MS) * STEP_MS, at, STEP_MS, timeout_s=30)
        except QueryError:
            continue
        for s in got.matrix:
            eid = entity_of_labels(s.labels, topo, builder)
            if eid is not None and eid.startswith("nic:"):
                # a port depends on nothing in the graph; its node does (its leaf, the spines)
                node = topo.related(eid, "nic-in-node", at_ms=at)
                eid = node[0] if node else eid
            if eid is None:
                continue
            n_series += 1
            if eid not in every:
                every.append(eid)
            hit = _series_change(s, start, at)
            if hit is not None:
                on, z = hit
                prev = changed.get(eid)
                if prev is None or (on, -z) < (prev[0], -prev[1]):
                    changed[eid] = (on, z)
    if changed:
        picked = _spread(sorted(changed), MAX_WALKED)
        warnings.append(
            f"the symptom names no entity: walked down to the {len(picked)} entities (of {len(every)}) whose "
            f"own series of it changed ({n_series} series)"
        )
        return sorted(picked)
    if every:
        picked = _spread(sorted(every), MAX_WALKED)
        warnings.append(f"the symptom names no entity and none of its {n_series} series changed alone: looking at {len(picked)} of their {len(every)} entities")
        return picked
    return []


def _series_change(s: Any, start: int, at: int) -> tuple[int, float] | None:
    """(onset, sustained z) of one series that left its baseline (the window's first half) for good."""
    ts, v = np.asarray(s.ts_ms), np.asarray(s.values, dtype=np.float64)
    if len(v) < 12:
        return None
    mid = _baseline_end(ts, v, start, at)
    base = v[ts < mid]
    if len(base) < 6:
        return None
    med, mad = _robust(base[:, None])
    scale = max(float(mad[0]), 0.02 * abs(float(med[0])), 1e-9)
    z = np.abs((v - med[0]) / scale)
    z = np.where(np.isfinite(z), z, Z_CAP)
    on = _last_run(z > Z_ONSET, ts)
    if on is None or on < mid - (at - mid) // 2:
        return None
    return on, float(np.median(np.minimum(z[ts >= on], Z_CAP)))


def _baseline_end(ts: np.ndarray, v: np.ndarray, start: int, at: int) -> int:
    """The end of a symptom series' baseline: the first half of the part of the window it has data in
    (a series that starts inside the window, as a whole simulated factory does, keeps half its history)."""
    ok = np.flatnonzero(np.isfinite(v))
    first = max(start, int(ts[ok[0]])) if len(ok) else start
    return first + (at - first) // 2


def _last_run(mask: np.ndarray, ts: np.ndarray, gap: int = 2) -> int | None:
    """Start of the final run of ``mask`` that reaches the end (gaps of up to ``gap`` rows allowed)."""
    n = len(mask)
    if n == 0 or not mask[max(0, n - 1 - gap) :].any():
        return None
    i = n - 1
    miss = 0
    first = None
    while i >= 0:
        if mask[i]:
            first, miss = i, 0
        else:
            miss += 1
            if miss > gap:
                break
        i -= 1
    return int(ts[first]) if first is not None else None


# ---------------------------------------------------------------------- neighbourhood
_ROLE_OF: dict[tuple[str, float], tuple[str, float]] = {}


def _role_of(metric: str, direction: float) -> tuple[str, float]:
    """``knowledge.role_of(metric, direction)``, remembered (it depends on these two only)."""
    got = _ROLE_OF.get((metric, direction))
    if got is None:
        if len(_ROLE_OF) > 100_000:
            _ROLE_OF.clear()
        got = _ROLE_OF[(metric, direction)] = knowledge.role_of(metric, direction)
    return got


def _depends(topo: Topology, eid: str, t: int, memo: dict[tuple[str, int], dict[str, int]]) -> dict[str, int]:
    """``topo.depends_on(eid, t, MAX_DEPTH)``, walked once per analysis (``memo``)."""
    got = memo.get((eid, t))
    if got is None:
        got = memo[(eid, t)] = topo.depends_on(eid, t, max_depth=MAX_DEPTH)
    return got


def _neighbourhood(
    topo: Topology, sym: list[str], times: list[int], deps: dict[tuple[str, int], dict[str, int]] | None = None
) -> dict[str, int]:
    deps = {} if deps is None else deps
    out: dict[str, int] = {}
    for s in sym:
        out[s] = 0
        for t in times:
            starts = {s: 0}
            if s.startswith("nic:"):
                # a port depends on nothing in the graph, but its link ends on the switch its node
                # links: walk from the node too (its fabric, one step further away)
                starts.update({n: 1 for n in topo.related(s, "nic-in-node", at_ms=t)})
            for root, d0 in starts.items():
                if d0 and d0 < out.get(root, 99):
                    out[root] = d0
                for eid, d in _depends(topo, root, t, deps).items():
                    if d + d0 < out.get(eid, 99):
                        out[eid] = d + d0
    return out


def _service_of_models(topo: Topology, cands: dict[str, int], at: int) -> dict[str, str]:
    """model id -> the service serving it: the engine's series are the service's own signals."""
    fold: dict[str, str] = {}
    for eid in list(cands):
        if eid.startswith("model:"):
            svcs = topo.related(eid, "model-served-by-service", at_ms=at) or topo.related(
                eid, "model-served-by-service"
            )
            if len(svcs) == 1:
                fold[eid] = svcs[0]
                cands.setdefault(svcs[0], cands[eid] + 1)
                cands[svcs[0]] = min(cands[svcs[0]], cands[eid])
    return fold


def _alt(values: Iterable[str]) -> str:
    return "|".join(re.escape(v) for v in sorted(set(values)))


def _series_ids(store: Any, topo: Topology, cands: dict[str, int], at: int) -> tuple[list[int], set[str]]:
    """The series of the neighbourhood: everything on its hosts, its jobs, models, pipelines and
    switches, plus the hardware signals of a sample of each switch's other hosts."""
    hosts: set[str] = set()
    switches: set[str] = set()
    by_label: dict[str, set[str]] = defaultdict(set)
    for eid in cands:
        e = topo.entity(eid)
        if e is None:
            continue
        lab = e.labels
        if e.kind == "node":
            hosts.add(lab.get("Hostname") or eid[5:])
        elif e.kind == "job":
            by_label["slurm_job_id"].add(lab.get("slurm_job_id") or eid[4:])
        elif e.kind == "model":
            by_label["model_name"].add(lab.get("model_name") or eid[6:])
        elif e.kind == "pipeline":
            by_label["pipeline"].add(lab.get("pipeline") or eid[9:])
        elif e.kind == "switch":
            switches.add(lab.get("switch") or eid[7:])
        elif e.kind == "pod":
            by_label["pod"].add(lab.get("pod", ""))
    extra: set[str] = set()
    peer_switches: set[str] = set()
    for eid in sorted(cands):
        if not eid.startswith("switch:"):
            continue
        members = topo.related(eid, "node-links-switch", outgoing=False, at_ms=at)
        leaves = topo.related(eid, "switch-links-switch", outgoing=False, at_ms=at)
        for leaf in _spread(leaves, 8):
            members += _spread(topo.related(leaf, "node-links-switch", outgoing=False, at_ms=at), 4)
            le = topo.entity(leaf)
            peer_switches.add((le.labels.get("switch") if le is not None else None) or leaf[7:])
        for n in _spread(sorted(set(members)), MAX_EXTRA_HOSTS):
            h = n[5:]
            if h not in hosts:
                extra.add(h)
    found: list[np.ndarray] = []

    def sel(*ms: Matcher) -> None:
        found.append(np.asarray(store.select_ids(list(ms)), dtype=np.int64))

    if hosts:
        alt = _alt(hosts)
        sel(Matcher("instance", "=~", f"({alt})(:[0-9]+)?"))
        sel(Matcher("Hostname", "=~", f"({alt})"))
    for label, vals in by_label.items():
        vals.discard("")
        if vals:
            sel(Matcher(label, "=~", f"({_alt(vals)})"))
    switches.discard("")
    if switches:
        # a switch's own series; of its switch-to-switch ports (those with a remote_switch) only
        # the links among the neighbourhood's switches and the peer leaves sampled above, both
        # ways: the paths its hosts' traffic takes, and a baseline of other leaves for a spine
        # (every port of a spine's fabric is ~16 k series on a 1,000-node factory)
        remote = knowledge.REMOTE_SWITCH_LABEL
        sel(Matcher("switch", "=~", f"({_alt(switches)})"), Matcher(remote, "=", ""))
        ends = f"({_alt(switches | peer_switches)})"
        sel(Matcher("switch", "=~", ends), Matcher(remote, "=~", ends))
    if extra:
        alt = _alt(extra)
        sel(Matcher("instance", "=~", f"({alt}):9100"), Matcher("__name__", "=~", "node_infiniband_.*"))
        sel(Matcher("Hostname", "=~", f"({alt})"), Matcher("__name__", "=", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"))
    ids = fetch.unique_ids(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    # which to read, tested per metric (the index's metric code of each series), not per series
    codes, metrics = store.index.label_codes("__name__", ids)
    return ids[_worth_codes(metrics)[codes]].tolist(), extra


_WORTH: dict[str, bool] = {}


def _worth_codes(metrics: list[str]) -> np.ndarray:
    """Per metric code of the store's index (0: none): whether its series are read
    (``_worth_reading``, and a signal at all: ``select_series``)."""
    out = np.zeros(len(metrics), dtype=bool)
    for c, m in enumerate(metrics):
        got = _WORTH.get(m)
        if got is None:
            if len(_WORTH) > 100_000:
                _WORTH.clear()
            got = _WORTH[m] = bool(m) and _worth_reading(m) and is_signal_metric(m)
        out[c] = got
    return out


def _worth_reading(metric: str) -> bool:
    """Signals the analysis uses: every cause signal, and the effects that tell a workload's state."""
    return not (metric in knowledge.SKIP_READING or metric.startswith(knowledge.SKIP_READING_PREFIXES))


def _spread(items: list[str], k: int) -> list[str]:
    if len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _suspect_hosts(topo: Topology, causes: list[Cause], all_hosts: list[str]) -> set[str]:
    """Hosts to read whole after the first read: those of its top causes (a GPU's, a NIC's node,
    a node; a job's or switch's members) and a spread of the hosts left, for peer baselines."""
    hosts: set[str] = set()

    def add(eid: str) -> None:
        e = topo.entity(eid)
        if e is None:
            return
        if e.kind == "node":
            hosts.add(e.labels.get("Hostname") or eid[5:])
        elif e.kind in ("gpu", "mig", "nic"):
            for rel in ("gpu-in-node", "nic-in-node"):
                for n in topo.related(eid, rel):
                    hosts.add(n[5:])
            h = e.labels.get("Hostname")
            if h:
                hosts.add(h)

    for c in causes:
        add(c.entity_id)
        for m in c.members[:PEER_HOSTS]:
            add(m)
    rest = sorted(set(all_hosts) - hosts)
    hosts.update(_spread(rest, PEER_HOSTS))
    return hosts & set(all_hosts)


# ---------------------------------------------------------------------- scoring
class _Ctx:
    def __init__(
        self,
        topo: Topology,
        builder: TopologyBuilder,
        cands: dict[str, int],
        fold: dict[str, str],
        start: int,
        at: int,
        t_on: int,
    ) -> None:
        self.topo, self.builder, self.fold = topo, builder, fold
        self.start, self.at, self.t_on = start, at, t_on
        self.dist = cands
        self.sym: set[str] = set()
        self.c: dict[str, _Cand] = {}
        self.frame: SignalFrame | None = None
        self.col_value: np.ndarray = np.zeros(0)
        self.col_z: np.ndarray = np.zeros(0)
        # the frame's columns: the candidate (an index into col_cands, -1: none) and metric of each
        self.col_cands: list[_Cand] = []
        self.col_cand: np.ndarray = np.zeros(0, dtype=np.int64)
        self.col_mcode: np.ndarray = np.zeros(0, dtype=np.int64)
        self.mcode_of: dict[str, int] = {}
        self._by_metric: dict[str, dict[str, list[int]]] = {}
        self.deps: dict[tuple[str, int], dict[str, int]] = {}  # depends_on walks, shared by the passes
        self.related_memo: dict[tuple[str, str, bool, int | None], list[str]] = {}  # _related, shared too
        self.waits_on: dict[str, set[str]] = defaultdict(set)  # switch -> switches starving its ports
        self.peer_of: dict[int, tuple[str, str, list[str]]] = {}
        self._unsorted: dict[str, _Cand] = {}  # candidates given a signal since their last sort
        # _walk_from: (entity, time) -> (parents, frontier, depth) of its walk so far
        self._walks: dict[tuple[str, int], tuple[dict[str, tuple[str, Any]], list[str], int]] = {}

    def cand(self, eid: str) -> _Cand | None:
        eid = self.fold.get(eid, eid)
        c = self.c.get(eid)
        if c is None:
            e = self.topo.entity(eid)
            if e is None or e.kind not in CANDIDATE_KINDS:
                return None
            c = self.c[eid] = _Cand(eid, e.kind, self.dist.get(eid, MAX_DEPTH + 1))
        return c

    # -------------------------------------------------------------- signals
    def score_columns(self, frame: SignalFrame, stats: _Stats | None = None) -> _Stats:
        """Score every column of ``frame`` on its candidate; ``stats``: its column statistics, when
        already computed (the cause-first read's second pass reuses the first read's)."""
        self.frame = frame
        st = stats if stats is not None else column_stats(frame, self.start, self.at, self.t_on)
        ts, vals = frame.ts_ms, st.vals
        base, fault, F, za = st.base, st.fault, st.F, st.za
        med, scale, sustained, fmed, bmax, shift = st.med, st.scale, st.sustained, st.fmed, st.bmax, st.shift
        usable, gone, worth, reasons, dcgm, age = st.usable, st.gone, st.worth, st.reasons, st.dcgm, st.age
        nF = len(F)
        self.col_value, self.col_z = fmed, sustained
        ts_f = ts[fault]
        # every column joins the candidate of its entity (a credit wait: the switch withholding
        # the credits), the candidates made in the order of their first column
        ents = frame.entities
        mcode, mnames = _codes(frame.metrics)
        targets: list[str | None] = ents
        waits = [i for i, m in enumerate(mnames) if m in knowledge.CREDIT_WAIT_METRICS]
        if waits:
            targets = list(ents)
            known: dict[str, bool] = {}
            for j in np.flatnonzero(np.isin(mcode, waits)).tolist():
                targets[j] = self._receiver(frame.names[j], ents[j], known)
        tcode, tnames = _codes(targets)
        of_target = [None if t is None else self.cand(t) for t in tnames]
        self.col_cands = [c for c in of_target if c is not None]
        pos = {id(c): i for i, c in enumerate(self.col_cands)}
        col_cand = np.asarray([-1 if c is None else pos[id(c)] for c in of_target], dtype=np.int64)[tcode]
        self.col_cand, self.col_mcode, self.mcode_of = col_cand, mcode, {m: i for i, m in enumerate(mnames)}
        # the per-column tests as whole-array operations; the loop below only visits the columns
        # that carry evidence, in column order (the order of their candidates' signals)
        todo = worth & (col_cand >= 0)
        absent = todo & gone & dcgm & ~reasons
        aged = age & np.isfinite(bmax)
        plain = todo & ~reasons & ~(gone & dcgm) & usable & ~aged & (sustained >= Z_ONSET) & (shift >= 2.0)
        newly = st.newly & todo  # a throttle reason that _reasons takes (others are no-ops there)
        visit = np.flatnonzero(absent | newly | plain | (todo & ~reasons & ~(gone & dcgm) & usable & aged))
        onset_of = self._onsets(za, plain, ts_f)
        with np.errstate(invalid="ignore"):
            sign = np.where(np.isfinite(fmed), np.sign(fmed - med), 0.0)
        fmed_l, med_l, scale_l, sus_l, sign_l = fmed.tolist(), med.tolist(), scale.tolist(), sustained.tolist(), sign.tolist()
        absent_l, newly_l, plain_l, cand_l = absent.tolist(), newly.tolist(), plain.tolist(), col_cand.tolist()
        cands_l, metrics, names = self.col_cands, frame.metrics, frame.names
        stall, cpu = knowledge.STALL_METRICS, "node_cpu_seconds_total"
        for j in visit.tolist():
            metric, owner = metrics[j], ents[j]
            c = cands_l[cand_l[j]]
            if newly_l[j]:
                self._reasons(c, j, vals[:, j], base, fault, ts)
                continue
            if absent_l[j]:
                # hardware telemetry stopped while the rest of the factory still reports
                self._signal(c, j, metric, med_l[j], med_l[j], scale_l[j], Z_CAP, None, "absent", knowledge.ABSENT_WEIGHT)
                c.absent = True
                continue
            if plain_l[j]:
                zs, onset = sus_l[j], onset_of.get(j)
            else:
                # an age: anomalous once it passes the highest value it reached while healthy
                over = np.nan_to_num((F[:, j] - bmax[j]) / max(0.1 * abs(float(bmax[j])), 1e-6), nan=0.0)
                onset_z = np.maximum(over, 0.0) * Z_ONSET
                zs = float(min(Z_CAP, max(0.0, float(np.nanmax(over)) if nF else 0.0) * Z_ONSET))
                if zs < Z_ONSET:
                    continue
                on_idx = np.flatnonzero((onset_z[:-1] > Z_ONSET) & (onset_z[1:] > Z_ONSET)) if nF > 1 else np.zeros(0, int)
                onset = int(ts_f[on_idx[0]]) if len(on_idx) else None
            direction = sign_l[j]
            # role_of reads the labels only for node_cpu_seconds_total (its mode)
            labels = _parse_name(names[j])[1] if metric == cpu else None
            role, w = knowledge.role_of(metric, direction, labels) if labels is not None else _role_of(metric, direction)
            if metric in stall and med_l[j] > 0 and fmed_l[j] < 0.1 * med_l[j]:
                role, w = "cause", 0.8  # stopped, not slower
            self._signal(c, j, metric, fmed_l[j], med_l[j], scale_l[j], zs, onset, role, w)
            if owner is not None and owner != c.id and role == "cause":
                self.waits_on[owner].add(c.id)  # the port's switch is starved of credits by c
        # strongest first; one stable sort of the signals in the order they came (the order sorting
        # after every signal gave: the keys are finite)
        for c in self._unsorted.values():
            c.signals.sort(key=lambda s: -s.z * _w(s))
        self._unsorted.clear()
        return st

    @staticmethod
    def _onsets(za: np.ndarray, cols: np.ndarray, ts_f: np.ndarray) -> dict[int, int]:
        """column -> the time of the first of two fault rows in a row with |z| over ``Z_ONSET``,
        for the columns ``cols`` (a mask) that have one."""
        idx = np.flatnonzero(cols)
        if len(za) < 2 or not len(idx):
            return {}
        sub = za[:, idx]
        over = (sub[:-1] > Z_ONSET) & (sub[1:] > Z_ONSET)
        has = over.any(axis=0)
        first = over.argmax(axis=0)
        return dict(zip(idx[has].tolist(), ts_f[first[has]].tolist(), strict=True))

    def cols_of(self, metric: str) -> dict[str, list[int]]:
        """candidate id -> its columns of ``metric`` (ascending), made when first asked."""
        got = self._by_metric.get(metric)
        if got is None:
            got = self._by_metric[metric] = {}
            code = self.mcode_of.get(metric)
            if code is not None:
                for j in np.flatnonzero((self.col_mcode == code) & (self.col_cand >= 0)).tolist():
                    got.setdefault(self.col_cands[self.col_cand[j]].id, []).append(j)
        return got

    def _receiver(self, name: str, ent: str | None, known: dict[str, bool]) -> str | None:
        """The switch withholding credits from a port (its ``remote_switch``), when the topology knows it.
        ``known``: switch id -> whether the topology has it, shared by the columns of one frame."""
        remote = _label_value(name, knowledge.REMOTE_SWITCH_LABEL)
        if not remote:
            return ent
        sid = f"switch:{remote}"
        got = known.get(sid)
        if got is None:
            got = known[sid] = self.topo.entity(sid) is not None
        return sid if got else ent

    def _signal(
        self,
        c: _Cand,
        j: int,
        metric: str,
        value: float,
        baseline: float,
        scale: float,
        z: float,
        onset: int | None,
        role: str,
        weight: float,
    ) -> None:
        assert self.frame is not None
        name = self.frame.names[j]
        c.signals.append(
            # the re-check query is written for the evidence that is shown (rank)
            SignalEvidence(metric, name, value, baseline, scale, z, onset, role, "", weight)
        )
        c.metrics.add(metric)
        c.own = 0.0  # recomputed in _own
        if onset is not None and (c.onset_ms is None or onset < c.onset_ms):
            c.onset_ms = onset
        self._unsorted[c.id] = c  # sorted once the frame is scored (score_columns)

    def _reasons(self, c: _Cand, j: int, col: np.ndarray, base: np.ndarray, fault: np.ndarray, ts: np.ndarray) -> None:
        vb = col[base]
        bits_b = vb[np.isfinite(vb)].astype(np.int64)
        vf, tf = col[fault], ts[fault]
        okf = np.isfinite(vf)
        if not okf.any():
            return
        bits_f, ts_ok = vf[okf].astype(np.int64), tf[okf]  # truncated, as int() does
        assert self.frame is not None
        for reason, w in knowledge.REASON_WEIGHT.items():
            bit = _BITS[reason]
            frac_b = int(((bits_b & bit) != 0).sum()) / max(len(bits_b), 1)
            hit = (bits_f & bit) != 0
            n_hit = int(hit.sum())
            if n_hit / len(bits_f) >= 0.3 and frac_b < 0.1:
                first_hit = int(ts_ok[hit][0])
                c.reasons.add(reason)
                c.event_kinds.add("throttle")
                name = self.frame.names[j]
                c.events.append(
                    EventEvidence(
                        first_hit, "throttle", entity_labels(self.topo, c.id), {"reason": reason, "share": round(n_hit / len(bits_f), 2)},
                        "warning", "metrics", _reason_query(name, reason),
                    )
                )
                c.event_score += EVENT_WEIGHT["throttle"] * w
                if c.onset_ms is None or first_hit < c.onset_ms:
                    c.onset_ms = first_hit

    # -------------------------------------------------------------- events
    def add_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind not in EVENT_WEIGHT:
                continue
            eid = entity_of_labels(ev.entity, self.topo, self.builder)
            if eid is None and ev.entity.get("model_name"):
                eid = f"model:{ev.entity['model_name']}"
            if eid is None:
                continue
            if self.fold.get(eid, eid) not in self.dist:
                continue  # outside the symptom's neighbourhood
            c = self.cand(eid)
            if c is None:
                continue
            early = ev.ts_ms < self.t_on - 600_000
            w = EVENT_WEIGHT[ev.kind] * (0.3 if early else 1.0)
            attrs = dict(ev.attributes)
            if ev.kind == "gpu.xid" and "xid" in attrs:
                with contextlib.suppress(TypeError, ValueError):
                    c.xids.add(int(attrs["xid"]))
            c.event_kinds.add(ev.kind)
            if ev.kind == "config.change":
                c.event_kinds.add(f"config.change:{attrs.get('setting', '')}")
            c.event_score += w
            c.events.append(
                EventEvidence(ev.ts_ms, ev.kind, dict(ev.entity), attrs, ev.severity, "events", _event_query(ev))
            )
            if not early and (c.onset_ms is None or ev.ts_ms < c.onset_ms):
                c.onset_ms = ev.ts_ms

    def add_config_labels(self, store: Any, ids: list[int]) -> None:
        """A configuration label (driver version, engine cache config) that changed on a live series."""
        keys = store.index.keys
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = defaultdict(list)
        found: set[int] = set(ids)
        # info series (skipped as signals) carry most of the configuration
        hosts = {e.labels.get("Hostname") for c in self.c.values() if c.kind == "node" and (e := self.topo.entity(c.id))}
        hosts.discard(None)
        hosts.discard("")
        if hosts:  # one selection for every host (not one per host)
            alt = "|".join(re.escape(h) for h in sorted(h for h in hosts if h))
            info = store.select_ids([Matcher("instance", "=~", f"({alt})(:[0-9]+)?"), Matcher("__name__", "=~", ".*_info")])
            found.update(np.asarray(info, dtype=np.int64).tolist())
        # the series of those metrics, tested per metric code, in the set's order (the order the
        # groups, and so their changes, are taken in)
        order = np.fromiter(found, dtype=np.int64, count=len(found))
        codes, metrics = store.index.label_codes("__name__", order)
        want = np.fromiter((m.endswith("_info") or m == "DCGM_FI_DEV_GPU_TEMP" for m in metrics), dtype=bool, count=len(metrics))
        for sid in order[want[codes]].tolist():
            k = keys.get(sid)
            if k is None:
                continue
            if not any(lk in knowledge.CONFIG_LABELS for lk, _ in k.labels):
                continue
            rest = tuple((a, b) for a, b in k.labels if a not in knowledge.CONFIG_LABELS)
            groups[(k.metric, rest)].append(sid)
        multi = [g for g in groups.values() if len(g) > 1]
        if not multi:
            return
        data = {sd.key: sd for sd in store.read_ids(np.asarray(sorted({s for g in multi for s in g}), dtype=np.int64), self.start, self.at)}
        for g in multi:
            spans = []
            for sid in g:
                sd = data.get(keys[sid])
                if sd is not None and len(sd.ts_ms):
                    spans.append((int(sd.ts_ms[0]), int(sd.ts_ms[-1]), keys[sid]))
            spans.sort(key=lambda s: s[0])
            for (_f0, l0, k0), (f1, _l1, k1) in itertools.pairwise(spans):
                if f1 <= self.start + STEP_MS or l0 > f1 + 60_000:
                    continue  # both from the start, or overlapping: not a change
                d0, d1 = k0.label_dict(), k1.label_dict()
                changed = {lk: {"from": d0.get(lk), "to": d1.get(lk)} for lk in knowledge.CONFIG_LABELS if d0.get(lk) != d1.get(lk)}
                if not changed:
                    continue
                ent = entity_of_labels(d1, self.topo, self.builder)
                if ent and ent.startswith("gpu:"):
                    node = self.topo.related(ent, "gpu-in-node")
                    ent = node[0] if node else ent
                if ent and ent.startswith("node:") and k1.metric.startswith(ENGINE_INFO_PREFIXES):
                    # an inference engine's own configuration, scraped from the host it runs on,
                    # belongs to the service whose pod runs the engine there
                    ent = self._service_on(ent) or ent
                if ent is None:
                    continue
                c = self.cand(ent)
                if c is None or "config.label" in c.event_kinds:
                    continue
                c.event_kinds.add("config.label")
                c.event_score += EVENT_WEIGHT["config.label"] * (0.3 if f1 < self.t_on - 600_000 else 1.0)
                label = next(iter(changed))
                sel = _selector(k1.metric, {a: b for a, b in k1.labels if a not in knowledge.CONFIG_LABELS})
                c.events.append(
                    EventEvidence(f1, "config.label", entity_labels(self.topo, c.id), {"metric": k1.metric, **{a: f"{v['from']} -> {v['to']}" for a, v in changed.items()}}, "warning", "metrics", f"count by ({label}) ({sel})")
                )
                if c.onset_ms is None or f1 < c.onset_ms:
                    c.onset_ms = f1

    def _service_on(self, node: str) -> str | None:
        """The one service of the neighbourhood with a pod on ``node``."""
        svcs = {
            svc
            for pod in self.topo.related(node, "pod-on-node", outgoing=False, at_ms=self.at)
            for svc in self.topo.related(pod, "service-has-pod", outgoing=False, at_ms=self.at)
            if svc in self.dist
        }
        return next(iter(svcs)) if len(svcs) == 1 else None

    # -------------------------------------------------------------- peers and common causes
    def _own(self, c: _Cand, *, cause_only: bool = False) -> float:
        if not c.signals:
            return 0  # the empty sum below (most of a large job's GPUs show nothing)
        sig = [s for s in c.signals if not cause_only or s.role != "effect"]
        if c.kind in OBSERVED_KINDS:
            # a shared entity seen by many clients (storage: every node's mount; a service: every
            # replica) is slow when most of them see it: one score per metric, the clients' median
            best: dict[str, SignalEvidence] = {}
            for s in sig:
                if s.metric not in best or s.z > best[s.metric].z:
                    best[s.metric] = s
            vals = []
            for m, s in best.items():
                cols = self.cols_of(m).get(c.id, [])
                per_client: dict[str, float] = {}
                for j in cols:
                    who = self._client(j)
                    per_client[who] = max(per_client.get(who, 0.0), float(self.col_z[j]))
                z = float(np.median(list(per_client.values()))) if len(per_client) > 2 else s.z
                vals.append(min(z, Z_CAP) * _w(s))
            vals.sort(reverse=True)
        else:
            vals = sorted((min(s.z, Z_CAP) * _w(s) for s in sig), reverse=True)
        return sum(v * wt for v, wt in zip(vals, (1.0, 0.5, 0.25), strict=False))

    def _client(self, j: int) -> str:
        """Who observed column ``j`` (its host), for entities many clients observe."""
        assert self.frame is not None
        labels = _parse_name(self.frame.names[j])[1]
        return host_of(labels) or labels.get("instance", "") or str(j)

    def _related(self, eid: str, kind: str, *, outgoing: bool = True, at_ms: int | None = None) -> list[str]:
        """``topo.related``, remembered for the analysis (the passes share it; the topology does not
        change during one). The list is shared: callers do not change it."""
        key = (eid, kind, outgoing, at_ms)
        got = self.related_memo.get(key)
        if got is None:
            got = self.related_memo[key] = self.topo.related(eid, kind, outgoing=outgoing, at_ms=at_ms)
        return got

    def peers_and_rollups(self, extra_hosts: set[str]) -> None:
        for c in self.c.values():
            # the symptom's own effects (its step time, its data-loader wait) are the symptom, not
            # evidence that it is its own cause
            c.own = self._own(c, cause_only=c.id in self.sym)
            c.own_cause = self._own(c, cause_only=True)
        topo, at = self.topo, self.at
        # peer comparison: GPUs of a node, GPUs of a job, the nodes of a job or service
        groups: list[tuple[str, list[str]]] = []
        for c in list(self.c.values()):
            if c.kind == "node":
                groups.append((c.id, [g for g in self._related(c.id, "gpu-in-node", outgoing=False, at_ms=at) if g in self.c]))
            elif c.kind == "job":
                groups.append((c.id, [g for g in self._related(c.id, "job-uses-gpu", at_ms=self.t_on) if g in self.c]))
                groups.append((c.id, [n for n in self._related(c.id, "job-on-node", at_ms=self.t_on) if n in self.c]))
        for gid, members in groups:
            self._compare(gid, members)
        # common causes, bottom-up: node <- GPUs/NICs, leaf <- nodes, spine <- leaves, job <- nodes
        for n in [c for c in self.c.values() if c.kind == "node"]:
            gpus = self._related(n.id, "gpu-in-node", outgoing=False, at_ms=at)
            nics = [m for m in self._related(n.id, "nic-in-node", outgoing=False, at_ms=at) if m in self.c]
            if nics:
                anom = sorted(self.c[m].cause_anomaly for m in nics if self.c[m].cause_anomaly >= ANOMALOUS)
                n.net = len(anom) / len(nics) * anom[len(anom) // 2] if anom else 0.0
            self._rollup(n, [m for m in gpus if m in self.c])
            self._rollup(n, nics)
        sw = sorted((c for c in self.c.values() if c.kind == "switch"), key=lambda c: c.id)
        tier = {}
        for c in sw:
            e = topo.entity(c.id)
            tier[c.id] = e.attributes.get("tier") if e is not None else None
        for s in sw:
            if tier[s.id] != "spine":
                nodes = [m for m in self._related(s.id, "node-links-switch", outgoing=False, at_ms=at) if m in self.c]
                self._rollup(s, nodes, score=lambda m: m.net)
        snap = {c.id: c.rollup for c in sw}  # every spine judges the leaves as they were
        for s in sw:
            if tier[s.id] == "spine":
                leaves = [m for m in self._related(s.id, "switch-links-switch", outgoing=False, at_ms=at) if m in self.c]
                self._rollup(s, leaves, score=lambda m: snap.get(m.id, 0.0))
        # congestion spreads backwards (tree saturation): a switch whose own ports wait for credits
        # from a further switch is a victim of it, and so is the waiting its hosts see
        for sid, feeders in sorted(self.waits_on.items()):
            victim = self.c.get(sid)
            roots = [self.c[x] for x in feeders if x in self.c and self.c[x].cause_anomaly >= ANOMALOUS]
            if victim is None or not roots:
                continue
            victim.demote *= 0.4
            victim.rollup *= 0.4
            for r in roots:
                if victim.id not in r.members:
                    r.members = sorted({*r.members, victim.id})
        # a job whose GPUs all changed alike is its own common cause only when nothing it depends
        # on in common (the shared storage, the fabric) shows a cause of its own
        shared = [c for c in self.c.values() if c.kind in ("storage", "switch") and c.cause_anomaly >= ANOMALOUS]
        for j in [c for c in self.c.values() if c.kind == "job"]:
            gpus = [m for m in self._related(j.id, "job-uses-gpu", at_ms=self.t_on) if m in self.c]
            explained = any(self.dist.get(x.id, 99) <= MAX_DEPTH for x in shared)
            self._rollup(j, gpus, effect_only=True, factor=0.25 if explained else 0.5)
            # its own stall is explained by a dependency with strong evidence of its own (a GPU
            # off the bus hangs the job until the watchdog)
            below = max((self.c[x].cause_anomaly for x in self.c if x != j.id and self.dist.get(x, 99) <= MAX_DEPTH), default=0.0)
            if j.id in self.sym and below >= 3 * ANOMALOUS:
                j.demote *= 0.5

    def _compare(self, group: str, members: list[str]) -> None:
        if len(members) < 3:
            return
        cache: dict[str, tuple[float, float, int] | None] = {}
        for mid in members:
            c = self.c[mid]
            for s in c.signals[:3]:
                if s.role == "absent":
                    continue
                if s.metric not in cache:
                    per = self.cols_of(s.metric)
                    vals = []
                    for other in members:
                        js = per.get(other)
                        if js:
                            if len(js) == 1:  # most members have one column of a metric
                                x = float(self.col_value[js[0]])
                                if math.isfinite(x):
                                    vals.append(x)
                                continue
                            v = [x for x in self.col_value[js].tolist() if math.isfinite(x)]
                            if v:
                                vals.append(_median(v))
                    if len(vals) < 3:
                        cache[s.metric] = None
                    else:
                        med = _median(vals)
                        cache[s.metric] = (med, _median([abs(x - med) for x in vals]) * 1.4826, len(vals))
                got = cache[s.metric]
                if got is None:
                    continue
                med, mad, n = got
                scale = max(mad, 0.02 * abs(med), s.scale, 1e-9)
                z = (s.value - med) / scale
                out = abs(z) > 3.0
                pe = PeerEvidence(group, s.metric, s.value, med, z, n, out, "")
                self.peer_of[id(pe)] = (s.metric, group, members)  # its query: written in rank
                c.peers.append(pe)
                if out and s.role == "cause":
                    c.outlier_in.add(group)
                break

    def _rollup(
        self,
        c: _Cand,
        members: list[str],
        *,
        min_members: int = 2,
        effect_only: bool = False,
        score: Any = None,
        factor: float = 1.0,
    ) -> None:
        """When most members of a group are anomalous alike, the group's entity is the suspect."""
        ms = [self.c[m] for m in members]
        if len(ms) < min_members:
            return
        val = score or ((lambda m: m.anomaly) if effect_only else (lambda m: m.cause_anomaly))
        anomalous = [m for m in ms if val(m) >= ANOMALOUS]
        f = len(anomalous) / len(ms)
        if f < 0.6:
            return
        scores = sorted(val(m) for m in anomalous)
        c.rollup += f * scores[len(scores) // 2] * factor
        c.members = sorted(set(c.members) | {m.id for m in anomalous})
        for m in anomalous:
            if c.id not in m.outlier_in:
                m.demote *= 1.0 - 0.6 * f
                if score is not None:
                    m.rollup *= 1.0 - 0.6 * f
            c.metrics |= m.metrics
            c.reasons |= m.reasons
            c.event_kinds |= m.event_kinds
            c.xids |= m.xids
            if m.onset_ms is not None and (c.onset_ms is None or m.onset_ms < c.onset_ms):
                c.onset_ms = m.onset_ms
        rep = max(anomalous, key=val)
        have = {s.series for s in c.signals}
        c.signals.extend(s for s in rep.signals[:3] if s.series not in have)
        c.events.extend(rep.events[:3])

    # -------------------------------------------------------------- ranking
    def rank(self, sym: list[str], sym_onset: int | None, top: int, symptom: str = "") -> list[Cause]:
        sym_deps = {s: set(_depends(self.topo, s, self.at, self.deps)) | set(_depends(self.topo, s, self.t_on, self.deps)) | {s} for s in sym}
        scored: list[tuple[float, str, _Cand]] = []
        for s in sym:
            # nothing below it changed: the symptom's own entity is the remaining suspect
            c0 = self.cand(s)
            if c0 is not None and c0.anomaly < 1.0:
                c0.own = max(c0.own, 1.0)
        for c in self.c.values():
            if c.id in self.fold or c.id not in self.dist:
                continue  # folded into its service, or read only to judge a common cause
            a = c.anomaly
            if a <= 0:
                continue
            c.explains = sum(1 for s in sym if c.id in sym_deps[s] or self.fold.get(s) == c.id)
            prec = 1.0
            if sym_onset is not None and c.onset_ms is not None and c.onset_ms > sym_onset + 60_000:
                prec = 0.7
            dist = 1.0 / (1.0 + 0.05 * c.distance)
            expl = 0.5 + 0.5 * c.explains / max(len(sym), 1)
            bonus = 1.3 if c.outlier_in and c.demote == 1.0 else 1.0
            scored.append((a * prec * dist * expl * bonus, c.id, c))
        scored.sort(key=lambda x: (-x[0], x[1]))
        out: list[Cause] = []
        for score, eid, c in scored[:top]:
            e = self.topo.entity(eid)
            tier = e.attributes.get("tier") if e else None
            fault = knowledge.hypothesis(
                c.kind, c.metrics, c.reasons, c.event_kinds, c.xids, tier=tier, absent=c.absent, symptom=symptom
            )
            path = self._path(eid, sym)
            for sg in c.signals[:8]:
                if not sg.query:
                    sg.query = _recheck(sg.series, sg.metric)
            for pe in c.peers[:4]:
                if not pe.query:
                    metric, group, members = self.peer_of[id(pe)]
                    pe.query = _peer_query(metric, group, self.topo, members)
            cause = Cause(
                eid,
                c.kind,
                entity_labels(self.topo, eid),
                fault,
                score,
                c.onset_ms,
                c.distance,
                c.explains,
                c.signals[:8],
                sorted(c.events, key=lambda ev: ev.ts_ms)[:8],
                c.peers[:4],
                c.members,
                path,
                knowledge.RUNBOOK.get(fault, knowledge.RUNBOOK["unknown"]),
            )
            cause.summary = _summary(cause)
            out.append(cause)
        return out

    def _walk_from(self, s: str, t: int, eid: str) -> dict[str, tuple[str, Any]]:
        """Breadth-first from ``s`` along "depends on" (``MAX_DEPTH`` hops), one layer at a time until
        ``eid`` is reached: each entity reached -> (the entity it was reached from, the edge). One
        walk per symptom entity and time, resumed for the next cause: the parents of a layer do not
        depend on where the walk stops."""
        walk = self._walks.get((s, t))
        if walk is None:
            walk = self._walks[(s, t)] = ({s: (s, None)}, [s], 0)
        parent, frontier, depth = walk
        while frontier and eid not in parent and depth < MAX_DEPTH:
            nxt = []
            for cur in frontier:
                for e, is_src in self.topo._edges_of(cur, t):
                    d = DEPENDS.get(e.kind)
                    if d is None or (d == "src") != is_src:
                        continue  # only along "cur depends on other"
                    other = e.dst if is_src else e.src
                    if other not in parent:
                        parent[other] = (cur, e)
                        nxt.append(other)
            frontier, depth = sorted(nxt), depth + 1
        self._walks[(s, t)] = (parent, frontier, depth)
        return parent

    def _path(self, eid: str, sym: list[str]) -> list[dict[str, Any]]:
        """The dependency path from the cause to a symptom entity (a walk over the neighbourhood)."""
        for s in sym:
            if eid == s:
                return []
            for t in (self.at, self.t_on):
                parent = self._walk_from(s, t, eid)
                if eid in parent:
                    steps = []
                    x = eid
                    while x != s:
                        prev, e = parent[x]
                        steps.append({"from": x, "relation": e.kind, "to": prev, "forward": e.src == x})
                        x = prev
                    return steps
        return []


def _newly_set(vals: np.ndarray, reasons: np.ndarray, base: np.ndarray, fault: np.ndarray) -> np.ndarray:
    """Which throttle-reason columns have a reason ``_Ctx._reasons`` takes (set in >= 30 % of the
    fault rows, < 10 % of the baseline rows), for all of them at once."""
    out = np.zeros(len(reasons), dtype=bool)
    cols = np.flatnonzero(reasons)
    if not len(cols):
        return out
    sub = vals[:, cols]
    b, f = sub[base], sub[fault]
    fin_b, fin_f = np.isfinite(b), np.isfinite(f)
    ib = np.where(fin_b, b, 0.0).astype(np.int64)
    jf = np.where(fin_f, f, 0.0).astype(np.int64)
    n_b, n_f = np.maximum(fin_b.sum(axis=0), 1), fin_f.sum(axis=0)
    hit = np.zeros(len(cols), dtype=bool)
    for reason in knowledge.REASON_WEIGHT:
        bit = _BITS[reason]
        frac_b = (((ib & bit) != 0) & fin_b).sum(axis=0) / n_b
        share = (((jf & bit) != 0) & fin_f).sum(axis=0) / np.maximum(n_f, 1)
        hit |= (n_f > 0) & (share >= 0.3) & (frac_b < 0.1)
    out[cols[hit]] = True
    return out


# ---------------------------------------------------------------------- column statistics
@dataclass(slots=True)
class _Stats:
    """Every column's statistics for scoring (``column_stats``), computed over whole matrices."""

    have: np.ndarray  # rows with a sample in any column
    vals: np.ndarray  # the frame's values, raw DCGM totals as rates
    base: np.ndarray  # baseline rows
    fault: np.ndarray  # fault-window rows
    F: np.ndarray  # vals of the fault rows
    za: np.ndarray  # |z| of the fault rows
    med: np.ndarray
    scale: np.ndarray
    sustained: np.ndarray
    fmed: np.ndarray
    bmax: np.ndarray
    shift: np.ndarray
    usable: np.ndarray
    gone: np.ndarray
    worth: np.ndarray  # the columns that can carry evidence
    reasons: np.ndarray
    newly: np.ndarray  # throttle-reason columns with a reason newly set (_newly_set)
    dcgm: np.ndarray
    age: np.ndarray
    metrics: frozenset[str]
    keys: frozenset[tuple[str, str | None]]  # (metric, entity) of every column


def _as_rates(frame: SignalFrame) -> np.ndarray:
    """The frame's values; DCGM counters without _total are raw totals: their per-second rate."""
    vals = frame.values.astype(np.float64, copy=True)
    mcode, mnames = _codes(frame.metrics)
    cl = np.asarray([m in knowledge.COUNTER_LIKE for m in mnames], dtype=bool)[mcode] if mnames else np.zeros(0, dtype=bool)
    if cl.any():
        sub = vals[:, cl]
        d = np.full(sub.shape, np.nan)
        d[1:] = np.diff(sub, axis=0) / (STEP_MS / 1000)
        d[d < 0] = np.nan
        vals[:, cl] = d
    return vals


def _codes(items: Iterable[Any]) -> tuple[np.ndarray, list[Any]]:
    """An integer code per item (equal items, equal codes) and the distinct items by code."""
    items = items if isinstance(items, list) else list(items)
    distinct = list(dict.fromkeys(items))  # in order of first appearance
    code = {x: i for i, x in enumerate(distinct)}
    return np.fromiter(map(code.__getitem__, items), dtype=np.int64, count=len(items)), distinct


def column_stats(
    frame: SignalFrame, start: int, at: int, t_on: int, *, vals: np.ndarray | None = None, have: np.ndarray | None = None
) -> _Stats:
    """Baseline (median/MAD of the rows before the onset) and fault-window statistics of every column,
    and which columns can carry evidence. ``have``: the rows that have data anywhere (default: in
    this frame)."""
    ts = frame.ts_ms
    if vals is None:
        vals = _as_rates(frame)
    n_cols = vals.shape[1]
    f_lo = t_on - 120_000
    base = ts < min(t_on - 180_000, at - 5 * STEP_MS)
    if base.sum() < 12:
        base = ts < start + (at - start) // 2
    fault = ts >= f_lo
    # rows after the newest sample anywhere are not "missing", they are the future
    if have is None:
        have = np.isfinite(vals).any(axis=1)
    last_row = int(np.flatnonzero(have)[-1]) if have.any() else len(ts) - 1
    fault &= np.arange(len(ts)) <= last_row
    base &= have  # before the first sample anywhere is not "missing" either
    B, F = vals[base], vals[fault]
    med, mad = _robust(B)
    scale = np.maximum.reduce([mad, 0.02 * np.abs(med), np.full_like(med, 1e-6)])
    base_cov = np.isfinite(B).mean(axis=0) if len(B) else np.zeros(n_cols)
    mcode, mnames = _codes(frame.metrics)
    ecode, enames = _codes(frame.entities)
    key = mcode * max(len(enames), 1) + ecode  # (metric, entity)
    # flat-in-history (MAD 0) signals borrow the spread their metric shows across series
    good = base_cov > 0.5
    for m in fetch.unique_ids(mcode[good & (mad == 0)]).tolist():
        idx = np.flatnonzero((mcode == m) & good)
        zero = idx[mad[idx] == 0]
        spread = float(np.median(mad[idx]))
        if spread > 0:
            scale[zero] = np.maximum(scale[zero], spread)
    # a series new in the window (a label changed: a job, a driver version) continues the
    # baseline of its sibling: same metric, same entity (the most covered one)
    usable = good.copy()
    if not usable.all():
        order = np.argsort(-base_cov)
        order = order[base_cov[order] > 0.5]
        sib_keys, first = np.unique(key[order], return_index=True)
        new = np.flatnonzero(~usable)
        if len(sib_keys):
            pos = np.minimum(np.searchsorted(sib_keys, key[new]), len(sib_keys) - 1)
            hit = sib_keys[pos] == key[new]
            jn, sj = new[hit], order[first[pos[hit]]]
            med[jn], scale[jn], usable[jn] = med[sj], scale[sj], True
    with np.errstate(all="ignore"):
        z = (F - med) / scale
    za = np.nan_to_num(np.abs(z), nan=0.0)
    nF = len(F)
    k = min(nF - 1, max(2, nF // 4)) if nF else 0
    # the k-th largest |z| (held over a quarter of the fault window)
    sustained = np.partition(za, nF - 1 - k, axis=0)[nF - 1 - k] if nF else np.zeros(n_cols)
    sustained = np.minimum(sustained, Z_CAP)
    fmed = _nanmedian(F) if nF else med.copy()
    with np.errstate(all="ignore"):
        import warnings as _w

        with _w.catch_warnings():
            _w.simplefilter("ignore", RuntimeWarning)
            bmax = np.nanmax(B, axis=0) if len(B) else med.copy()
    shift = np.abs(np.nan_to_num((fmed - med) / scale, nan=0.0))
    tail = vals[max(0, last_row - 5) : last_row + 1]
    live = np.isfinite(tail).any(axis=0)
    gone = (base_cov > 0.8) & ~live
    if gone.any():
        gone &= ~np.isin(key, key[live])  # a sibling series (a label changed) still reports
    # only these columns can carry evidence; every column still joins its entity
    dcgm = np.asarray([m.startswith("DCGM_") for m in mnames], dtype=bool)[mcode] if n_cols else np.zeros(0, dtype=bool)
    age = np.asarray([m in knowledge.AGE_METRICS for m in mnames], dtype=bool)[mcode] if n_cols else np.zeros(0, dtype=bool)
    reasons = np.asarray([m == "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" for m in mnames], dtype=bool)[mcode] if n_cols else np.zeros(0, dtype=bool)
    newly = _newly_set(vals, reasons, base, fault)
    worth = (gone & dcgm) | (usable & (age | ((sustained >= Z_ONSET) & (shift >= 2.0)))) | newly
    return _Stats(
        have, vals, base, fault, F, za, med, scale, sustained, fmed, bmax, shift, usable, gone, worth, reasons, newly, dcgm, age,
        frozenset(mnames), frozenset(zip(frame.metrics, frame.entities, strict=True)),
    )


def extend_stats(st: _Stats, more: SignalFrame, start: int, at: int, t_on: int) -> _Stats | None:
    """The statistics of ``concat(frame, more)`` from those of ``frame`` (``st``) and ``more``'s own,
    or None when they would differ from scoring the whole (``more`` brings rows with data that
    ``frame`` had none in, or shares a metric with it): then the whole is scored again."""
    vals = _as_rates(more)
    have = st.have | np.isfinite(vals).any(axis=1)
    if not np.array_equal(have, st.have) or not st.metrics.isdisjoint(more.metrics):
        return None
    s2 = column_stats(more, start, at, t_on, vals=vals, have=have)
    if not np.array_equal(s2.base, st.base) or not np.array_equal(s2.fault, st.fault):
        return None

    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b], axis=a.ndim - 1)

    return _Stats(
        have, cat(st.vals, s2.vals), st.base, st.fault, cat(st.F, s2.F), cat(st.za, s2.za), cat(st.med, s2.med),
        cat(st.scale, s2.scale), cat(st.sustained, s2.sustained), cat(st.fmed, s2.fmed), cat(st.bmax, s2.bmax),
        cat(st.shift, s2.shift), cat(st.usable, s2.usable), cat(st.gone, s2.gone), cat(st.worth, s2.worth),
        cat(st.reasons, s2.reasons), cat(st.newly, s2.newly), cat(st.dcgm, s2.dcgm), cat(st.age, s2.age), st.metrics | s2.metrics, st.keys | s2.keys,
    )


def _median(xs: list[float]) -> float:
    """``float(np.median(xs))`` of finite values (the middle one, or the mean of the middle two), without
    numpy's overhead on a short list."""
    s = sorted(xs)
    n = len(s)
    h = n // 2
    return s[h] if n % 2 else (s[h - 1] + s[h]) / 2.0


def _nanmedian(x: np.ndarray) -> np.ndarray:
    """``np.nanmedian(x, axis=0)`` (the same values, NaN for a column without any), by one sort."""
    n_rows = x.shape[0]
    if n_rows == 0:
        return np.full(x.shape[1:], np.nan)
    s = np.sort(x, axis=0)  # NaNs last
    n = n_rows - np.isnan(x).sum(axis=0)
    h = n // 2
    lo = np.where(n % 2 == 1, h, h - 1)
    lo_v = np.take_along_axis(s, np.clip(lo, 0, n_rows - 1)[None], axis=0)[0]
    hi_v = np.take_along_axis(s, np.clip(h, 0, n_rows - 1)[None], axis=0)[0]
    out = lo_v + hi_v
    out /= 2.0
    out[n == 0] = np.nan
    return out


# ---------------------------------------------------------------------- helpers
_BITS = {v: k for k, v in __import__("sightglass.analytics.kpi", fromlist=["THROTTLE_REASONS"]).THROTTLE_REASONS.items()}


def _w(s: SignalEvidence) -> float:
    return s.weight


def entity_labels(topo: Topology, eid: str) -> dict[str, str]:
    e = topo.entity(eid)
    labels = dict(e.labels) if e else {}
    if e is not None and e.kind == "service":
        models = topo.related(eid, "model-served-by-service", outgoing=False)
        if len(models) == 1:
            m = topo.entity(models[0])
            if m is not None and m.labels.get("model_name"):
                labels["model_name"] = m.labels["model_name"]
    return labels


def _selector(metric: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()) if k not in ("__name__",))
    return f"{metric}{{{inner}}}" if inner else metric


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _parse_name(name: str) -> tuple[str, dict[str, str]]:
    """``metric{a="b"}`` (a SeriesKey's text, maybe with a ``:mean`` suffix) -> metric, labels."""
    suffix = ""
    if name.endswith(":mean") or name.endswith(":rate"):
        name, suffix = name[:-5], name[-5:]
    if "{" not in name:
        return name + suffix, {}
    metric, rest = name.split("{", 1)
    labels: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', rest[:-1] if rest.endswith("}") else rest):
        labels[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return metric + suffix, labels


def _label_value(name: str, label: str) -> str | None:
    """``_parse_name(name)[1].get(label)`` without parsing every label: a name without a backslash
    has no escaped quote, so ``label="`` after ``{`` or ``,`` starts that label and its value ends
    at the next quote."""
    if "\\" in name:
        return _parse_name(name)[1].get(label)
    m = _label_re(label).search(name)
    return m.group(1) if m else None


_LABEL_RES: dict[str, re.Pattern[str]] = {}


def _label_re(label: str) -> re.Pattern[str]:
    got = _LABEL_RES.get(label)
    if got is None:
        got = _LABEL_RES[label] = re.compile(r"[{,]" + re.escape(label) + r'="([^"]*)"')
    return got


def _recheck(name: str, metric: str) -> str:
    """PromQL showing the signal as it was scored (a rate for counters, a mean for histograms)."""
    _base, labels = _parse_name(name)
    drop = _DCGM_VOLATILE if metric.startswith("DCGM_") else ("cpu", "job")
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()) if k not in drop)
    return _query_of(metric, inner)


def _query_of(metric: str, inner: str) -> str:
    """The query for a scored metric with the matchers ``inner`` (``a="b",c=~"d"``)."""

    def sel(m: str) -> str:
        return f"{m}{{{inner}}}" if inner else m

    if metric == "node_mountstats_nfs_operation_latency_seconds:mean":
        num, den = sel("node_mountstats_nfs_operations_response_time_seconds_total"), sel("node_mountstats_nfs_operations_requests_total")
        return f"rate({num}[1m]) / rate({den}[1m])"
    if metric.endswith(":mean"):
        b = metric[: -len(":mean")]
        return f"rate({sel(b + '_sum')}[1m]) / rate({sel(b + '_count')}[1m])"
    if metric == "node_cpu_seconds_total":
        return f"sum without (cpu) (rate({sel(metric)}[1m]))"
    if metric.endswith(("_total", "_count")) or metric in knowledge.COUNTER_LIKE or metric == "node_vmstat_oom_kill":
        return f"rate({sel(metric)}[1m])"
    return sel(metric)


_DCGM_VOLATILE = (
    "DCGM_FI_DRIVER_VERSION", "modelName", "pci_bus_id", "device", "hpc_job", "pod", "namespace",
    "container", "job", "instance", "err_code", "err_msg",
)


def _reason_query(name: str, reason: str) -> str:
    bit = _BITS[reason]
    base, labels = _parse_name(name)
    labels = {k: v for k, v in labels.items() if k not in _DCGM_VOLATILE}
    sel = _selector(base, labels)
    return f"{sel} % {2 * bit} >= {bit}"


def _event_query(ev: Event) -> str | None:
    e = ev.entity
    host = host_of(e, instance_is_host=False) or host_of(e)
    if ev.kind == "gpu.xid" and host:
        return _selector("DCGM_FI_DEV_XID_ERRORS", {"Hostname": host, "gpu": str(e.get("gpu", ""))})
    if ev.kind == "config.change" and host:
        return _selector("DCGM_FI_DEV_POWER_MGMT_LIMIT", {"Hostname": host})
    if ev.kind == "node.oom_kill" and host:
        return f"increase({_selector('node_vmstat_oom_kill', {'instance': host + ':9100'})}[10m])"
    if ev.kind == "ib.link_down" and host and e.get("device"):
        return _selector("node_infiniband_state_id", {"instance": host + ":9100", "device": e["device"]})
    if ev.kind == "switch.down" and e.get("switch"):
        return _selector("ib_switch_up", {"switch": e["switch"]})
    if ev.kind == "k8s.deploy" and e.get("model_name"):
        return "vllm:cache_config_info"
    return None


def _peer_query(metric: str, group: str, topo: Topology, members: list[str]) -> str:
    e = topo.entity(group)
    if e is None:
        return _query_of(metric, "")
    if metric.startswith("training_") and e.kind == "job":
        return _query_of(metric, f'slurm_job_id="{_esc(e.labels.get("slurm_job_id", group[4:]))}"')
    if e.kind == "node":
        hosts = [e.labels.get("Hostname", group[5:])]
    else:
        hosts = sorted({h for m in members if (h := _label(topo, m, "Hostname") or (m[5:] if m.startswith("node:") else None))})
    if not hosts:
        return _query_of(metric, "")
    alt = _promql_alt(hosts)
    if metric.startswith("node_"):
        return _query_of(metric, f'instance=~"({alt})(:[0-9]+)?"')
    return _query_of(metric, f'Hostname=~"{alt}"')


def _promql_alt(values: Iterable[str]) -> str:
    """An alternation regex inside a PromQL string literal (RE2 specials escaped, then ``\\``)."""
    specials = set(".^$*+?()[]{}|" + chr(92))
    bs = chr(92)
    esc = ["".join(bs + ch if ch in specials else ch for ch in v) for v in sorted(values)]
    return "|".join(x.replace(bs, bs + bs) for x in esc)


def _label(topo: Topology, eid: str, label: str) -> str | None:
    e = topo.entity(eid)
    return e.labels.get(label) if e is not None else None


def _summary(c: Cause) -> str:
    parts = []
    for s in c.signals[:2]:
        parts.append(f"{s.metric} {s.baseline:.4g} -> {s.value:.4g}" if s.role != "absent" else f"{s.metric} stopped reporting")
    for ev in c.events[:2]:
        a = ev.attributes
        detail = a.get("reason") or a.get("xid") or a.get("setting") or a.get("to") or ""
        parts.append(f"{ev.kind} {detail}".strip())
    if c.members:
        parts.append(f"common to {len(c.members)} members")
    if any(p.outlier for p in c.peers):
        parts.append("unlike its peers")
    return f"{c.kind} {c.entity_id}: {c.fault}" + (f" ({'; '.join(parts)})" if parts else "")


def keys_text(keys: Iterable[SeriesKey]) -> list[str]:
    return [k.text() for k in keys]
