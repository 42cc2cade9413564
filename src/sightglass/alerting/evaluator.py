"""Evaluate rule groups on the store with Prometheus' semantics (``rules/alerting.go``, ``recording.go``).

An alerting rule's result vector becomes alerts keyed by their label set: new ones are *pending*, and
*firing* once they have been active for ``for``; an alert that leaves the result is *inactive*
(resolved) at once, or after ``keep_firing_for`` when set; resolved alerts are kept 15 minutes so
their resolution is sent. A recording rule's result is written back to the store under its name
(stale markers when a series goes away), where later rules and every query see it.

``evaluate(at_ms)`` runs one instant per group (the server's loop); ``replay(start, end)`` evaluates
each rule once as a range query on the group's step grid and walks the same state machine over the
steps, which gives the same alerts as the instant evaluations at those times for a fraction of the
cost (back-filled data, tests and benchmarks).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sightglass.alerting.rules import Rule, RuleGroup
from sightglass.alerting.template import TemplateData, expand
from sightglass.model import SampleBatchBuilder, SeriesKey

RESOLVED_RETENTION_MS = 15 * 60_000
RESEND_DELAY_MS = 60_000


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (Alertmanager shows one per alert)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(labels[k].encode())
        h.update(b"\xfe")
    return h.hexdigest()


def rfc3339(ms: int | None) -> str:
    import datetime as dt

    if ms is None:
        return "0001-01-01T00:00:00Z"
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def go_e(v: float) -> str:
    """A value as the Prometheus alerts API prints it (Go ``strconv.FormatFloat(v, 'e', -1, 64)``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0e+00" if math.copysign(1.0, v) < 0 else "0e+00"
    digits, _, exp = repr(abs(v)).partition("e")
    mant = digits.replace(".", "")
    point = digits.index(".") if "." in digits else len(digits)
    lead = len(mant) - len(mant.lstrip("0"))
    e10 = (int(exp) if exp else 0) + point - 1 - lead
    mant = mant.strip("0") or "0"
    m = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
    return f"{'-' if v < 0 else ''}{m}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"


@dataclass(slots=True)
class Alert:
    """One alert of one rule (a label set), with its state and the times that matter."""

    rule: str
    group: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float
    state: str  # pending | firing | inactive
    active_at_ms: int
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    last_sent_ms: int | None = None
    valid_until_ms: int = 0
    keep_firing_since_ms: int | None = None
    expr: str = ""
    fingerprint: str = ""

    def to_api(self) -> dict[str, Any]:
        """An alert as Prometheus' ``/api/v1/alerts`` and ``/api/v1/rules`` show it."""
        d: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state,
            "activeAt": rfc3339(self.active_at_ms),
            "value": go_e(self.value),
        }
        if self.keep_firing_since_ms is not None:
            d["keepFiringSince"] = rfc3339(self.keep_firing_since_ms)
        return d

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.to_api(),
            "rule": self.rule,
            "group": self.group,
            "fingerprint": self.fingerprint,
            "firedAt": rfc3339(self.fired_at_ms) if self.fired_at_ms is not None else None,
            "resolvedAt": rfc3339(self.resolved_at_ms) if self.resolved_at_ms is not None else None,
            "active_at_ms": self.active_at_ms,
            "fired_at_ms": self.fired_at_ms,
            "resolved_at_ms": self.resolved_at_ms,
            "expr": self.expr,
        }


@dataclass(slots=True)
class RuleState:
    rule: Rule
    group: str
    health: str = "unknown"
    last_error: str = ""
    last_eval_ms: int | None = None
    eval_seconds: float = 0.0
    active: dict[str, Alert] = field(default_factory=dict)
    recorded: set[SeriesKey] = field(default_factory=set)
    samples: int = 0


@dataclass(slots=True)
class GroupState:
    group: RuleGroup
    rules: list[RuleState]
    interval_ms: int
    last_eval_ms: int | None = None
    eval_seconds: float = 0.0
    alert_series: set[SeriesKey] = field(default_factory=set)


Sample = tuple[dict[str, str], float]
Query = Callable[[str, int], list[Sample]]


class RuleEvaluator:
    """Holds the groups' state; ``evaluate`` and ``replay`` are synchronous (run them in a thread)."""

    def __init__(
        self,
        engine: Any,
        groups: list[RuleGroup],
        *,
        interval_ms: int = 60_000,
        store: Any = None,
        external_labels: dict[str, str] | None = None,
        external_url: str = "",
        write_alerts_series: bool = True,
        resend_delay_ms: int = RESEND_DELAY_MS,
    ) -> None:
        self.engine = engine
        self.store = store
        self.external_labels = dict(external_labels or {})
        self.external_url = external_url
        self.write_alerts_series = write_alerts_series
        self.resend_delay_ms = resend_delay_ms
        self.interval_ms = interval_ms
        self.groups = [
            GroupState(g, [RuleState(r, g.name) for r in g.rules], g.interval_ms or interval_ms)
            for g in groups
        ]
        self.evaluations = 0

    # ------------------------------------------------------------------ public
    def rules(self) -> Iterable[RuleState]:
        for g in self.groups:
            yield from g.rules

    def alerts(self, *, include_inactive: bool = False) -> list[Alert]:
        out = [
            a for rs in self.rules() for a in rs.active.values() if include_inactive or a.state != "inactive"
        ]
        return sorted(out, key=lambda a: (a.active_at_ms, a.rule, a.fingerprint))

    def evaluate(self, at_ms: int, *, force: bool = False) -> list[Alert]:
        """Evaluate every group that is due at ``at_ms`` (all of them with ``force``). Returns the
        alerts that need sending now (Prometheus' resend rule)."""
        for gs in self.groups:
            due = gs.last_eval_ms is None or at_ms - gs.last_eval_ms >= gs.interval_ms
            if force or due:
                self._eval_group(gs, at_ms)
        return self.to_send(at_ms)

    def replay(
        self,
        start_ms: int,
        end_ms: int,
        on_step: Callable[[int, list[Alert]], None] | None = None,
    ) -> int:
        """Evaluate ``[start_ms, end_ms]`` on each group's step grid with one range query per rule
        (groups in order, so recording rules are in the store before the groups that read them),
        then walk the alert state machines of all groups in time order; ``on_step(ts, to_send)``
        after each step. Returns the number of group steps walked."""
        steps: dict[int, list[tuple[GroupState, list[dict[int, list[Sample]] | None]]]] = {}
        for gs in self.groups:
            step = gs.interval_ms
            t0 = start_ms - start_ms % step
            if t0 < start_ms:
                t0 += step
            if t0 > end_ms:
                continue
            t1 = end_ms - end_ms % step
            per_rule = [self._range_rule(rs, t0, t1, step) for rs in gs.rules]
            for ts in range(t0, t1 + 1, step):
                steps.setdefault(ts, []).append((gs, per_rule))
        total = 0
        for ts in sorted(steps):
            for gs, per_rule in steps[ts]:
                for rs, by_ts in zip(gs.rules, per_rule, strict=True):
                    if rs.rule.kind == "alerting" and by_ts is not None:
                        self._alert_step(rs, ts, by_ts.get(ts, []))
                gs.last_eval_ms = ts
                total += 1
            if on_step is not None:
                on_step(ts, self.to_send(ts))
        return total

    def to_send(self, at_ms: int) -> list[Alert]:
        """Alerts to send now: firing ones not sent for ``resend_delay``, and new resolutions. Marks
        them sent and sets how long a receiver should consider them valid (Prometheus ``endsAt``)."""
        out = []
        valid_for = 4 * max(self.resend_delay_ms, self.interval_ms)
        for rs in self.rules():
            for a in rs.active.values():
                if a.state == "pending":
                    continue
                if a.state == "inactive":
                    if a.resolved_at_ms is None or (
                        a.last_sent_ms is not None and a.last_sent_ms >= a.resolved_at_ms
                    ):
                        continue
                elif a.last_sent_ms is not None and a.last_sent_ms + self.resend_delay_ms > at_ms:
                    continue
                a.last_sent_ms = at_ms
                a.valid_until_ms = at_ms + valid_for
                out.append(a)
        return out

    # ------------------------------------------------------------------ internals
    def _query(self, expr: str, at_ms: int) -> list[Sample]:
        res = self.engine.instant(expr, at_ms)
        if res.result_type == "scalar":
            assert res.scalar is not None
            return [({}, float(res.scalar[1]))]
        if res.result_type != "vector":
            raise ValueError(f"rule expression must give an instant vector or scalar, got {res.result_type}")
        return [(dict(s.labels), float(s.value)) for s in res.vector]

    def _eval_group(self, gs: GroupState, at_ms: int) -> None:
        t0 = time.perf_counter()
        ts = at_ms - gs.group.query_offset_ms
        for rs in gs.rules:
            r0 = time.perf_counter()
            try:
                samples = self._query(rs.rule.expr, ts)
                if gs.group.limit and len(samples) > gs.group.limit:
                    raise ValueError(f"exceeded limit of {gs.group.limit} with {len(samples)} series")
                if rs.rule.kind == "recording":
                    self._record(rs, {at_ms: samples}, [at_ms])
                    rs.health, rs.last_error = "ok", ""
                else:
                    self._alert_step(rs, at_ms, samples)
            except Exception as e:  # a broken rule must not stop the others
                rs.health, rs.last_error = "err", f"{type(e).__name__}: {e}" if not str(e) else str(e)
            rs.last_eval_ms = at_ms
            rs.eval_seconds = time.perf_counter() - r0
        if self.write_alerts_series:
            self._write_alerts(gs, at_ms)
        gs.last_eval_ms = at_ms
        gs.eval_seconds = time.perf_counter() - t0
        self.evaluations += 1

    def _range_rule(self, rs: RuleState, start: int, end: int, step: int) -> dict[int, list[Sample]] | None:
        r0 = time.perf_counter()
        try:
            res = self.engine.range(rs.rule.expr, start, end, step)
        except Exception as e:
            rs.health, rs.last_error = "err", str(e) or type(e).__name__
            rs.last_eval_ms = end
            return None
        by_ts: dict[int, list[Sample]] = {}
        for s in res.matrix:
            lab = dict(s.labels)
            for t, v in zip(s.ts_ms.tolist(), np.asarray(s.values).tolist(), strict=True):
                by_ts.setdefault(int(t), []).append((lab, float(v)))
        if rs.rule.kind == "recording":
            self._record(rs, by_ts, list(range(start, end + 1, step)))
        rs.health, rs.last_error = "ok", ""
        rs.last_eval_ms = end
        rs.eval_seconds = time.perf_counter() - r0
        return by_ts

    def _record(self, rs: RuleState, by_ts: dict[int, list[Sample]], grid: list[int]) -> None:
        if self.store is None:
            return
        b = SampleBatchBuilder()
        prev = rs.recorded
        for ts in grid:
            now: set[SeriesKey] = set()
            for lab, v in by_ts.get(ts, []):
                out = {k: val for k, val in lab.items() if k != "__name__"}
                out.update(rs.rule.labels)
                key = SeriesKey.of(rs.rule.name, out)
                if key in now:
                    raise ValueError(
                        "vector contains metrics with the same labelset after applying rule labels"
                    )
                now.add(key)
                b.add(key, ts, v)
            for key in prev - now:
                b.add(key, ts, math.nan, stale=True)
            prev = now
        rs.recorded = prev
        rs.samples = len(prev)
        if len(b):
            self.store.append(b.build())

    def _alert_step(self, rs: RuleState, ts: int, samples: list[Sample]) -> None:
        rule = rs.rule
        seen: set[str] = set()
        results: list[tuple[str, dict[str, str], float, TemplateData]] = []
        for lab, v in samples:
            lab = {k: val for k, val in lab.items() if k != "__name__"}
            data = TemplateData(lab, v, self.external_labels, self.external_url)
            labels = dict(lab)
            for k, tmpl in rule.labels.items():
                labels[k] = expand(tmpl, data)
            labels["alertname"] = rule.name
            fp = fingerprint(labels)
            if fp in seen:  # Prometheus drops the whole evaluation; the alerts keep their state
                rs.health = "err"
                rs.last_error = "vector contains metrics with the same labelset after applying alert labels"
                return
            seen.add(fp)
            results.append((fp, labels, v, data))
        for fp, labels, v, data in results:
            annotations = {k: expand(t, data) for k, t in rule.annotations.items()}
            a = rs.active.get(fp)
            if a is not None and a.state != "inactive":
                a.value, a.annotations, a.keep_firing_since_ms = v, annotations, None
                continue
            rs.active[fp] = Alert(
                rule.name, rs.group, labels, annotations, v, "pending", ts, expr=rule.expr, fingerprint=fp
            )
        for fp, a in list(rs.active.items()):
            if fp in seen:
                if a.state == "pending" and ts - a.active_at_ms >= rule.for_ms:
                    a.state, a.fired_at_ms = "firing", ts
                continue
            if rule.keep_firing_for_ms and a.state == "firing":
                if a.keep_firing_since_ms is None:
                    a.keep_firing_since_ms = ts
                if ts - a.keep_firing_since_ms < rule.keep_firing_for_ms:
                    continue
            if a.state == "pending" or (
                a.resolved_at_ms is not None and ts - a.resolved_at_ms > RESOLVED_RETENTION_MS
            ):
                del rs.active[fp]
            elif a.state != "inactive":
                a.state, a.resolved_at_ms, a.keep_firing_since_ms = "inactive", ts, None
        rs.health, rs.last_error = "ok", ""

    def _write_alerts(self, gs: GroupState, at_ms: int) -> None:
        """``ALERTS{alertname, alertstate, ...}`` = 1 per pending/firing alert, as Prometheus writes."""
        if self.store is None:
            return
        b = SampleBatchBuilder()
        now: set[SeriesKey] = set()
        for rs in gs.rules:
            for a in rs.active.values():
                if a.state in ("pending", "firing"):
                    k1 = SeriesKey.of("ALERTS", {**a.labels, "alertstate": a.state})
                    k2 = SeriesKey.of("ALERTS_FOR_STATE", a.labels)
                    b.add(k1, at_ms, 1.0)
                    b.add(k2, at_ms, a.active_at_ms / 1000)
                    now |= {k1, k2}
        for key in gs.alert_series - now:
            b.add(key, at_ms, math.nan, stale=True)
        gs.alert_series = now
        if len(b):
            self.store.append(b.build())
