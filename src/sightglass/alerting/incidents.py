"""Incidents: firing alerts grouped by their cause, with a lifecycle and a timeline.

Each firing alert is mapped to the entity it is about (its labels → a topology id: ``gpu:<UUID>``,
``nic:<host>/<dev>``, ``switch:<name>``, ``job:<id>``...). It joins an open incident when

1. the incident's *anchor* (the most upstream entity seen alerting in it) is something the alert's
   entity depends on (a GPU's job hanging after the GPU fell off the bus; every HCA of a rack going
   down after its leaf switch did), or the alert is upstream of the anchor (then the anchor moves up,
   and other open incidents below it merge in); or
2. the same alert fires on neighbours that share a close, narrow dependency, within ``group_window``
   (the HCAs of one rack going down with no switch alert: the leaf they share; "narrow": at most
   half the nodes depend on it, so a spine or the shared storage never glues unrelated alerts
   together); or
3. the RCA (``sightglass.rca.engine.analyze``, when installed) names, as the alert's top cause, the
   entity another open incident is about.

The RCA of the incident's first alert is attached when the incident opens (and again when its
anchor moves), and its top cause becomes the incident's cause; without the RCA the cause is the
anchor and the incident says why the RCA is missing. Lifecycle: ``open`` → ``acknowledged`` →
``resolved`` (by hand, or when every alert in it has resolved), every step on the timeline.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sightglass.alerting.evaluator import Alert, rfc3339

log = logging.getLogger("sightglass.alerting")

STATES = ("open", "acknowledged", "resolved")
SEVERITY_RANK = {"critical": 3, "page": 3, "error": 2, "warning": 1, "info": 0, "none": 0}
GROUP_WINDOW_MS = 10 * 60_000
_NARROW_KINDS = {"switch", "rack", "node", "job", "service", "model", "pod", "gpu"}
# tie-break between equally close shared dependencies: devices before locations
_KIND_ORDER = {
    "gpu": 0,
    "node": 1,
    "switch": 2,
    "storage": 3,
    "job": 4,
    "service": 5,
    "model": 6,
    "pod": 7,
    "rack": 8,
}
_ID_LABELS = {"alertname", "severity", "runbook_url", "team", "slo", "window"}


class IncidentError(ValueError):
    """A lifecycle change that is not allowed (resolving twice, acknowledging a resolved incident)."""


@dataclass(slots=True)
class Incident:
    id: str
    title: str
    state: str
    severity: str
    opened_ms: int
    anchor: str | None
    cause: dict[str, Any] | None = None
    rca: dict[str, Any] | None = None
    rca_note: str = ""
    acknowledged_ms: int | None = None
    acknowledged_by: str = ""
    resolved_ms: int | None = None
    resolved_by: str = ""
    merged_into: str | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    last_activity_ms: int = 0
    diagnostics: dict[str, Any] | None = None  # tasks the incident asked for (alerting.diagnostics)

    def log(self, ts_ms: int, event: str, detail: str, **extra: Any) -> None:
        self.timeline.append(
            {"ts": rfc3339(ts_ms), "ts_ms": ts_ms, "event": event, "detail": detail, **extra}
        )
        self.last_activity_ms = max(self.last_activity_ms, ts_ms)

    @property
    def cause_entity(self) -> str | None:
        if self.cause and self.cause.get("entity"):
            return str(self.cause["entity"])
        return self.anchor

    def firing(self) -> int:
        return sum(1 for a in self.alerts.values() if a["state"] == "firing")

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "severity": self.severity,
            "opened": rfc3339(self.opened_ms),
            "opened_ms": self.opened_ms,
            "acknowledged_ms": self.acknowledged_ms,
            "acknowledged_by": self.acknowledged_by,
            "resolved_ms": self.resolved_ms,
            "resolved_by": self.resolved_by,
            "anchor": self.anchor,
            "cause": self.cause,
            "rca_note": self.rca_note,
            "merged_into": self.merged_into,
            "alerts_total": len(self.alerts),
            "alerts_firing": self.firing(),
            "entities": sorted({a["entity"] for a in self.alerts.values() if a.get("entity")}),
        }
        if self.diagnostics is not None:
            dg = self.diagnostics
            d["diagnostics"] = dg if full else {
                "runs": dg.get("runs", 1), "tasks": len(dg.get("tasks", [])), "why": dg.get("why", "")}  # fmt: skip
        if full:
            d["alerts"] = sorted(self.alerts.values(), key=lambda a: (a["active_at_ms"], a["alertname"]))
            d["timeline"] = list(self.timeline)
            d["rca"] = self.rca
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Incident:
        inc = cls(
            d["id"], d["title"], d["state"], d.get("severity", "warning"), int(d["opened_ms"]), d.get("anchor"),
            d.get("cause"), d.get("rca"), d.get("rca_note", ""), d.get("acknowledged_ms"),
            d.get("acknowledged_by", ""), d.get("resolved_ms"), d.get("resolved_by", ""), d.get("merged_into"),
        )  # fmt: skip
        inc.alerts = {a["fingerprint"]: a for a in d.get("alerts", []) if "fingerprint" in a}
        inc.timeline = list(d.get("timeline", []))
        diag = d.get("diagnostics")
        inc.diagnostics = diag if isinstance(diag, dict) else None
        inc.last_activity_ms = max([inc.opened_ms, *(int(t.get("ts_ms", 0)) for t in inc.timeline)])
        return inc


# ---------------------------------------------------------------------- entities of alerts
def _host(labels: dict[str, str]) -> str | None:
    from sightglass.topology.infer import host_of

    return host_of(labels)


class EntityResolver:
    """Maps alert labels to topology entity ids, and walks what they depend on."""

    def __init__(self, topology: Any) -> None:
        self.topo = topology
        self._gpu_alias: dict[tuple[str, str], str] = {}
        self._node_share: dict[str, float] = {}
        if topology is not None:
            for e in topology.entities("gpu"):
                h, g = e.labels.get("Hostname"), e.labels.get("gpu")
                if h and g is not None:
                    self._gpu_alias[(h, g)] = e.id
            self._n_nodes = max(1, len(topology.entities("node")))
        else:
            self._n_nodes = 1

    def _known(self, eid: str) -> bool:
        return self.topo is None or self.topo.entity(eid) is not None

    def entity(self, labels: dict[str, str]) -> str | None:
        host = labels.get("Hostname") or labels.get("hostname") or _host(labels)
        uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
        if uuid:
            return f"gpu:{uuid}"
        if host and labels.get("gpu") is not None:
            return self._gpu_alias.get((host, labels["gpu"]), f"gpu:{host}/{labels['gpu']}")
        if host and labels.get("device", "").startswith(("mlx", "ib", "hfi")):
            return f"nic:{host}/{labels['device']}"
        if labels.get("export"):
            return f"storage:{labels['export'].split(':', 1)[0]}"
        if labels.get("switch"):
            return f"switch:{labels['switch']}"
        if labels.get("pipeline"):
            return f"pipeline:{labels['pipeline']}"
        if labels.get("slurm_job_id") or labels.get("hpc_job"):
            return f"job:{labels.get('slurm_job_id') or labels.get('hpc_job')}"
        if labels.get("model_name") or labels.get("model"):
            return f"model:{labels.get('model_name') or labels.get('model')}"
        if labels.get("pod") and labels.get("namespace"):
            return f"pod:{labels['namespace']}/{labels['pod']}"
        if host:
            return f"node:{host}"
        return None

    def upstream(self, eid: str, at_ms: int | None) -> dict[str, int]:
        """The entity and everything it depends on (a NIC through its node), with distances."""
        out = {eid: 0}
        if self.topo is None:
            return out
        base = {eid: 0}
        if eid.startswith("nic:"):
            node = "node:" + eid[4:].split("/", 1)[0]
            base[node] = 1
        for start, d0 in base.items():
            out.setdefault(start, d0)
            for dep, d in self.topo.depends_on(start, at_ms, max_depth=6).items():
                if d + d0 < out.get(dep, 1 << 30):
                    out[dep] = d + d0
        return out

    def narrow(self, eid: str) -> bool:
        """A dependency few enough nodes share to group by: at most half of the nodes."""
        kind = eid.split(":", 1)[0]
        if kind not in _NARROW_KINDS:
            return False
        if self.topo is None or kind in ("gpu", "job", "pod", "node"):
            return True
        share = self._node_share.get(eid)
        if share is None:
            deps = self.topo.dependents(eid, None, max_depth=4)
            share = sum(1 for d in deps if d.startswith("node:")) / self._n_nodes
            self._node_share[eid] = share
        return share <= 0.5


def alert_symptom(alert: Alert) -> str:
    """A PromQL selector for the RCA: the rule's first metric, narrowed by the alert's identity labels."""
    try:
        import promql_parser

        node = promql_parser.parse(alert.expr)
    except Exception:
        return alert.expr
    name = _first_selector(node)
    if not name:
        return alert.expr
    keep = {k: v for k, v in alert.labels.items() if k not in _ID_LABELS and not k.startswith("__")}
    sel = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(keep.items()))
    return f"{name}{{{sel}}}" if sel else name


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def _first_selector(node: Any, depth: int = 0) -> str | None:
    if depth > 64 or node is None:
        return None
    kind = type(node).__name__
    if kind == "VectorSelector":
        return str(node.name) if getattr(node, "name", None) else None
    if kind == "MatrixSelector":
        return _first_selector(node.vector_selector, depth + 1)
    if kind == "Call":
        children: list[Any] = list(node.args or [])
    elif kind == "BinaryExpr":
        children = [node.lhs, node.rhs]
    else:
        children = [getattr(node, "expr", None)]
    for c in children:
        got = _first_selector(c, depth + 1)
        if got:
            return got
    return None


# ---------------------------------------------------------------------- the manager
RcaFn = Callable[[str, int], dict[str, Any]]


def load_rca() -> tuple[Any, str]:
    """``sightglass.rca.engine.analyze`` if it is installed, else ``(None, why not)``."""
    try:
        from sightglass.rca import engine as rca_engine  # type: ignore[attr-defined,unused-ignore]

        analyze = rca_engine.analyze
    except (ImportError, AttributeError) as e:
        return None, f"rca unavailable: {type(e).__name__}: {e}"
    return analyze, ""


class IncidentManager:
    def __init__(
        self,
        catalog: Any,
        *,
        topology: Callable[[], Any] | None = None,
        rca: Callable[[str, int], dict[str, Any] | None] | None = None,
        rca_note: str = "",
        group_window_ms: int = GROUP_WINDOW_MS,
        max_rca_per_step: int = 4,
        min_severity: str = "warning",
    ) -> None:
        self.min_rank = SEVERITY_RANK.get(min_severity, 1)
        self.catalog = catalog
        self.topology = topology or (lambda: None)
        self.rca = rca
        self.rca_note = rca_note
        self.group_window_ms = group_window_ms
        self.max_rca_per_step = max_rca_per_step
        self.incidents: dict[str, Incident] = {}
        self.by_alert: dict[str, str] = {}
        self.rca_seconds: list[float] = []
        if catalog is not None:
            for d in catalog.load_incidents():
                try:
                    inc = Incident.from_dict(d)
                except (KeyError, TypeError, ValueError):
                    continue
                self.incidents[inc.id] = inc
                if inc.state != "resolved":
                    for fp, a in inc.alerts.items():
                        if a["state"] == "firing":
                            self.by_alert[fp] = inc.id

    # ------------------------------------------------------------------ queries
    def list_incidents(self, state: str | None = None) -> list[Incident]:
        out = [i for i in self.incidents.values() if state is None or i.state == state]
        return sorted(out, key=lambda i: (i.opened_ms, i.id))

    def get(self, iid: str) -> Incident | None:
        return self.incidents.get(iid)

    def incident_of(self, fingerprint: str) -> Incident | None:
        iid = self.by_alert.get(fingerprint)
        return self.incidents.get(iid) if iid else None

    # ------------------------------------------------------------------ lifecycle
    def acknowledge(self, iid: str, at_ms: int, by: str = "", note: str = "") -> Incident:
        inc = self._require(iid)
        if inc.state == "resolved":
            raise IncidentError(f"incident {iid} is resolved; it cannot be acknowledged")
        if inc.state == "acknowledged":
            raise IncidentError(
                f"incident {iid} is already acknowledged (by {inc.acknowledged_by or 'someone'})"
            )
        inc.state, inc.acknowledged_ms, inc.acknowledged_by = "acknowledged", at_ms, by
        inc.log(
            at_ms, "acknowledged", f"acknowledged{' by ' + by if by else ''}{': ' + note if note else ''}"
        )
        self._save(inc)
        return inc

    def resolve(self, iid: str, at_ms: int, by: str = "", note: str = "") -> Incident:
        inc = self._require(iid)
        if inc.state == "resolved":
            raise IncidentError(f"incident {iid} is already resolved")
        inc.state, inc.resolved_ms, inc.resolved_by = "resolved", at_ms, by
        still = inc.firing()
        extra = f" ({still} alert(s) still firing stay with it until they resolve)" if still else ""
        inc.log(at_ms, "resolved", f"resolved{' by ' + by if by else ''}{': ' + note if note else ''}{extra}")
        self._save(inc)
        return inc

    def _require(self, iid: str) -> Incident:
        inc = self.incidents.get(iid)
        if inc is None:
            raise KeyError(iid)
        return inc

    # ------------------------------------------------------------------ grouping
    def observe(self, alerts: list[Alert], at_ms: int, *, complete: bool = False) -> list[Incident]:
        """Fold the evaluator's alerts (firing and resolved) in; returns the incidents that changed.
        ``complete``: ``alerts`` is everything the evaluator holds after every group has run, so an
        incident's alert missing from it is no longer active (it resolved while the server was down)."""
        changed: dict[str, Incident] = {}
        if complete:
            present = {a.fingerprint for a in alerts}
            for fp in [fp for fp in self.by_alert if fp not in present]:
                inc = self.incidents[self.by_alert.pop(fp)]
                rec = inc.alerts.get(fp)
                if rec is not None and rec["state"] != "resolved":
                    rec["state"], rec["resolved_at_ms"] = "resolved", at_ms
                    inc.log(
                        at_ms, "alert_resolved", f"{rec['alertname']} is no longer active", fingerprint=fp
                    )
                    changed[inc.id] = inc
        resolver: EntityResolver | None = None
        rca_budget = self.max_rca_per_step
        for a in sorted(alerts, key=lambda x: (x.fired_at_ms or x.active_at_ms, x.rule, x.fingerprint)):
            iid = self.by_alert.get(a.fingerprint)
            if iid is not None:
                inc = self.incidents[iid]
                rec = inc.alerts.get(a.fingerprint)
                if rec is not None and a.state == "inactive" and rec["state"] != "resolved":
                    rec["state"], rec["resolved_at_ms"] = "resolved", a.resolved_at_ms
                    inc.log(at_ms, "alert_resolved", f"{a.rule} resolved on {rec.get('entity') or '?'}",
                            fingerprint=a.fingerprint)  # fmt: skip
                    self.by_alert.pop(a.fingerprint, None)
                    changed[inc.id] = inc
                elif rec is not None and a.state == "firing":
                    rec["value"] = a.value
                continue
            if (
                a.state != "firing"
                or SEVERITY_RANK.get(a.labels.get("severity", "warning"), 1) < self.min_rank
            ):
                continue
            if resolver is None:
                resolver = EntityResolver(self.topology())
            inc, how = self._assign(a, at_ms, resolver, rca_budget > 0)
            if how == "rca":
                rca_budget -= 1
            changed[inc.id] = inc
        for inc in list(changed.values()):
            if inc.merged_into:
                continue
            if (
                inc.state != "resolved"
                and inc.alerts
                and all(r["state"] == "resolved" for r in inc.alerts.values())
            ):
                inc.state, inc.resolved_ms, inc.resolved_by = "resolved", at_ms, "sightglass"
                inc.log(at_ms, "resolved", "every alert in the incident has resolved")
        for inc in changed.values():
            inc.title = self._title(inc)
            self._save(inc)
        return list(changed.values())

    def _assign(self, a: Alert, at_ms: int, res: EntityResolver, may_rca: bool) -> tuple[Incident, str]:
        ent = res.entity(a.labels)
        up = res.upstream(ent, at_ms) if ent else {}
        open_incs = [
            i
            for i in self.incidents.values()
            if not i.merged_into
            and (
                i.state != "resolved"
                # auto-resolved a moment ago (its alerts flapped, or the symptom outlived the cause): reopen
                or (i.resolved_by == "sightglass" and at_ms - (i.resolved_ms or 0) <= self.group_window_ms)
            )
        ]
        target: Incident | None = None
        how = ""
        # 0. an open incident already has an alert on this very entity
        if ent:
            for inc in sorted(open_incs, key=lambda i: i.opened_ms):
                if any(r.get("entity") == ent for r in inc.alerts.values()):
                    target, how = inc, f"same entity {ent}"
                    break
        # 1. the incident's anchor (or cause) is something this alert's entity depends on
        for inc in sorted(open_incs, key=lambda i: i.opened_ms):
            if target is not None:
                break
            keys = {inc.anchor, inc.cause_entity} - {None}
            hit = sorted((k for k in keys if k in up), key=lambda k: up[str(k)])
            if hit:
                target, how = inc, "topology: depends on " + ", ".join(str(k) for k in hit)
                if inc.anchor not in hit and inc.anchor and hit[0] in res.upstream(inc.anchor, at_ms):
                    self._move_anchor(inc, str(hit[0]), at_ms, f"{a.rule} on {ent} depends on it too")
                break
        # 1b. this alert is upstream of open incidents: it becomes their anchor; they merge
        if target is None and ent:
            below = [i for i in open_incs if ent != i.anchor and self._below(i, ent, res, at_ms)]
            if below:
                below.sort(key=lambda i: i.opened_ms)
                target, how = below[0], f"topology: {ent} is upstream of {below[0].anchor}"
                self._move_anchor(target, ent, at_ms, f"{a.rule} on {ent}, upstream of the incident's alerts")
                for other in below[1:]:
                    self._merge(other, target, at_ms)
        # 2. a close, narrow dependency shared with a recent incident's anchor
        if target is None and ent:
            best: tuple[int, Incident, str] | None = None
            for inc in open_incs:
                if not inc.anchor or at_ms - inc.last_activity_ms > self.group_window_ms:
                    continue
                if a.rule not in {r["alertname"] for r in inc.alerts.values()}:
                    continue  # siblings are the same symptom on neighbours (every HCA of a rack)
                theirs = res.upstream(inc.anchor, at_ms)
                for dep, d in up.items():
                    if dep in theirs and dep != ent and res.narrow(dep):
                        score = (d + theirs[dep]) * 10 + _KIND_ORDER.get(dep.split(":", 1)[0], 9)
                        if d + theirs[dep] <= 4 and (best is None or score < best[0]):
                            best = (score, inc, dep)
            if best is not None:
                _, target, dep = best
                how = f"topology: shares {dep} with the incident"
                self._move_anchor(target, dep, at_ms, f"{a.rule} on {ent} shares {dep}")
        # 3. the RCA names the cause of another open incident
        rca_doc: dict[str, Any] | None = None
        if target is None and self.rca is not None and may_rca:
            rca_doc = self._run_rca(a)
            top = _top_entity(rca_doc)
            if top:
                for inc in open_incs:
                    if top in (inc.cause_entity, inc.anchor):
                        target, how = inc, f"rca: top cause {top}"
                        break
        if target is None:
            target = self._open(a, ent, at_ms)
            how = "new"
            if self.rca is None:
                target.rca_note = self.rca_note or "rca unavailable"
                target.log(at_ms, "rca_unavailable", target.rca_note)
            elif rca_doc is not None or may_rca:
                self._attach_rca(target, a, at_ms, rca_doc)
        if target.state == "resolved":
            target.state, target.resolved_ms, target.resolved_by = "open", None, ""
            target.log(at_ms, "reopened", f"{a.rule} on {ent or '?'} fired again within the grouping window")
        self._add_alert(target, a, ent, at_ms, how)
        self._reconcile_cause(target, res, at_ms)
        return target, ("rca" if rca_doc is not None else how)

    def _reconcile_cause(self, inc: Incident, res: EntityResolver, at_ms: int) -> None:
        """The RCA ran on the first alert; when several alerting entities turn out to share the anchor
        and the RCA's top cause is one of them (eight GPUs of a node braking), the anchor is the cause."""
        cause = inc.cause or {}
        top, anchor = cause.get("entity"), inc.anchor
        if cause.get("source") != "rca" or not top or not anchor or top == anchor:
            return
        members = {str(r["entity"]) for r in inc.alerts.values() if r.get("entity")}
        under = {m for m in members if m != anchor and anchor in res.upstream(m, at_ms)}
        if len(under) >= 2 and anchor in res.upstream(str(top), at_ms):
            inc.cause = {
                "entity": anchor,
                "source": "topology",
                "reason": f"{len(under)} alerting entities depend on it; the RCA's top cause {top} is one of them",
                "rca_top": top,
            }
            inc.log(at_ms, "cause_moved", f"{top} → {anchor}: {len(under)} alerting entities share it")

    @staticmethod
    def _below(inc: Incident, ent: str, res: EntityResolver, at_ms: int) -> bool:
        """Whether ``ent`` is upstream of the incident's anchor or of any entity alerting in it."""
        ents = {inc.anchor} | {r.get("entity") for r in inc.alerts.values() if r["state"] == "firing"}
        return any(x and x != ent and ent in res.upstream(x, at_ms) for x in ents)

    def _open(self, a: Alert, ent: str | None, at_ms: int) -> Incident:
        iid = "inc-" + uuid.uuid4().hex[:10]
        inc = Incident(iid, a.rule, "open", a.labels.get("severity", "warning"), at_ms, ent)
        inc.cause = {"entity": ent, "source": "alert", "alert": a.rule} if ent else None
        inc.log(at_ms, "opened", f"{a.rule} firing on {ent or 'an unknown entity'}")
        self.incidents[iid] = inc
        return inc

    def _add_alert(self, inc: Incident, a: Alert, ent: str | None, at_ms: int, how: str) -> None:
        inc.alerts[a.fingerprint] = {
            "fingerprint": a.fingerprint,
            "alertname": a.rule,
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "state": "firing",
            "value": a.value,
            "entity": ent,
            "active_at_ms": a.active_at_ms,
            "fired_at_ms": a.fired_at_ms,
            "resolved_at_ms": None,
            "grouped_by": how,
        }
        self.by_alert[a.fingerprint] = inc.id
        sev = a.labels.get("severity", "warning")
        if SEVERITY_RANK.get(sev, 1) > SEVERITY_RANK.get(inc.severity, 1):
            inc.severity = sev
        if how != "new":
            inc.log(
                at_ms, "alert_joined", f"{a.rule} firing on {ent or '?'} ({how})", fingerprint=a.fingerprint
            )

    def _move_anchor(self, inc: Incident, ent: str, at_ms: int, why: str) -> None:
        if inc.anchor == ent:
            return
        old = inc.anchor
        inc.anchor = ent
        if not inc.cause or inc.cause.get("source") != "rca":
            inc.cause = {"entity": ent, "source": "topology", "reason": why}
        inc.log(at_ms, "anchor_moved", f"{old} → {ent}: {why}")

    def _merge(self, src: Incident, dst: Incident, at_ms: int) -> None:
        for fp, rec in src.alerts.items():
            dst.alerts[fp] = {**rec, "grouped_by": f"merged from {src.id}"}
            if rec["state"] == "firing":
                self.by_alert[fp] = dst.id
        dst.log(at_ms, "merged", f"{src.id} ({len(src.alerts)} alert(s)) merged in")
        src.state, src.resolved_ms, src.resolved_by, src.merged_into = "resolved", at_ms, "sightglass", dst.id
        src.log(at_ms, "merged", f"merged into {dst.id}: same cause")
        self._save(src)

    def _run_rca(self, a: Alert) -> dict[str, Any] | None:
        assert self.rca is not None
        t0 = time.perf_counter()
        try:
            doc = self.rca(alert_symptom(a), a.fired_at_ms or a.active_at_ms)
        except Exception as e:  # the RCA failing must not stop the incident
            log.warning("rca failed for %s: %s", a.rule, e)
            doc = {"error": f"{type(e).__name__}: {e}"}
        self.rca_seconds.append(time.perf_counter() - t0)
        return doc

    def _attach_rca(self, inc: Incident, a: Alert, at_ms: int, doc: dict[str, Any] | None) -> None:
        if doc is None:
            doc = self._run_rca(a)
        if doc is None:
            return
        inc.rca = doc
        if doc.get("error"):
            inc.rca_note = f"rca failed: {doc['error']}"
            inc.log(at_ms, "rca_failed", inc.rca_note)
            return
        causes = doc.get("causes") or []
        if causes:
            top = causes[0]
            ent = top.get("entity") or {}
            inc.cause = {
                "entity": ent.get("id"),
                "kind": ent.get("kind"),
                "labels": ent.get("labels"),
                "fault": top.get("fault"),
                "score": top.get("score"),
                "action": top.get("action"),
                "source": "rca",
            }
            inc.log(at_ms, "rca_attached", f"top cause {ent.get('id')} ({top.get('fault')}), "
                    f"{len(causes)} cause(s) ranked", symptom=(doc.get("symptom") or {}).get("query"))  # fmt: skip
        else:
            inc.log(
                at_ms,
                "rca_attached",
                "the RCA found no cause",
                symptom=(doc.get("symptom") or {}).get("query"),
            )

    def update_rca(self, inc: Incident, doc: dict[str, Any], at_ms: int, why: str) -> bool:
        """A re-run of the incident's RCA (new evidence: diagnostics); the cause follows its top cause.
        Returns whether the cause moved."""
        if doc.get("error"):
            inc.log(at_ms, "rca_failed", f"re-run {why} failed: {doc['error']}")
            return False
        inc.rca = doc
        causes = doc.get("causes") or []
        if not causes:
            inc.log(at_ms, "rca_updated", f"re-run {why}: no cause found; the cause stays")
            return False
        top = causes[0]
        ent = top.get("entity") or {}
        old = inc.cause_entity
        inc.cause = {
            "entity": ent.get("id"), "kind": ent.get("kind"), "labels": ent.get("labels"), "fault": top.get("fault"),
            "score": top.get("score"), "action": top.get("action"), "source": "rca",
        }  # fmt: skip
        inc.log(at_ms, "rca_updated", f"re-run {why}: top cause {ent.get('id')} ({top.get('fault')})")
        moved = bool(ent.get("id")) and ent.get("id") != old
        if moved:
            inc.log(at_ms, "cause_moved", f"{old} → {ent.get('id')} ({top.get('fault')}) {why}")
        inc.title = self._title(inc)
        return moved

    def _title(self, inc: Incident) -> str:
        names = sorted({r["alertname"] for r in inc.alerts.values()})
        cause = inc.cause_entity or "unknown entity"
        fault = (inc.cause or {}).get("fault")
        recs = sorted(inc.alerts.values(), key=lambda r: (r.get("entity") != cause, r["active_at_ms"]))
        head = f"{fault} on {cause}" if fault else f"{recs[0]['alertname'] if recs else 'alert'} on {cause}"
        n = len(inc.alerts)
        return head + (
            f" ({n} alerts: {', '.join(names[:4])}{'…' if len(names) > 4 else ''})" if n > 1 else ""
        )

    def _save(self, inc: Incident) -> None:
        if self.catalog is not None:
            try:
                self.catalog.save_incident(inc.to_dict())
            except Exception as e:  # keep alerting when the catalog is busy; say so
                log.warning("could not save incident %s: %s", inc.id, e)


def _top_entity(doc: dict[str, Any] | None) -> str | None:
    if not doc or doc.get("error"):
        return None
    causes = doc.get("causes") or []
    if not causes:
        return None
    ent = causes[0].get("entity") or {}
    return str(ent["id"]) if ent.get("id") else None
