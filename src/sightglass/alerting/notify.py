"""Notifications: Alertmanager's ``/api/v2/alerts``, webhooks with the Alertmanager payload, Slack.

- **alertmanager**: every alert to send (Prometheus' resend rule: firing alerts every ``resend_delay``,
  resolutions once) is POSTed as ``[{labels, annotations, startsAt, endsAt, generatorURL}]``; the
  Alertmanager groups, deduplicates and routes them itself. Alerts in an incident carry the label
  ``sightglass_incident`` (and the annotations ``root_cause``, ``incident_title``), so a route with
  ``group_by: [sightglass_incident]`` sends one notification per incident.
- **webhook**: Sightglass acts as the Alertmanager: one notification per *group* (an incident, so a
  leaf switch failing is one POST, not one per GPU) in the Alertmanager webhook format (version 4),
  sent when the group changes (an alert joins, fires or resolves) and again every ``repeat_interval``.
- **slack**: the same groups as a Slack-compatible incoming-webhook message (``{"text": ...}``),
  which Mattermost and Rocket.Chat accept too.

Every POST is retried with exponential backoff on connection errors, 429 and 5xx (``Retry-After``
honoured up to ``max_backoff``); a 4xx other than 429 is the receiver refusing the payload, so it is
not retried. Deliveries run on a worker thread and are logged (``Dispatcher.deliveries``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sightglass.alerting.config import NotifierConfig
from sightglass.alerting.evaluator import Alert, rfc3339
from sightglass.config import parse_duration_ms

log = logging.getLogger("sightglass.alerting")

USER_AGENT = "Sightglass-Alerting"


def generator_url(external_url: str, expr: str) -> str:
    return f"{external_url.rstrip('/')}/graph?g0.expr={quote(expr, safe='')}&g0.tab=1"


def alert_payload(
    a: Alert, external_url: str, extra_annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """One alert as Alertmanager's API v2 (``postableAlert``) and webhook ``alerts[]`` carry it."""
    resolved = a.state == "inactive"
    return {
        "status": "resolved" if resolved else "firing",
        "labels": dict(a.labels),
        "annotations": {**a.annotations, **(extra_annotations or {})},
        "startsAt": rfc3339(a.fired_at_ms if a.fired_at_ms is not None else a.active_at_ms),
        "endsAt": rfc3339(a.resolved_at_ms if resolved else (a.valid_until_ms or None)),
        "generatorURL": generator_url(external_url, a.expr),
        "fingerprint": a.fingerprint,
    }


@dataclass(slots=True)
class NotificationGroup:
    """What one webhook/Slack notification is about: a key (the incident) and its alerts."""

    key: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    extra_annotations: dict[str, str] = field(default_factory=dict)
    title: str = ""

    @property
    def status(self) -> str:
        return "firing" if any(a.state == "firing" for a in self.alerts) else "resolved"

    def digest(self) -> str:
        """Changes when what a receiver would see changes (alerts joining, firing, resolving)."""
        h = hashlib.blake2b(digest_size=8)
        for a in sorted(self.alerts, key=lambda x: x.fingerprint):
            h.update(f"{a.fingerprint}:{a.state};".encode())
        h.update(json.dumps(self.extra_annotations, sort_keys=True).encode())
        return h.hexdigest()


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_body(
    group: NotificationGroup, receiver: str, external_url: str, *, max_alerts: int = 0
) -> dict[str, Any]:
    """The Alertmanager webhook payload (``<webhook_config>``, version 4) for one group."""
    alerts = [
        alert_payload(a, external_url, group.extra_annotations) for a in group.alerts if a.state != "pending"
    ]
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    group_key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group.group_labels.items())) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": truncated,
        "status": group.status,
        "receiver": receiver,
        "groupLabels": dict(group.group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


def slack_body(group: NotificationGroup, external_url: str) -> dict[str, Any]:
    firing = [a for a in group.alerts if a.state == "firing"]
    icon = ":red_circle:" if firing else ":white_check_mark:"
    head = f"{icon} [{group.status.upper()}{':' + str(len(firing)) if firing else ''}] {group.title or group.key}"
    lines = [head]
    cause = group.extra_annotations.get("root_cause")
    if cause:
        lines.append(f"*Root cause:* {cause}")
    for a in group.alerts[:10]:
        summary = a.annotations.get("summary") or a.annotations.get("description") or a.rule
        runbook = a.annotations.get("runbook_url")
        lines.append(f"• {a.rule} ({a.state}): {summary}" + (f" <{runbook}|runbook>" if runbook else ""))
    if len(group.alerts) > 10:
        lines.append(f"… and {len(group.alerts) - 10} more")
    if external_url:
        lines.append(f"<{external_url.rstrip('/')}/api/v1/incidents|incidents>")
    return {"text": "\n".join(lines)}


@dataclass(slots=True)
class Delivery:
    notifier: str
    kind: str
    key: str
    status: str  # ok | failed
    attempts: int
    http_status: int | None
    error: str
    alerts: int
    queued_at: float  # wall clock, seconds
    done_at: float
    incidents: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "notifier": self.notifier,
            "kind": self.kind,
            "key": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "http_status": self.http_status,
            "error": self.error,
            "alerts": self.alerts,
            "latency_seconds": round(self.done_at - self.queued_at, 4),
            "incidents": list(self.incidents),
        }


@dataclass(slots=True)
class _Job:
    notifier: NotifierConfig
    url: str
    body: Any
    key: str
    alerts: int
    queued_at: float
    incidents: tuple[str, ...] = ()


class Dispatcher:
    """Queues notifications and posts them from a worker thread, with retries and dedup."""

    def __init__(
        self,
        notifiers: list[NotifierConfig],
        *,
        external_url: str = "",
        repeat_interval_ms: int = 4 * 3_600_000,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.notifiers = notifiers
        self.external_url = external_url
        self.repeat_interval_ms = repeat_interval_ms
        self._client = httpx.Client(transport=transport, headers={"User-Agent": USER_AGENT})
        self._sleep = sleep
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}  # (notifier, key) -> (digest, at)
        self.deliveries: deque[Delivery] = deque(maxlen=2000)
        self.on_delivery: Callable[[Delivery], None] | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sightglass-notify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ submit
    def submit_alerts(self, alerts: list[Alert], extra: dict[str, dict[str, str]] | None = None) -> int:
        """Send ``alerts`` to every Alertmanager notifier (``extra``: annotations by fingerprint)."""
        n = 0
        for nc in self.notifiers:
            if nc.type != "alertmanager":
                continue
            items = [
                alert_payload(a, self.external_url, (extra or {}).get(a.fingerprint))
                for a in alerts
                if nc.send_resolved or a.state != "inactive"
            ]
            for it in items:
                it.pop("status", None)
                it.pop("fingerprint", None)
                inc = it["annotations"].get("sightglass_incident")
                if inc:  # a label, so an Alertmanager route can group_by: [sightglass_incident]
                    it["labels"]["sightglass_incident"] = inc
            if items:
                incs = tuple(
                    sorted(
                        {
                            i["labels"]["sightglass_incident"]
                            for i in items
                            if "sightglass_incident" in i["labels"]
                        }
                    )
                )
                self._put(_Job(nc, nc.url + "/api/v2/alerts", items, "alerts", len(items), time.time(), incs))
                n += 1
        return n

    def submit_group(self, group: NotificationGroup, *, now_ms: int | None = None) -> int:
        """Send ``group`` to every webhook/Slack notifier unless they already have this version of it
        (and the repeat interval has not passed)."""
        now = time.time() if now_ms is None else now_ms / 1000
        digest = group.digest()
        n = 0
        for nc in self.notifiers:
            if nc.type == "alertmanager":
                continue
            if group.status == "resolved" and not nc.send_resolved:
                continue
            last = self._sent.get((nc.label, group.key))
            if last is not None and last[0] == digest and now - last[1] < self.repeat_interval_ms / 1000:
                continue
            if last is None and group.status == "resolved":
                continue  # never told them it fired: nothing to resolve
            self._sent[(nc.label, group.key)] = (digest, now)
            if nc.type == "webhook":
                body: Any = webhook_body(group, nc.name or "sightglass", self.external_url)
            else:
                body = slack_body(group, self.external_url)
            self._put(_Job(nc, nc.url, body, group.key, len(group.alerts), time.time(), (group.key,)))
            n += 1
        return n

    def _put(self, job: _Job) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put(job)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued notification has been delivered or given up on."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._client.close()

    def status(self) -> dict[str, Any]:
        recent = list(self.deliveries)
        return {
            "notifiers": [{"name": n.label, "type": n.type, "url": n.url} for n in self.notifiers],
            "queued": self._pending,
            "delivered": sum(1 for d in recent if d.status == "ok"),
            "failed": sum(1 for d in recent if d.status == "failed"),
            "recent": [d.to_dict() for d in recent[-20:]],
        }

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                d = self._deliver(job)
                self.deliveries.append(d)
                if self.on_delivery is not None:
                    self.on_delivery(d)
            except Exception as e:  # pragma: no cover - a bug, but never kill the worker
                log.exception("notification failed: %s", e)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _deliver(self, job: _Job) -> Delivery:
        nc = job.notifier
        timeout = parse_duration_ms(nc.timeout) / 1000
        delay = parse_duration_ms(nc.backoff) / 1000
        max_delay = parse_duration_ms(nc.max_backoff) / 1000
        status: int | None = None
        error = ""
        attempt = 0
        for attempt in range(1, nc.max_attempts + 1):
            retry_after: float | None = None
            try:
                r = self._client.post(job.url, json=job.body, headers=nc.headers, timeout=timeout)
                status = r.status_code
                if 200 <= status < 300:
                    return self._done(job, "ok", attempt, status, "")
                error = f"HTTP {status}: {r.text[:300]}"
                if status != 429 and status < 500:
                    break  # the receiver refuses this payload: retrying will not help
                ra = r.headers.get("Retry-After")
                if ra and ra.strip().isdigit():
                    retry_after = float(ra)
            except httpx.HTTPError as e:
                status, error = None, f"{type(e).__name__}: {e}"
            if attempt < nc.max_attempts:
                self._sleep(min(max_delay, retry_after if retry_after is not None else delay))
                delay = min(max_delay, delay * 2)
        log.warning("notification to %s failed after %d attempt(s): %s", nc.label, attempt, error)
        return self._done(job, "failed", attempt, status, error)

    def _done(self, job: _Job, status: str, attempts: int, http: int | None, error: str) -> Delivery:
        nc = job.notifier
        if status == "failed" and job.key != "alerts":
            self._sent.pop((nc.label, job.key), None)  # try again at the next evaluation
        return Delivery(
            nc.label, nc.type, job.key, status, attempts, http, error, job.alerts, job.queued_at, time.time(),
            job.incidents,
        )  # fmt: skip
