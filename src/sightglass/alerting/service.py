"""The server's alerting loop: evaluate the rules, fold alerts into incidents, notify.

Every ``evaluation_interval`` (off the event loop, in a thread): evaluate the due groups at the
alerting clock, hand every alert to the incident manager (grouping, RCA), then send: alerts to the
Alertmanager notifiers (Prometheus' resend rule), and each changed incident as one webhook/Slack
notification. Silenced alerts are evaluated and grouped but not sent.

The clock (``[alerting] clock``): ``wall`` is the wall clock (Prometheus); ``data`` is the newest
sample in the store (a back-filled or simulated store is alerted on as if live); ``auto`` (default)
takes the wall clock while data is arriving (newest sample within 15 minutes) and the data clock
otherwise.

Replicas (a scale-out store with ``[backends.replicas] enabled``): the rules are evaluated by one
replica at a time, the holder of the ``alerting`` leader lease (``sightglass.scaleout.leader``),
because incident grouping needs every alert in one place. Each round it commits a checkpoint of the
alert states (pending/firing since when, last sent) and of the notification state with the lease;
incidents and silences live in the PostgreSQL catalog, written through a :class:`FencedCatalog`. A
replica that takes the lease over loads the checkpoint and the incidents, so an alert that was firing
goes on firing (no second pending period, no second notification) in the incident the dead replica
opened. The other replicas follow: each round they load the leader's alert states and the incidents
for their API, and an acknowledgement or silence made on any replica is in the catalog, where the
leader picks it up (the later timeline entry wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sightglass.alerting.catalog import DuckDBCatalog, FencedCatalog, MemoryCatalog
from sightglass.alerting.config import AlertingConfig, alerting_config
from sightglass.alerting.diagnostics import DiagnosticsManager
from sightglass.alerting.evaluator import Alert, RuleEvaluator
from sightglass.alerting.incidents import Incident, IncidentManager, load_rca
from sightglass.alerting.notify import Dispatcher, NotificationGroup
from sightglass.alerting.rules import RuleError, RuleGroup, default_rule_paths, load_rule_files
from sightglass.alerting.silences import Silences
from sightglass.alerting.slo import SLO, default_slo_path, load_slo_files, slo_rule_groups, slo_status
from sightglass.config import ConfigError, parse_duration_ms

log = logging.getLogger("sightglass.alerting")

LIVE_WINDOW_MS = 15 * 60_000


def load_slos(cfg: AlertingConfig) -> list[SLO]:
    slo_paths: list[Any] = [default_slo_path()] if cfg.default_slos else []
    slo_paths += cfg.slo_files
    try:
        return load_slo_files(slo_paths) if slo_paths else []
    except RuleError as e:
        raise ConfigError("[alerting] SLOs do not load:\n  " + "\n  ".join(e.errors)) from None


def load_groups(cfg: AlertingConfig, slos: list[SLO] | None = None) -> list[RuleGroup]:
    """The default pack (unless switched off), the configured rule files and the SLO-generated rules."""
    paths: list[Any] = list(default_rule_paths()) if cfg.default_rules else []
    paths += cfg.rule_files
    try:
        groups = load_rule_files(paths) if paths else []
    except RuleError as e:
        raise ConfigError("[alerting] rules do not load:\n  " + "\n  ".join(e.errors)) from None
    return groups + slo_rule_groups(load_slos(cfg) if slos is None else slos)


class AlertingService:
    def __init__(
        self,
        store: Any,
        engine: Any,
        config: AlertingConfig | dict[str, Any] | None = None,
        *,
        groups: list[RuleGroup] | None = None,
        topology: Callable[[], Any] | None = None,
        rca: Callable[[str, int], dict[str, Any] | None] | bool | None = True,
        transport: Any = None,
        catalog: Any = None,
        registry: Any = None,
        leader: Any = None,
    ) -> None:
        self.cfg = alerting_config(config)
        self.store = store
        self.engine = engine
        self.slos = load_slos(self.cfg) if groups is None else []
        self.groups = groups if groups is not None else load_groups(self.cfg, self.slos)
        self.lock = threading.RLock()  # the loop thread and the HTTP handlers share the state
        self.evaluator = RuleEvaluator(
            engine,
            self.groups,
            interval_ms=self.cfg.interval_ms,
            store=store,
            external_labels=self.cfg.external_labels,
            external_url=self.cfg.external_url,
            write_alerts_series=self.cfg.write_alerts_series,
            resend_delay_ms=parse_duration_ms(self.cfg.resend_delay),
        )
        if catalog is None:
            catalog = getattr(store, "alerting_catalog", None)
        if catalog is None:
            catalog = DuckDBCatalog(store) if hasattr(store, "cursor") else MemoryCatalog()
        self.leader = leader  # the alerting leader lease on a scale-out store (None: evaluate always)
        self.replicated = leader is not None and hasattr(leader.leases, "catalog")
        if self.replicated:
            catalog = FencedCatalog(catalog, leader.still_held)
        self.catalog: Any = catalog
        self.silences = Silences(self.catalog)
        self.dispatcher = Dispatcher(
            self.cfg.notifiers,
            external_url=self.cfg.external_url,
            repeat_interval_ms=parse_duration_ms(self.cfg.repeat_interval),
            transport=transport,
        )
        self._builder: Any = None
        rca_fn, note = self._rca(rca)
        self._incident_args: dict[str, Any] = dict(
            topology=topology or self._topology, rca=rca_fn, rca_note=note,
            min_severity=self.cfg.incident_min_severity,
        )  # fmt: skip
        self.incidents = IncidentManager(self.catalog, **self._incident_args) if self.cfg.incidents else None
        self.diagnostics = DiagnosticsManager(
            self.cfg.diagnostics, store, topology=self._incident_args["topology"], rerun=self._rerun_rca
        )
        if self.incidents is not None:
            self.diagnostics.load(self.incidents)
        self.metrics = _Metrics(registry) if registry is not None else None
        if self.metrics is not None:
            self.dispatcher.on_delivery = self.metrics.delivered
        self.steps = 0
        self.last_step_s = 0.0
        self.last_at_ms: int | None = None
        self.last_error: str | None = None
        self.followed = 0  # rounds this replica followed the leader instead of evaluating
        self.restored = 0  # checkpoints loaded at a takeover

    # ------------------------------------------------------------------ wiring
    def _rca(self, rca: Any) -> tuple[Callable[[str, int], dict[str, Any] | None] | None, str]:
        if callable(rca):
            return rca, ""
        if rca is False or not self.cfg.rca:
            return None, "rca unavailable: switched off ([alerting] rca = false)"
        analyze, note = load_rca()
        if analyze is None:
            return None, note

        def run(symptom: str, at_ms: int, evidence_until_ms: int | None = None) -> dict[str, Any] | None:
            builder = self._topology_builder()
            result = analyze(self.store, symptom, at_ms, engine=self.engine, builder=builder,
                             evidence_until_ms=evidence_until_ms)  # fmt: skip
            return dict(result.to_dict())

        return run, ""

    def _rerun_rca(self, symptom: str, at_ms: int, until_ms: int) -> dict[str, Any] | None:
        """The incident's RCA again, with evidence (diagnostics) that arrived up to ``until_ms``."""
        import inspect

        fn = self.incidents.rca if self.incidents is not None else None
        if fn is None:
            return None
        try:
            takes = "evidence_until_ms" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes = False
        return fn(symptom, at_ms, evidence_until_ms=until_ms) if takes else fn(symptom, at_ms)  # type: ignore[call-arg]

    def _topology_builder(self) -> Any:
        from sightglass.topology import TopologyBuilder

        if self._builder is None:
            self._builder = TopologyBuilder()
        self._builder.update(self.store)
        return self._builder

    def _topology(self) -> Any:
        try:
            return self._topology_builder().topology
        except Exception as e:  # grouping falls back to "same entity" without a topology
            log.warning("topology unavailable for incident grouping: %s", e)
            return None

    def close(self) -> None:
        self.dispatcher.close()

    # ------------------------------------------------------------------ the loop
    def clock_ms(self) -> int:
        wall = int(time.time() * 1000)
        newest = int(getattr(self.store, "newest_ms", 0) or 0)
        if self.cfg.clock == "wall" or newest <= 0:
            return wall
        if self.cfg.clock == "data":
            return newest
        return wall if wall - newest < LIVE_WINDOW_MS else newest

    def step(self, at_ms: int | None = None) -> dict[str, Any]:
        """One evaluation round at ``at_ms`` (the alerting clock by default); with a leader lease,
        only on the replica that holds it (the others follow, see the module docstring)."""
        t0 = time.perf_counter()
        if self.leader is not None:
            lease = self.leader.hold()
            if lease is None:
                with self.lock:
                    self._follow()
                self.followed += 1
                return {"at_ms": None, "leader": False, "alerts_sent": 0, "groups_sent": 0,
                        "incidents_changed": 0}  # fmt: skip
            if self.leader.taken_over and self.replicated:
                with self.lock:
                    self._take_over()
        if at_ms is None and self.cfg.clock == "data" and int(getattr(self.store, "newest_ms", 0) or 0) <= 0:
            # no data clock yet (a remote store's first refresh): a round at the wall clock would put
            # every group's last evaluation ahead of the data, and none would be due again
            return {"at_ms": None, "alerts_sent": 0, "groups_sent": 0, "incidents_changed": 0}
        at = self.clock_ms() if at_ms is None else at_ms
        with self.lock:
            if self.replicated:
                self._merge_external()
                self.catalog.armed = True
            try:
                to_send = self.evaluator.evaluate(at)
                out = self.process(at, to_send)
            finally:
                if self.replicated:
                    self.catalog.armed = False
            if self.leader is not None:
                wm = self.leader.lease.watermark_ms if self.leader.lease is not None else None
                if not self.leader.commit(max(at, wm or at), self._checkpoint() if self.replicated else None):
                    log.warning("alerting lease lost during the round at %d; the new holder goes on", at)
        self.last_step_s = time.perf_counter() - t0
        self.last_at_ms = at
        self.steps += 1
        if self.metrics is not None:
            self.metrics.stepped(self)
        return out

    # ------------------------------------------------------------------ replicas
    def _checkpoint(self) -> dict[str, Any]:
        """The alert states of every rule and the notification state, for the next lease holder."""
        groups = {}
        for gs in self.evaluator.groups:
            rules = {str(i): [dataclasses.asdict(a) for a in rs.active.values()] for i, rs in enumerate(gs.rules)}
            groups[gs.group.name] = {"last_eval_ms": gs.last_eval_ms, "rules": rules}
        sent = [[n, k, d, at] for (n, k), (d, at) in self.dispatcher._sent.items()]
        return {"version": 1, "groups": groups, "sent": sent}

    def _restore(self, state: Any) -> bool:
        if not isinstance(state, dict) or state.get("version") != 1:
            return False
        groups = state.get("groups") or {}
        for gs in self.evaluator.groups:
            g = groups.get(gs.group.name)
            if g is None:
                continue
            gs.last_eval_ms = g.get("last_eval_ms")
            for i, rs in enumerate(gs.rules):
                rows = g["rules"].get(str(i), [])
                rs.active = {d["fingerprint"]: Alert(**d) for d in rows if d.get("rule") == rs.rule.name}
                rs.last_eval_ms = gs.last_eval_ms
        for n, k, d, at in state.get("sent") or []:
            self.dispatcher._sent[(n, k)] = (d, float(at))
        return True

    def _reload(self) -> None:
        """Incidents and silences as the catalog has them now."""
        if self.incidents is not None:
            self.incidents = IncidentManager(self.catalog, **self._incident_args)
            self.diagnostics.load(self.incidents)
        self.silences = Silences(self.catalog)

    def _take_over(self) -> None:
        """This replica just got the alerting lease: carry on from the last holder's checkpoint."""
        _, state = self.leader.checkpoint()
        if self._restore(state):
            self.restored += 1
        self._reload()

    def _follow(self) -> None:
        """Not the leader: show the leader's alerts and the catalog's incidents; evaluate nothing."""
        if not self.replicated:
            return
        _, state = self.leader.checkpoint()
        for rs in self.evaluator.rules():
            rs.active = {}
        self._restore(state)
        self._reload()

    def _merge_external(self) -> None:
        """Acknowledgements and resolutions made on other replicas (their later timeline wins)."""
        if self.incidents is None:
            return
        mgr = self.incidents
        for d in self.catalog.load_incidents():
            try:
                ext = Incident.from_dict(d)
            except (KeyError, TypeError, ValueError):
                continue
            mem = mgr.incidents.get(ext.id)
            if mem is not None and ext.last_activity_ms <= mem.last_activity_ms:
                continue
            mgr.incidents[ext.id] = ext
            for fp in [fp for fp, iid in mgr.by_alert.items() if iid == ext.id]:
                mgr.by_alert.pop(fp)
            if ext.state != "resolved":
                for fp, a in ext.alerts.items():
                    if a["state"] == "firing":
                        mgr.by_alert[fp] = ext.id
        self.silences = Silences(self.catalog)

    def replay(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """Evaluate a past span (range queries) and process each step as the live loop would."""
        sent = {"alerts": 0, "groups": 0}

        def on_step(ts: int, to_send: list[Alert]) -> None:
            r = self.process(ts, to_send)
            sent["alerts"] += r["alerts_sent"]
            sent["groups"] += r["groups_sent"]
            self.last_at_ms = ts

        with self.lock:
            steps = self.evaluator.replay(start_ms, end_ms, on_step)
        return {"steps": steps, **sent}

    def process(self, at_ms: int, to_send: list[Alert]) -> dict[str, Any]:
        changed: list[Incident] = []
        if self.incidents is not None:
            complete = all(g.last_eval_ms is not None for g in self.evaluator.groups)
            changed = self.incidents.observe(
                self.evaluator.alerts(include_inactive=True), at_ms, complete=complete
            )
            changed = self._diagnose(at_ms, changed)
        unmuted = [a for a in to_send if not self.silences.muted_by(a.labels, at_ms)]
        extra: dict[str, dict[str, str]] = {}
        if self.incidents is not None:
            for a in unmuted:
                inc = self.incidents.incident_of(a.fingerprint) or self._last_incident(a)
                if inc is not None:
                    extra[a.fingerprint] = incident_annotations(inc)
        alerts_sent = self.dispatcher.submit_alerts(unmuted, extra) if unmuted else 0
        groups_sent = 0
        for grp in self._groups(changed, at_ms):
            groups_sent += self.dispatcher.submit_group(grp)
        return {
            "at_ms": at_ms,
            "alerts_sent": alerts_sent,
            "groups_sent": groups_sent,
            "incidents_changed": len(changed),
        }

    def _diagnose(self, at_ms: int, changed: list[Incident]) -> list[Incident]:
        """Diagnostics the changed incidents ask for, and results that came in (alerting.diagnostics)."""
        try:
            more = self.diagnostics.step(at_ms, self.incidents, changed)
        except Exception as e:  # diagnostics must never stop alerting
            log.exception("diagnostics step failed")
            self.last_error = f"diagnostics: {type(e).__name__}: {e}"
            return changed
        seen = {i.id for i in changed}
        return changed + [i for i in more if i.id not in seen]

    def advance(self, at_ms: int) -> dict[str, Any]:
        """Diagnostics only (no rule evaluation) at ``at_ms``: results that arrived after the last
        round, applied and notified (with the incidents' alerts re-sent to Alertmanager with their
        new cause). For a replayed or simulated span whose diagnostics finish after its data."""
        with self.lock:
            if self.incidents is None:
                return {"incidents_changed": 0, "groups_sent": 0}
            changed = self._diagnose(at_ms, [])
            live = {a.fingerprint: a for a in self.evaluator.alerts(include_inactive=True)}
            alerts = [live[fp] for inc in changed for fp in inc.alerts if fp in live and live[fp].state == "firing"]
            alerts = [a for a in alerts if not self.silences.muted_by(a.labels, at_ms)]
            extra = {}
            for a in alerts:
                inc = self.incidents.incident_of(a.fingerprint) or self._last_incident(a)
                if inc is not None:
                    extra[a.fingerprint] = incident_annotations(inc)
            sent = self.dispatcher.submit_alerts(alerts, extra) if alerts else 0
            groups = sum(self.dispatcher.submit_group(g) for g in self._groups(changed, at_ms))
        return {"incidents_changed": len(changed), "alerts_sent": sent, "groups_sent": groups}

    def _last_incident(self, a: Alert) -> Incident | None:
        assert self.incidents is not None
        for inc in reversed(self.incidents.list_incidents()):
            if a.fingerprint in inc.alerts:
                return inc
        return None

    def _groups(self, changed: list[Incident], at_ms: int) -> list[NotificationGroup]:
        """One notification group per changed incident (or per alert name without incidents)."""
        out = []
        if self.incidents is None:
            by_name: dict[str, list[Alert]] = {}
            for a in self.evaluator.alerts(include_inactive=True):
                if not self.silences.muted_by(a.labels, at_ms):
                    by_name.setdefault(a.rule, []).append(a)
            for name, alerts in by_name.items():
                out.append(NotificationGroup(f"alertname={name}", {"alertname": name}, alerts, title=name))
            return out
        live = {a.fingerprint: a for a in self.evaluator.alerts(include_inactive=True)}
        for inc in changed:
            alerts = [live[fp] for fp in inc.alerts if fp in live]
            alerts = [a for a in alerts if not self.silences.muted_by(a.labels, at_ms)]
            if not alerts:
                continue
            out.append(
                NotificationGroup(inc.id, {"incident": inc.id}, alerts, incident_annotations(inc), inc.title)
            )
        return out

    def slo_status(self, at_ms: int) -> list[dict[str, Any]]:
        return slo_status(self.engine, self.slos, at_ms)

    def status(self) -> dict[str, Any]:
        lease = {}
        if self.leader is not None:
            lease = {"lease": self.leader.status(), "followed_rounds": self.followed,
                     "checkpoints_restored": self.restored}  # fmt: skip
        return {
            "groups": len(self.groups),
            "rules": sum(len(g.rules) for g in self.groups),
            "steps": self.steps,
            "last_step_seconds": round(self.last_step_s, 4),
            "evaluated_at_ms": self.last_at_ms,
            "last_error": self.last_error,
            "rca": None if self.incidents is None else (self.incidents.rca_note or "available"),
            "notifications": self.dispatcher.status(),
            **lease,
        }


class _Metrics:
    """Alerting's own metrics on the server's ``/metrics``."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        r = registry
        self.evaluation = Histogram(
            "sightglass_alerting_evaluation_duration_seconds", "One evaluation round (rules, incidents, notify)",
            registry=r, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )  # fmt: skip
        self.alerts = Gauge("sightglass_alerting_alerts", "Alerts by state", ["state"], registry=r)
        self.incidents = Gauge("sightglass_alerting_incidents", "Incidents by state", ["state"], registry=r)
        self.rule_errors = Gauge(
            "sightglass_alerting_rules_unhealthy", "Rules whose last evaluation failed", registry=r
        )
        self.notifications = Counter(
            "sightglass_alerting_notifications",
            "Notifications by notifier type and outcome",
            ["type", "status"],
            registry=r,
        )

    def stepped(self, svc: AlertingService) -> None:
        self.evaluation.observe(svc.last_step_s)
        states = {"pending": 0, "firing": 0}
        for a in svc.evaluator.alerts():
            states[a.state] = states.get(a.state, 0) + 1
        for k, v in states.items():
            self.alerts.labels(k).set(v)
        if svc.incidents is not None:
            counts = {s: 0 for s in ("open", "acknowledged", "resolved")}
            for i in svc.incidents.list_incidents():
                counts[i.state] = counts.get(i.state, 0) + 1
            for k, v in counts.items():
                self.incidents.labels(k).set(v)
        self.rule_errors.set(sum(1 for rs in svc.evaluator.rules() if rs.health == "err"))

    def delivered(self, d: Any) -> None:
        self.notifications.labels(d.kind, d.status).inc()


def incident_annotations(inc: Incident) -> dict[str, str]:
    out = {"sightglass_incident": inc.id, "incident_title": inc.title}
    cause = inc.cause or {}
    if cause.get("entity"):
        fault = f" ({cause['fault']})" if cause.get("fault") else ""
        out["root_cause"] = f"{cause['entity']}{fault}"
        out["root_cause_source"] = str(cause.get("source", ""))
    if inc.rca_note:
        out["rca_note"] = inc.rca_note
    return out


def background_tasks(ctx: Any) -> list[Callable[[Any], Awaitable[Any]]]:
    cfg = alerting_config(ctx.config.alerting)
    if not cfg.enabled:
        return []
    service = ctx.extras.get("alerting")
    if service is None:
        from sightglass.scaleout.leader import leader_for

        leader = leader_for(ctx.store, "alerting")  # None on the embedded store
        service = AlertingService(ctx.store, ctx.engine, cfg, registry=ctx.metrics.registry, leader=leader)
        ctx.extras["alerting"] = service

    async def run(ctx: Any) -> None:
        try:
            next_at = time.monotonic()
            while True:
                next_at += service.cfg.interval_ms / 1000
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # a slow round eats its own wait
                next_at = max(next_at, time.monotonic() - service.cfg.interval_ms / 1000)
                try:
                    await asyncio.to_thread(service.step)
                    service.last_error = None
                except Exception as e:  # keep serving; say why on the status endpoint and in the log
                    service.last_error = f"{type(e).__name__}: {e}"
                    log.exception("alerting step failed")
        finally:
            service.close()
            if service.leader is not None:  # a clean stop hands the lease on at once
                with contextlib.suppress(Exception):
                    service.leader.leases.release()

    if service.leader is None:
        return [run]
    from sightglass.scaleout.leader import keep_alive

    async def renew(ctx: Any) -> None:
        await keep_alive(service.leader)

    return [run, renew]


def get_service(ctx: Any) -> AlertingService | None:
    """The server's alerting service (created on first use by the routes when the loop is not running)."""
    svc: AlertingService | None = ctx.extras.get("alerting")
    if svc is None:
        cfg = alerting_config(ctx.config.alerting)
        if not cfg.enabled:
            return None
        svc = AlertingService(ctx.store, ctx.engine, cfg)
        ctx.extras["alerting"] = svc
    return svc
