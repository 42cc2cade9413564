"""Ledger inputs from the store: the fleet, who held which GPU when, idle-held time, energy.

- **Fleet**: every GPU with dcgm-exporter series (``UUID``, host, ``modelName``), present from its first
  sample (or the window start) until ``retire_after`` past its last one (a GPU whose series stop —
  fallen off the bus — still costs money until then).
- **Allocations**: the topology's time-bounded ``pod-uses-gpu`` and ``job-uses-gpu`` relations
  (:mod:`sightglass.topology`). Slurm jobs have exact bounds from their accounting events; pods have
  the first and last sample that showed them, extended by one scrape interval (a sample stands for
  the interval after it). MIG slices take the share of their profile (``3g.40gb`` → 3/7 of the GPU),
  a fractional ``nvidia_com_gpu`` request or HAMi ``nvidia_com_gpucores`` its fraction.
- **Idle-held**: the analytics KPI ``sightglass_gpu_idle_held`` where the store has it, else the same
  rule computed on the fly (:class:`sightglass.analytics.kpi.KpiComputer`, nothing written).
- **Energy**: ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ, a counter), interpolated between samples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from sightglass.analytics.kpi import KpiConfig
from sightglass.cost.ledger import Allocation, Gpu, Workload
from sightglass.model import Matcher
from sightglass.topology.graph import Topology
from sightglass.topology.infer import pod_of

SM = "DCGM_FI_PROF_SM_ACTIVE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB = "DCGM_FI_DEV_FB_USED"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
IDLE_KPI = "sightglass_gpu_idle_held"
_MIG_SLICES = re.compile(r"^(\d+)g\.")
_JOB_SUFFIX = re.compile(r"-\d+$")
MIG_COMPUTE_SLICES = 7  # A100 / H100 / H200: 7 compute slices per GPU


@dataclass(slots=True)
class GpuUsage:
    """What the store says about one GPU over the window (read once, shared by every report)."""

    gpu: Gpu
    labels: dict[str, str]
    ts: np.ndarray  # sample instants of the SM-activity series
    sm: np.ndarray  # SM-active ratio 0..1 (NaN where missing)
    energy_ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    energy_j: np.ndarray = field(default_factory=lambda: np.empty(0))  # cumulative, reset-free
    seen_before: bool = False  # reported within ``retire_after`` before the window: present from its start


@dataclass(slots=True)
class Inputs:
    start_ms: int
    end_ms: int
    step_ms: int
    fleet: list[Gpu]
    usage: dict[str, GpuUsage]
    allocations: list[Allocation]
    idle: dict[str, list[tuple[int, int]]]
    idle_source: str
    topology: Topology | None = None
    memory: dict[str, float] = field(default_factory=dict)  # GPU -> mean framebuffer used / total

    def energy(self, gpu: str, a: int, b: int) -> Fraction | None:
        u = self.usage.get(gpu)
        if u is None or len(u.energy_ts) < 2:
            return None
        e = _interp(u.energy_ts, u.energy_j, np.array([a, b], dtype=np.float64))
        return Fraction(round(max(0.0, float(e[1] - e[0]))))

    def sm_mean(self, gpu: str, a: int, b: int) -> float | None:
        u = self.usage.get(gpu)
        if u is None or not len(u.ts):
            return None
        sel = (u.ts >= a) & (u.ts < b) & ~np.isnan(u.sm)
        return float(u.sm[sel].mean()) if sel.any() else None


def _interp(ts: np.ndarray, cum: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cumulative energy at ``at``; beyond the samples, extended at the series' mean power."""
    out = np.interp(at, ts, cum)
    span = float(ts[-1] - ts[0])
    power = float(cum[-1] - cum[0]) / span if span > 0 else 0.0
    out = np.where(at > ts[-1], cum[-1] + power * (at - ts[-1]), out)
    return np.where(at < ts[0], cum[0] - power * (ts[0] - at), out)


def _gpu_ident(labels: dict[str, str]) -> tuple[str, str] | None:
    uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
    host = labels.get("Hostname") or labels.get("hostname") or ""
    if uuid:
        return f"gpu:{uuid}", host
    if host and labels.get("gpu") is not None:
        return f"gpu:{host}/{labels['gpu']}", host
    return None


def _reset_free(values: np.ndarray) -> np.ndarray:
    """A counter made monotonic: after a reset, continue from where it was."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return v
    d = np.diff(v)
    d = np.where(d < 0, v[1:], d)
    return np.concatenate([[v[0]], v[0] + np.cumsum(d)])


NEAR_MS = 120_000  # samples read before the window (interpolation, scrape intervals up to 2 min)


Evidence = dict[tuple[str, str], list[np.ndarray]]  # (GPU or MIG id, holder id) -> sample instants


def read_usage(
    store: Any, start_ms: int, end_ms: int, *, retire_after_ms: int, evidence: Evidence | None = None
) -> tuple[dict[str, GpuUsage], int]:
    """Per GPU: identity, SM activity and energy in the window; and the sampling interval (median).
    ``evidence`` (when given) collects the instants each pod or ``hpc_job`` was on each GPU / MIG slice.

    Only the window (plus ``NEAR_MS``) is read in full; for the ``retire_after`` before it the series
    catalog says which GPUs were reporting (present from the window's start), and only GPUs that
    stopped before the window have their history read (to find their last sample)."""
    lo = start_ms - NEAR_MS
    usage: dict[str, GpuUsage] = {}
    deltas: list[float] = []
    names = Matcher("__name__", "=~", f"{SM}|{UTIL}")
    series = store.select([names], lo, end_ms)
    before = store.series([[names]], start_ms - retire_after_ms, start_ms) if retire_after_ms > 0 else []
    present = {g for g in (_gpu_ident(k.label_dict()) for k in before) if g is not None}
    have: set[str] = set()
    for one in series:
        ident0 = _gpu_ident(one.key.label_dict())
        if ident0 is not None and len(one):
            have.add(ident0[0])
    gone = sorted(gid.removeprefix("gpu:") for gid, _h in present if gid not in have)
    if gone:
        pattern = "|".join(re.escape(u) for u in gone if "/" not in u)
        if pattern:
            series += store.select([names, Matcher("UUID", "=~", pattern)], start_ms - retire_after_ms, lo)
    series.sort(key=lambda sd: sd.key.metric != SM)  # SM activity first, utilisation as fallback
    for sd in series:
        labels = sd.key.label_dict()
        ident = _gpu_ident(labels)
        if ident is None or not len(sd):
            continue
        gid, host = ident
        ok = ~sd.stale
        ts, vals = sd.ts_ms[ok], sd.values[ok]
        if sd.key.metric == UTIL:
            vals = vals / 100.0
        if evidence is not None and len(ts):
            target = f"mig:{gid[4:]}/{labels['GPU_I_ID']}" if labels.get("GPU_I_ID") else gid
            pod = pod_of(labels)
            holders = [f"pod:{pod[0]}/{pod[1]}"] if pod else []
            holders += [f"job:{j.strip()}" for j in labels.get("hpc_job", "").split(",") if j.strip()]
            for h in holders:
                evidence.setdefault((target, h), []).append(ts)
        if labels.get("GPU_I_ID"):
            # a MIG slice: evidence that its parent GPU (the unit of cost) exists, not its activity
            vals = np.full(len(ts), np.nan)
        if len(ts) > 1 and len(deltas) < 16:  # the scrape interval: a few series say it
            deltas.append(float(np.median(np.diff(ts))))
        u = usage.get(gid)
        if u is None:
            gpu = Gpu(gid, f"node:{host}" if host else "", labels.get("modelName", ""))
            usage[gid] = GpuUsage(gpu, labels, ts, vals)
        elif u.gpu.model_name and sd.key.metric == UTIL and len(u.ts):
            continue  # already has SM activity
        else:
            # label churn (pod / hpc_job changed): the same GPU in several series, merged in time
            t = np.concatenate([u.ts, ts])
            v = np.concatenate([u.sm, vals])
            order = np.lexsort((np.isnan(v), t))  # by time; a real reading before a NaN one
            t, v = t[order], v[order]
            keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.empty(0, dtype=bool)
            u.ts, u.sm = t[keep], v[keep]
            if not u.gpu.model_name and labels.get("modelName"):
                u.gpu = Gpu(gid, u.gpu.node, labels["modelName"])
    step = int(np.median(deltas)) if deltas else 10_000
    for gid, _host in present:
        if gid in usage:
            usage[gid].seen_before = True
    for sd in store.select([Matcher("__name__", "=", ENERGY)], lo, end_ms + step):
        ident = _gpu_ident(sd.key.label_dict())
        if ident is None or ident[0] not in usage or sd.key.label_dict().get("GPU_I_ID"):
            continue
        u = usage[ident[0]]
        ok = ~sd.stale
        ts, mj = sd.ts_ms[ok], sd.values[ok]
        if len(u.energy_ts):
            ts = np.concatenate([u.energy_ts, ts])
            mj = np.concatenate([u.energy_j * 1000.0, mj])
            order = np.argsort(ts, kind="stable")
            ts, mj = ts[order], mj[order]
        u.energy_ts = ts
        u.energy_j = _reset_free(mj) / 1000.0
    return usage, step


FB_FREE = "DCGM_FI_DEV_FB_FREE"


def memory_fractions(store: Any, start_ms: int, end_ms: int) -> dict[str, float]:
    """Mean framebuffer used / (used + free) per GPU over the window (MIG slices excluded)."""
    used: dict[str, list[float]] = {}
    free: dict[str, list[float]] = {}
    for sd in store.select([Matcher("__name__", "=~", f"{FB}|{FB_FREE}")], start_ms, end_ms):
        lab = sd.key.label_dict()
        ident = _gpu_ident(lab)
        vals = sd.values[~sd.stale]
        if ident is None or lab.get("GPU_I_ID") or not len(vals):
            continue
        (used if sd.key.metric == FB else free).setdefault(ident[0], []).append(float(np.nanmean(vals)))
    out = {}
    for gid, u in used.items():
        f = free.get(gid)
        if f:
            total = max(u) + max(f)
            if total > 0:
                out[gid] = min(1.0, max(u) / total)
    return out


def fleet_of(usage: dict[str, GpuUsage], start_ms: int, end_ms: int, retire_after_ms: int) -> list[Gpu]:
    out = []
    for gid in sorted(usage):
        u = usage[gid]
        if not len(u.ts):
            continue
        first = start_ms if u.seen_before else int(u.ts[0])
        last = int(u.ts[-1])
        if last + retire_after_ms <= start_ms or first >= end_ms:
            continue
        out.append(
            Gpu(gid, u.gpu.node, u.gpu.model_name, max(first, start_ms), min(end_ms, last + retire_after_ms))
        )
        u.gpu = out[-1]
    return out


def idle_intervals(
    store: Any,
    usage: dict[str, GpuUsage],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    *,
    kpi: KpiConfig | None = None,
) -> tuple[dict[str, list[tuple[int, int]]], str]:
    """Idle-held ``[a, b)`` intervals per GPU: from the stored KPI, else computed on the fly."""
    out: dict[str, list[tuple[int, int]]] = {}
    stored = store.select([Matcher("__name__", "=", IDLE_KPI)], start_ms - step_ms, end_ms)
    if stored:
        for sd in stored:
            ident = _gpu_ident(sd.key.label_dict())
            if ident is None:
                continue
            _flags_to_intervals(out.setdefault(ident[0], []), sd.ts_ms, sd.values, step_ms)
        return out, "stored KPI sightglass_gpu_idle_held"
    cfg = kpi or KpiConfig(step_ms=step_ms)
    t0 = start_ms - cfg.idle_for_ms
    data = _kpi_input(store, t0, end_ms, cfg.step_ms)
    for gid, (grid, flags) in idle_flags(data, t0, end_ms, cfg).items():
        key = f"gpu:{gid[0]}"
        if key in usage:
            _flags_to_intervals(out.setdefault(key, []), grid, flags, cfg.step_ms)
    return out, "computed (the KPI rule of sightglass.analytics.kpi; no stored KPI in the window)"


def idle_flags(
    data: dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]],
    start_ms: int,
    end_ms: int,
    cfg: KpiConfig,
) -> dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]]:
    """``sightglass_gpu_idle_held`` as :meth:`KpiComputer.compute` defines it, vectorised per GPU:
    allocated, framebuffer >= ``held_memory_mib``, SM activity < ``idle_sm_ratio`` for ``idle_for_ms``
    (missing samples neither count nor reset the run). GPU -> (sample instants, 0/1 flags)."""
    step = cfg.step_ms
    t0 = start_ms - start_ms % step
    grid = t0 + np.arange(int((end_ms - t0) // step) + 1, dtype=np.int64) * step
    sm, util, fb = data.get(SM, {}), data.get(UTIL, {}), data.get(FB, {})
    out: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
    for gid in sorted(set(sm) | set(util)):
        if gid[1]:
            continue  # MIG slices: the KPI is per GPU
        labels, v = sm[gid] if gid in sm else (util[gid][0], util[gid][1] / 100.0)
        allocated = any(labels.get(k) for k in ("pod", "exported_pod", "pod_name", "hpc_job"))
        mem = fb.get(gid, (labels, np.full(len(grid), np.nan)))[1]
        ok = ~np.isnan(v)
        vv, mm = v[ok], mem[ok]
        held = allocated & (mm >= cfg.held_memory_mib) & (vv < cfg.idle_sm_ratio)
        idx = np.arange(len(held))
        last_reset = np.maximum.accumulate(np.where(~held, idx, -1)) if len(held) else idx
        run = idx - last_reset
        out[gid] = (grid[ok], (run * step >= cfg.idle_for_ms).astype(np.float64))
    return out


def _flags_to_intervals(acc: list[tuple[int, int]], ts: np.ndarray, v: np.ndarray, step: int) -> None:
    for t, x in zip(ts.tolist(), v.tolist(), strict=True):
        if x == x and x >= 0.5:
            a, b = int(t), int(t) + step
            if acc and acc[-1][1] >= a:
                acc[-1] = (acc[-1][0], max(acc[-1][1], b))
            else:
                acc.append((a, b))


def _kpi_input(
    store: Any, start_ms: int, end_ms: int, step: int
) -> dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]]:
    """The shape :meth:`KpiComputer.compute` takes: metric -> GPU -> (labels, values on the grid)."""
    t0 = start_ms - start_ms % step
    n = int((end_ms - t0) // step) + 1
    out: dict[str, dict[tuple[str, ...], tuple[dict[str, str], np.ndarray]]] = {}
    for sd in store.select([Matcher("__name__", "=~", f"{SM}|{UTIL}|{FB}")], t0, end_ms):
        labels = sd.key.label_dict()
        uuid = labels.get("UUID") or labels.get("uuid")
        host = labels.get("Hostname") or labels.get("hostname") or ""
        gid = (uuid or f"{host}/{labels.get('gpu', '')}", labels.get("GPU_I_ID", ""))
        v = np.full(n, np.nan)
        idx = np.rint((sd.ts_ms - t0) / step).astype(np.int64)
        ok = (idx >= 0) & (idx < n) & ~sd.stale
        v[idx[ok]] = sd.values[ok]
        per = out.setdefault(sd.key.metric, {})
        if gid in per:
            old_labels, old = per[gid]
            per[gid] = (labels if np.isfinite(v[-1]) else old_labels, np.where(np.isnan(v), old, v))
        else:
            per[gid] = (labels, v)
    return out


def held_intervals(samples: list[np.ndarray], step_ms: int) -> list[tuple[int, int]]:
    """Runs of samples (one missed scrape tolerated) as ``[first, last + step)`` intervals."""
    ts = np.unique(np.concatenate(samples)) if samples else np.empty(0, dtype=np.int64)
    if not len(ts):
        return []
    breaks = np.flatnonzero(np.diff(ts) > 2 * step_ms)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(ts) - 1]])
    return [(int(ts[a]), int(ts[b]) + step_ms) for a, b in zip(starts, ends, strict=True)]


def allocations_from_topology(
    topo: Topology,
    store: Any,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    evidence: Evidence | None = None,
) -> list[Allocation]:
    """Who held which GPU when, from the topology's time-bounded relations. Sampled relations (pods,
    ``hpc_job`` labels) are cut to the runs of samples that showed them in the window (``evidence``),
    so a pod gone for an hour and back is not charged for the gap."""
    shares = _requested_shares(store, start_ms, end_ms)
    workloads: dict[str, Workload] = {}
    out: list[Allocation] = []
    for edge in list(topo.edges.values()):
        if edge.kind not in ("pod-uses-gpu", "job-uses-gpu"):
            continue
        if edge.exact:
            a, b = edge.start_ms, edge.end_ms if edge.end_ms is not None else end_ms
            conf = "high"
        else:
            a = edge.start_ms
            b = (edge.end_ms if edge.end_ms is not None else end_ms) + step_ms
            conf = "medium"
        if b <= start_ms or a >= end_ms:
            continue
        gpu, share, source = edge.dst, None, "exclusive"
        if gpu.startswith("mig:"):
            parents = topo.related(gpu, "mig-in-gpu", outgoing=True, at_ms=edge.end_ms)
            ent = topo.entity(gpu)
            profile = str(ent.attributes.get("profile", "")) if ent else ""
            m = _MIG_SLICES.match(profile)
            if not parents:
                continue
            gpu = parents[0]
            if m:
                share, source = Fraction(int(m.group(1)), MIG_COMPUTE_SLICES), "mig-profile"
            else:
                share, source, conf = Fraction(1, MIG_COMPUTE_SLICES), "mig-unknown-profile", "low"
        elif edge.src in shares:
            share, source = shares[edge.src]
            conf = "medium"
        w = workloads.get(edge.src)
        if w is None:
            w = workloads[edge.src] = describe_workload(topo, edge.src, edge.end_ms)
        spans = [(a, b)]
        if not edge.exact and evidence is not None and (edge.dst, edge.src) in evidence:
            spans = held_intervals(evidence[(edge.dst, edge.src)], step_ms)
        for lo, hi in spans:
            out.append(Allocation(w, gpu, lo, hi, share, source, conf))
    return out


def describe_workload(topo: Topology, wid: str, at_ms: int | None) -> Workload:
    """Team, project, model and service of a pod or job, from the topology."""
    ent = topo.entity(wid)
    kind = wid.split(":", 1)[0]
    team = (topo.owner(wid, at_ms) or "").removeprefix("team:")
    if kind == "pod":
        ns = ent.labels.get("namespace", "") if ent else ""
        name = ent.labels.get("pod", wid) if ent else wid
        services = topo.related(wid, "service-has-pod", outgoing=False, at_ms=at_ms)
        models = topo.related(wid, "model-served-by-pod", outgoing=False, at_ms=at_ms)
        service = services[0].removeprefix("service:") if services else ""
        model = models[0].removeprefix("model:") if models else ""
        if not team and services:
            team = (topo.owner(services[0], at_ms) or "").removeprefix("team:")
        return Workload(wid, "pod", team, ns, model, service, name)
    if kind == "job":
        attrs = ent.attributes if ent else {}
        name = str(attrs.get("job_name", "")) or wid.removeprefix("job:")
        team = team or str(attrs.get("account", ""))
        project = _JOB_SUFFIX.sub("", name) if attrs.get("job_name") else str(attrs.get("account", ""))
        return Workload(wid, "job", team, project, "", "", name)
    return Workload(wid, kind, team, "", "", "", wid)


PROC_MEM = "sightglass_gpu_process_memory_used_bytes"
PROC_SM = "sightglass_gpu_process_sm_utilization_ratio"


def process_allocations(
    store: Any, start_ms: int, end_ms: int, step_ms: int
) -> tuple[list[Allocation], dict[tuple[str, str], float]]:
    """From the node agent's per-process series (``sightglass_gpu_process_*``, NVML): allocations of
    *bare* processes (neither in a Slurm job nor in a pod) and each workload's measured SM activity per
    GPU (processes of a pod summed via ``pod_uid``), for splitting shared GPUs by measurement."""
    uid_pod: dict[str, str] = {}
    for key in store.series([[Matcher("__name__", "=~", "kube_pod_info|kube_pod_status_phase")]], None, None):
        lab = key.label_dict()
        if lab.get("uid") and lab.get("pod") and lab.get("namespace"):
            uid_pod[lab["uid"]] = f"pod:{lab['namespace']}/{lab['pod']}"
    sel = [Matcher("__name__", "=~", f"{PROC_MEM}|{PROC_SM}")]
    spans: dict[tuple[str, str], list[int]] = {}
    meta: dict[tuple[str, str], dict[str, str]] = {}
    sm_sum: dict[tuple[str, str], float] = {}
    for sd in store.select(sel, start_ms - step_ms, end_ms):
        lab = sd.key.label_dict()
        ident = _gpu_ident(lab)
        ok = ~sd.stale & ~np.isnan(sd.values)
        if ident is None or not ok.any() or not lab.get("pid"):
            continue
        gid = ident[0]
        if lab.get("slurm_job"):
            wid = f"job:{lab['slurm_job']}"
        elif lab.get("pod_uid"):
            wid = uid_pod.get(lab["pod_uid"], "")
            if not wid:
                continue
        else:
            wid = f"process:{ident[1]}/{lab['pid']}"
        ts = sd.ts_ms[ok]
        if sd.key.metric == PROC_SM:
            k = (gid, wid)
            sm_sum[k] = sm_sum.get(k, 0.0) + float(sd.values[ok].mean())
        elif wid.startswith("process:"):
            sp = spans.setdefault((gid, wid), [int(ts[0]), int(ts[-1])])
            sp[0], sp[1] = min(sp[0], int(ts[0])), max(sp[1], int(ts[-1]))
            meta[(gid, wid)] = lab
    allocs = []
    for (gid, wid), (a, b) in sorted(spans.items()):
        lab = meta[(gid, wid)]
        user = lab.get("user", "")
        w = Workload(wid, "process", "", user, "", "", lab.get("command", "") or wid)
        allocs.append(Allocation(w, gid, a, b + step_ms, None, "exclusive", "medium"))
    return allocs, sm_sum


def apply_measured_shares(
    allocations: list[Allocation], measured: dict[tuple[str, str], float]
) -> list[Allocation]:
    """Where several holders share a GPU without given shares and every one of them has a measured
    SM activity there, split by it (``measured``, confidence medium) instead of equally."""
    by_gpu: dict[str, list[int]] = {}
    for i, al in enumerate(allocations):
        if al.share is None:
            by_gpu.setdefault(al.gpu, []).append(i)
    out = list(allocations)
    for gid, idx in by_gpu.items():
        holders = sorted({allocations[i].workload.id for i in idx})
        if len(holders) < 2 or any((gid, h) not in measured for h in holders):
            continue
        lo = max(allocations[i].start_ms for i in idx)
        hi = min(allocations[i].end_ms for i in idx)
        if any(hi - lo < 0.9 * (allocations[i].end_ms - allocations[i].start_ms) for i in idx):
            continue  # not one shared period: holders that came and went keep the equal split
        total = sum(measured[(gid, h)] for h in holders)
        if total <= 0:
            continue
        shares = {h: Fraction(measured[(gid, h)] / total).limit_denominator(100_000) for h in holders[:-1]}
        shares[holders[-1]] = max(Fraction(0), 1 - sum(shares.values(), Fraction(0)))
        for i in idx:
            al = allocations[i]
            out[i] = Allocation(
                al.workload, al.gpu, al.start_ms, al.end_ms, shares[al.workload.id], "measured", "medium"
            )
    return out


def _requested_shares(store: Any, start_ms: int, end_ms: int) -> dict[str, tuple[Fraction, str]]:
    """Fractional GPU requests per pod (kube-state-metrics): ``nvidia_com_gpu`` < 1 or HAMi cores."""
    out: dict[str, tuple[Fraction, str]] = {}
    sel = [
        Matcher("__name__", "=", "kube_pod_container_resource_requests"),
        Matcher("resource", "=~", "nvidia_com_gpu|nvidia_com_gpucores"),
    ]
    for sd in store.select(sel, start_ms, end_ms):
        lab = sd.key.label_dict()
        vals = sd.values[~sd.stale]
        if not len(vals) or not lab.get("pod") or not lab.get("namespace"):
            continue
        v = float(vals[-1])
        pid = f"pod:{lab['namespace']}/{lab['pod']}"
        if lab["resource"] == "nvidia_com_gpucores" and 0 < v < 100:
            out[pid] = (Fraction(v / 100).limit_denominator(1000), "request-gpucores")
        elif lab["resource"] == "nvidia_com_gpu" and 0 < v < 1 and pid not in out:
            out[pid] = (Fraction(v).limit_denominator(1000), "request-fraction")
    return out


def gather(
    store: Any,
    start_ms: int,
    end_ms: int,
    *,
    retire_after_ms: int = 3_600_000,
    topology: Topology | None = None,
    extra_allocations: Iterable[Allocation] = (),
) -> Inputs:
    """Everything :func:`~sightglass.cost.ledger.build_ledger` needs for ``[start_ms, end_ms)``."""
    from sightglass.topology.infer import TopologyBuilder

    evidence: Evidence = {}
    usage, step = read_usage(store, start_ms, end_ms, retire_after_ms=retire_after_ms, evidence=evidence)
    fleet = fleet_of(usage, start_ms, end_ms, retire_after_ms)
    topo = topology if topology is not None else TopologyBuilder().update(store)
    allocs = allocations_from_topology(topo, store, start_ms, end_ms, step, evidence)
    procs, measured = process_allocations(store, start_ms, end_ms, step)
    allocs = apply_measured_shares(allocs + procs, measured)
    allocs.extend(extra_allocations)
    idle, src = idle_intervals(store, usage, start_ms, end_ms, step, kpi=KpiConfig(step_ms=step))
    memory = memory_fractions(store, start_ms, end_ms)
    return Inputs(start_ms, end_ms, step, fleet, usage, allocs, idle, src, topo, memory)
