"""Entity anomalies: per-series baselines, peer comparison and change points, rolled up the topology.

For every signal column (``signals.SignalFrame``) a :class:`~sightglass.analytics.baseline.RobustBaseline`
gives a robust z per row; a column *fires* when ``|z|`` stays above ``z_threshold`` for
``persist`` rows. A firing column flags the entity it is about. Then common causes are found
bottom-up: when at least ``common_fraction`` of a peer group (the GPUs of a node or a job, the NICs
of a node, the nodes of a rack or a leaf switch, the leaves of a spine) is flagged, the group's
entity is flagged instead of its members, unless a member is also an outlier among its peers
(``peer_threshold``), which keeps it. Job starts and ends reset the baselines of what they touch:
a new workload is a new regime, not an anomaly.

Everything here is a pure function of the frames, the topology and the events it is given.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.analytics.baseline import BaselineConfig, RobustBaseline
from sightglass.analytics.changepoint import ChangePoint, ChangePointConfig, CusumDetector
from sightglass.analytics.peers import PeerConfig, peer_zscores
from sightglass.analytics.signals import SignalFrame
from sightglass.model import Event
from sightglass.topology.graph import Topology

SOURCE = "sightglass.analytics"


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    changepoint: ChangePointConfig = field(default_factory=ChangePointConfig)
    peers: PeerConfig = field(default_factory=PeerConfig)
    z_threshold: float = 8.0
    persist: int = 3
    peer_threshold: float = 6.0
    common_fraction: float = 0.6
    clear_after: int = 30  # rows without firing before an entity's anomaly closes
    regime_events: tuple[str, ...] = ("job.start", "job.end")
    # error signals are zero whatever runs: a job change never restarts their baselines
    error_markers: tuple[str, ...] = ("XID", "ECC", "REMAP", "CRC", "REPLAY", "error", "downed", "oom_kill")
    # optionally fire when a value leaves the fit window's [min, max] by range_factor x that range
    # (0: off; it fires on trending signals such as a training loss)
    range_factor: float = 0.0
    # age signals (time since the last good run) climb to a ceiling, the period, then drop: past
    # (1 + age_margin) x their normal ceiling (the highest value seen while not firing) they are late
    age_markers: tuple[str, ...] = ("freshness", "_age_", "staleness", "_lag_")
    age_margin: float = 0.5
    absent_rows: int = 6  # an entity's signal missing this long while its peers still report it
    absent_prefixes: tuple[str, ...] = ("DCGM_",)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An entity behaving unlike its baseline (and, where it has peers, unlike them)."""

    entity: str
    kind: str
    onset_ms: int
    detected_ms: int
    score: float
    scope: str  # series | peer | common-cause
    signals: tuple[str, ...]
    members: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "kind": self.kind,
            "onset_ms": self.onset_ms,
            "detected_ms": self.detected_ms,
            "score": round(self.score, 2),
            "scope": self.scope,
            "signals": list(self.signals),
            "members": list(self.members),
        }

    def to_event(self) -> Event:
        return Event(
            ts_ms=self.onset_ms,
            kind="anomaly.entity",
            entity={"entity": self.entity, "kind": self.kind},
            attributes={k: v for k, v in self.to_dict().items() if k not in ("entity", "kind")},
            severity="warning",
            source=SOURCE,
        )


@dataclass(slots=True)
class AnomalyReport:
    anomalies: list[Anomaly] = field(default_factory=list)
    change_points: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"anomalies": [a.to_dict() for a in self.anomalies], "change_points": self.change_points}

    def to_events(self) -> list[Event]:
        evs = [a.to_event() for a in self.anomalies]
        for cp in self.change_points:
            evs.append(
                Event(
                    ts_ms=int(cp["onset_ms"]),
                    kind="anomaly.changepoint",
                    entity={"entity": cp.get("entity") or "", "series": cp["name"]},
                    attributes={k: cp[k] for k in ("detected_ms", "direction", "magnitude")},
                    severity="info",
                    source=SOURCE,
                )
            )
        return evs


# group kind -> (relation, the group entity is the relation's source)
_GROUPS: tuple[tuple[str, str, bool], ...] = (
    ("node", "gpu-in-node", False),
    ("node", "nic-in-node", False),
    ("job", "job-uses-gpu", True),
    ("rack", "node-in-rack", False),
    ("switch", "node-links-switch", False),
    ("switch", "switch-links-switch", False),
    ("service", "service-has-pod", True),
)


class FactoryAnomalyDetector:
    """Stateful over successive frames: ``fit(history)`` once, then ``detect(frame)`` per batch."""

    def __init__(self, topology: Topology | None = None, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self.topology = topology or Topology()
        self.baseline = RobustBaseline(self.config.baseline)
        self.cusum = CusumDetector(self.config.changepoint)
        self.columns: dict[str, int] = {}
        self.names: list[str] = []
        self.metrics: list[str] = []
        self.entities: list[str | None] = []
        self.run = np.zeros(0, dtype=np.int64)
        self.onset = np.zeros(0, dtype=np.int64)
        self.open: dict[str, int] = {}  # entity -> rows since it last fired
        self.reported: set[str] = set()
        self._members_cache: list[tuple[str, list[str]]] | None = None
        self._em_names: dict[int, tuple[str | None, str]] = {}
        self.fitted = False
        self.lo = np.zeros(0)
        self.hi = np.zeros(0)
        self.is_age = np.zeros(0, dtype=bool)
        self.em_index: dict[tuple[str | None, str], int] = {}
        self.metric_index: dict[str, int] = {}
        self.em = np.zeros(0, dtype=np.int64)
        self.metric_id = np.zeros(0, dtype=np.int64)
        self.em_seen = np.zeros(0, dtype=bool)
        self.em_gone = np.zeros(0, dtype=np.int64)
        self.em_metric = np.zeros(0, dtype=np.int64)
        self.em_watch = np.zeros(0, dtype=bool)
        self.last_seen = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ columns
    def _align(self, frame: SignalFrame) -> np.ndarray:
        """Map the frame's columns onto this detector's (new signals get new columns)."""
        idx = np.empty(len(frame.names), dtype=np.int64)
        for j, name in enumerate(frame.names):
            c = self.columns.get(name)
            if c is None:
                c = self.columns[name] = len(self.names)
                self.names.append(name)
                self.metrics.append(frame.metrics[j])
                self.entities.append(frame.entities[j])
            idx[j] = c
        n = len(self.names)
        self._index_em()
        if self.fitted and self.baseline.n_series < n:
            self._inherit(self.baseline.n_series, n)
        if self.fitted and self.lo.shape[0] < n:
            extra_lo = n - self.lo.shape[0]
            self.lo = np.concatenate([self.lo, np.full(extra_lo, np.nan)])
            self.hi = np.concatenate([self.hi, np.full(extra_lo, np.nan)])
            self.is_age = np.concatenate([self.is_age, np.zeros(extra_lo, dtype=bool)])
        if self.run.shape[0] < n:
            extra = n - self.run.shape[0]
            self.run = np.concatenate([self.run, np.zeros(extra, dtype=np.int64)])
            self.onset = np.concatenate([self.onset, np.zeros(extra, dtype=np.int64)])
        return idx

    def _inherit(self, first_new: int, n: int) -> None:
        """A new series of an entity's known signal (a label changed: a job id, an XID code)
        continues the baseline of its sibling instead of warming up: an XID series appearing
        with 79 is then scored against the 0 its sibling showed."""
        b = self.baseline
        b.grow(n)
        siblings: dict[tuple[str | None, str], int] = {}
        for j in range(first_new):
            siblings.setdefault((self.entities[j], self.metrics[j]), j)
        for j in range(first_new, n):
            sib = siblings.get((self.entities[j], self.metrics[j]))
            if sib is not None and self.entities[j] is not None:
                b.loc[j], b.scale[j], b.count[j], b.min_scale[j] = (
                    b.loc[sib],
                    b.scale[sib],
                    b.count[sib],
                    b.min_scale[sib],
                )

    def _matrix(self, frame: SignalFrame) -> np.ndarray:
        idx = self._align(frame)
        m = np.full((frame.values.shape[0], len(self.names)), np.nan)
        m[:, idx] = frame.values
        return m

    # ------------------------------------------------------------------ API
    def fit(self, frame: SignalFrame) -> FactoryAnomalyDetector:
        """Start baselines from a stretch of normal history."""
        if frame.values.ndim != 2 or frame.values.shape[0] != frame.ts_ms.shape[0]:
            raise ValueError("frame values must be rows x columns, one timestamp per row")
        self._fit_core(frame)
        return self

    def detect(self, frame: SignalFrame, events: Sequence[Event] = ()) -> AnomalyReport:
        """Score a new batch of rows; the anomalies that *opened* in it and its change points."""
        if frame.values.ndim != 2 or frame.values.shape[0] != frame.ts_ms.shape[0]:
            raise ValueError("frame values must be rows x columns, one timestamp per row")
        return self._detect_core(frame, events)

    # ------------------------------------------------------------------ cores
    def _fit_core(self, frame: SignalFrame) -> None:
        m = self._matrix(frame)
        self.baseline.fit(m, frame.ts_ms)  # the timestamps seed a seasonal profile when configured
        self.cusum.fit(m.shape[1])
        self.fitted = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.lo, self.hi = np.nanmin(m, axis=0), np.nanmax(m, axis=0)
        self.is_age = np.array(
            [any(a in mt for a in self.config.age_markers) for mt in self.metrics], dtype=bool
        )
        if m.shape[0]:
            self.em_seen[self.em[np.isfinite(m[-1])]] = True
        # a series flat in the fit window (MAD 0: a state flag, a sparse counter) borrows half the spread its
        # metric shows across all series: a pipeline's "running" flipping is not an anomaly when
        # the other pipelines flip too; an XID counter no GPU ever moved keeps a tiny floor
        by_metric: dict[str, list[int]] = {}
        for j, met in enumerate(self.metrics):
            by_metric.setdefault(met, []).append(j)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for cols in by_metric.values():
                idx = np.asarray(cols, dtype=np.int64)
                block = m[:, idx]
                med = np.nanmedian(block, axis=0)
                flat = np.nanmedian(np.abs(block - med), axis=0) == 0  # MAD 0: flat or sparse
                if flat.any():
                    pooled = float(np.nanstd(block))
                    if np.isfinite(pooled) and pooled > 0:
                        self.baseline.set_min_scale(idx[flat], np.full(int(flat.sum()), 0.5 * pooled))

    def _regime_resets(self, events: Sequence[Event], ts_ms: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(row, columns) whose baselines restart at that row: a job started or ended there."""
        out: list[tuple[int, np.ndarray]] = []
        if not events or not len(ts_ms):
            return out
        by_entity: dict[str, list[int]] = {}
        for j, e in enumerate(self.entities):
            if e is not None:
                by_entity.setdefault(e, []).append(j)
        topo = self.topology
        for ev in events:
            if ev.kind not in self.config.regime_events:
                continue
            if not (ts_ms[0] <= ev.ts_ms <= ts_ms[-1] + 1):
                continue
            job = f"job:{ev.entity.get('slurm_job_id', '')}"
            touched = {job}
            for host in ev.attributes.get("nodes", []) or []:
                node = f"node:{host}"
                touched.add(node)
                for key in topo._in.get(node, ()):
                    touched.add(key[0])  # its GPUs and NICs
            cols = [
                c
                for ent in touched
                for c in by_entity.get(ent, [])
                if not any(mk in self.metrics[c] for mk in self.config.error_markers)
            ]
            if cols:
                row = int(np.searchsorted(ts_ms, ev.ts_ms))
                out.append((row, np.asarray(cols, dtype=np.int64)))
        return out

    def _detect_core(self, frame: SignalFrame, events: Sequence[Event]) -> AnomalyReport:
        c = self.config
        m = self._matrix(frame)
        ts = frame.ts_ms
        self._members_cache = None
        resets = self._regime_resets(events, ts)
        # score row blocks between regime resets
        z = np.full(m.shape, np.nan)
        cuts = sorted({0, m.shape[0], *[r for r, _ in resets]})
        for a, b in itertools.pairwise(cuts):
            for r, cols in resets:
                if r == a:
                    self.baseline.reset(cols)
                    self.run[cols] = 0
                    self.lo[cols] = np.nan
                    self.hi[cols] = np.nan
            if b > a:
                z[a:b] = self.baseline.detect(m[a:b], ts[a:b]).z
        cps = self.cusum.detect(z, ts)
        groups = self._peer_groups()
        peer_z = peer_zscores(m, [g for _, _, g in groups], c.peers) if groups else np.full(m.shape, np.nan)
        report = AnomalyReport()
        for cp in cps:
            report.change_points.append(self._cp_dict(cp))
        for i in range(m.shape[0]):
            zi = np.abs(z[i])
            span = (self.hi - self.lo) * c.range_factor
            with np.errstate(invalid="ignore"):
                out_of_range = (span > 0) & ((m[i] > self.hi + span) | (m[i] < self.lo - span)) & ~self.is_age
            with np.errstate(invalid="ignore"):
                late = self.is_age & (self.hi > 0) & (m[i] > self.hi * (1 + c.age_margin))
            zi = np.where((out_of_range | late) & ~(zi > c.z_threshold), c.z_threshold + 0.5, zi)
            hot = zi > c.z_threshold
            with np.errstate(invalid="ignore"):
                grow = self.is_age & ~hot & (m[i] > self.hi)
            self.hi = np.where(grow, m[i], self.hi)
            self.onset = np.where(hot & (self.run == 0), int(ts[i]), self.onset)
            self.run = np.where(hot, self.run + 1, 0)
            firing = np.flatnonzero(self.run >= c.persist)
            self._row(int(ts[i]), firing, zi, np.abs(peer_z[i]), report, self._absent(m[i], int(ts[i])))
        return report

    def _index_em(self) -> None:
        """Index (entity, metric) pairs: the unit of "this entity stopped reporting this"."""
        n = len(self.names)
        for j in range(self.em.shape[0], n):
            emk = (self.entities[j], self.metrics[j])
            if emk not in self.em_index:
                self.em_index[emk] = len(self.em_index)
            if self.metrics[j] not in self.metric_index:
                self.metric_index[self.metrics[j]] = len(self.metric_index)
        if self.em.shape[0] == n:
            return
        self.em = np.asarray(
            [self.em_index[(e, mt)] for e, mt in zip(self.entities, self.metrics, strict=True)],
            dtype=np.int64,
        )
        self.metric_id = np.asarray([self.metric_index[mt] for mt in self.metrics], dtype=np.int64)
        n_em = len(self.em_index)
        extra = n_em - self.em_seen.shape[0]
        self.em_seen = np.concatenate([self.em_seen, np.zeros(extra, dtype=bool)])
        self.em_gone = np.concatenate([self.em_gone, np.zeros(extra, dtype=np.int64)])
        self.em_metric = np.zeros(n_em, dtype=np.int64)
        self.em_metric[self.em] = self.metric_id
        self.em_watch = np.zeros(n_em, dtype=bool)
        for (e, mt), k in self.em_index.items():
            self.em_watch[k] = e is not None and mt.startswith(self.config.absent_prefixes)
        self._em_names = {k: key for key, k in self.em_index.items()}

    def _absent(self, row: np.ndarray, ts: int) -> list[tuple[str, str, int]]:
        """(entity, metric, onset) of watched signals an entity stopped reporting while the
        metric is still reported by others (a GPU that fell off the bus)."""
        have = np.isfinite(row)
        present = np.zeros(self.em_seen.shape[0], dtype=bool)
        present[self.em[have]] = True
        metric_live = np.zeros(len(self.metric_index), dtype=bool)
        metric_live[self.metric_id[have]] = True
        gone = self.em_watch & self.em_seen & ~present & metric_live[self.em_metric]
        self.em_gone = np.where(gone, self.em_gone + 1, 0)
        self.em_seen |= present
        out = []
        for k in np.flatnonzero(self.em_gone >= self.config.absent_rows):
            ent, met = self._em_names[int(k)]
            if ent is not None:
                out.append((ent, met, ts - int(self.em_gone[k] - 1) * 10_000))
        return out

    def _cp_dict(self, cp: ChangePoint) -> dict[str, Any]:
        return {**cp.to_dict(), "name": self.names[cp.series], "entity": self.entities[cp.series]}

    def _peer_groups(self) -> list[tuple[str, str, np.ndarray]]:
        """(group entity, metric, columns): the same metric over the members of each peer group."""
        topo = self.topology
        by_entity: dict[str, dict[str, list[int]]] = {}
        for j, (e, met) in enumerate(zip(self.entities, self.metrics, strict=True)):
            if e is not None:
                by_entity.setdefault(e, {}).setdefault(met, []).append(j)
        out: list[tuple[str, str, np.ndarray]] = []
        for gid, members in topo.peer_groups().items():
            metrics: dict[str, list[int]] = {}
            for mem in members:
                for met, cols in by_entity.get(mem, {}).items():
                    if len(cols) == 1:
                        metrics.setdefault(met, []).append(cols[0])
            for met, cols in metrics.items():
                if len(cols) >= self.config.peers.min_size:
                    out.append((gid, met, np.asarray(cols, dtype=np.int64)))
        return out

    def _row(
        self,
        ts: int,
        firing: np.ndarray,
        zabs: np.ndarray,
        pz: np.ndarray,
        report: AnomalyReport,
        absent: list[tuple[str, str, int]],
    ) -> None:
        c = self.config
        flagged: dict[str, tuple[float, int, list[str], bool]] = {}
        for e, met, onset in absent:
            score, on, sigs, _ = flagged.get(e, (0.0, onset, [], True))
            flagged[e] = (max(score, 2 * c.z_threshold), min(on, onset), [*sigs, f"absent({met})"], True)
        for j in firing:
            e = self.entities[j]
            if e is None:
                continue
            score, onset, sigs, outlier = flagged.get(e, (0.0, ts, [], False))
            flagged[e] = (
                max(score, float(zabs[j])),
                min(onset, int(self.onset[j])),
                [*sigs, self.metrics[j]],
                outlier or bool(np.isfinite(pz[j]) and pz[j] > c.peer_threshold),
            )
        # roll up common causes, bottom-up, a few levels
        common: dict[str, tuple[str, ...]] = {}
        for _ in range(4):
            changed = False
            for gid, members in self._member_sets():
                hit = [mm for mm in members if mm in flagged]
                if len(hit) < 2 or len(hit) < c.common_fraction * len(members):
                    continue
                if set(hit) <= set(common.get(gid, ())):
                    continue
                score = max(flagged[mm][0] for mm in hit)
                onset = min(flagged[mm][1] for mm in hit)
                sigs = sorted({s for mm in hit for s in flagged[mm][2]})
                if gid in flagged:  # flagged on its own signals too: keep those, explain the members
                    own = flagged[gid]
                    score, onset, sigs = max(score, own[0]), min(onset, own[1]), sorted({*sigs, *own[2]})
                flagged[gid] = (score, onset, sigs, False)
                common[gid] = tuple(sorted({*common.get(gid, ()), *hit}))
                changed = True
            if not changed:
                break
        explained = {mm for gid, hit in common.items() for mm in hit if not flagged[mm][3]}
        for e, (score, onset, sigs, outlier) in flagged.items():
            if e in explained:
                continue
            self.open[e] = 0
            if e in self.reported:
                continue
            self.reported.add(e)
            kind = e.split(":", 1)[0]
            scope = "common-cause" if e in common else "peer" if outlier else "series"
            report.anomalies.append(
                Anomaly(e, kind, onset, ts, score, scope, tuple(sorted(set(sigs))), common.get(e, ()))
            )
        for e in list(self.open):
            if e not in flagged:
                self.open[e] += 1
                if self.open[e] > c.clear_after:
                    del self.open[e]
                    self.reported.discard(e)

    def _member_sets(self) -> list[tuple[str, list[str]]]:
        """(group entity, members) per grouping relation, as of now (cached per batch)."""
        if self._members_cache is not None:
            return self._members_cache
        topo = self.topology
        out: list[tuple[str, list[str]]] = []
        for kind, rel, outgoing in _GROUPS:
            for ent in topo.entities(kind):
                members = topo.related(ent.id, rel, outgoing=outgoing)
                if len(members) >= 2:
                    out.append((ent.id, members))
        self._members_cache = out
        return out
