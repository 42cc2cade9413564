"""Notifications to real local receivers: the Alertmanager webhook payload, Slack bodies, retries with
backoff (5xx, 429 + Retry-After, connection refused), no retry on 4xx, dedup, and a real Alertmanager."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from sightglass.alerting.config import NotifierConfig
from sightglass.alerting.evaluator import Alert
from sightglass.alerting.notify import Dispatcher, NotificationGroup

T0 = 1_800_000_000_000


def _alert(name: str = "GpuFellOffBus", state: str = "firing", gpu: str = "3", **kw: Any) -> Alert:
    labels = {"alertname": name, "Hostname": "node-01", "gpu": gpu, "severity": "critical"}
    a = Alert(name, "g", labels, {"summary": f"GPU {gpu} gone", "runbook_url": "docs/alerting.md#x"}, 79.0, state,
              T0, fired_at_ms=T0 + 60_000, expr='DCGM_FI_DEV_XID_ERRORS{err_code="79"} > 0',
              fingerprint=f"fp{gpu}{name}", **kw)  # fmt: skip
    if state == "inactive":
        a.resolved_at_ms = T0 + 600_000
    return a


def _nc(kind: str, url: str, **kw: Any) -> NotifierConfig:
    return NotifierConfig.model_validate(
        {"type": kind, "url": url, "backoff": "10ms", "max_backoff": "50ms", **kw}
    )


def test_webhook_payload_is_alertmanagers(receiver: Any) -> None:
    d = Dispatcher([_nc("webhook", receiver.url + "/hook", name="oncall")], external_url="http://sg:9464")
    try:
        g = NotificationGroup("inc-1", {"incident": "inc-1"}, [_alert(gpu="3"), _alert(gpu="4")],
                              {"root_cause": "switch:leaf-01"}, "IbSwitchDown on switch:leaf-01")  # fmt: skip
        assert d.submit_group(g) == 1
        (req,) = receiver.wait(1)
        body = req.body
        assert req.path == "/hook" and req.headers["Content-Type"] == "application/json"
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "oncall"
        assert body["groupKey"] == '{}:{incident="inc-1"}' and body["groupLabels"] == {"incident": "inc-1"}
        assert body["truncatedAlerts"] == 0 and body["externalURL"] == "http://sg:9464"
        assert body["commonLabels"] == {
            "alertname": "GpuFellOffBus",
            "Hostname": "node-01",
            "severity": "critical",
        }
        assert body["commonAnnotations"]["root_cause"] == "switch:leaf-01"
        a = body["alerts"][0]
        assert set(a) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert a["startsAt"] == "2027-01-15T08:01:00.000Z"
        assert a["generatorURL"].startswith("http://sg:9464/graph?g0.expr=DCGM_FI_DEV_XID_ERRORS")
        # the same group again: deduplicated; a change (one resolves): sent
        assert d.submit_group(g) == 0
        g2 = NotificationGroup(
            "inc-1", {"incident": "inc-1"}, [_alert(gpu="3"), _alert(gpu="4", state="inactive")]
        )
        assert d.submit_group(g2) == 1
        reqs = receiver.wait(2)
        assert [x["status"] for x in reqs[1].body["alerts"]] == ["firing", "resolved"]
        assert reqs[1].body["alerts"][1]["endsAt"] == "2027-01-15T08:10:00.000Z"
    finally:
        d.close()


def test_slack_message(receiver: Any) -> None:
    d = Dispatcher([_nc("slack", receiver.url + "/slack")], external_url="http://sg:9464")
    try:
        d.submit_group(
            NotificationGroup("inc-9", {"incident": "inc-9"}, [_alert()], {"root_cause": "gpu:GPU-1"}, "t")
        )
        (req,) = receiver.wait(1)
        text = req.body["text"]
        assert text.startswith(":red_circle: [FIRING:1] t")
        assert "*Root cause:* gpu:GPU-1" in text and "<docs/alerting.md#x|runbook>" in text
    finally:
        d.close()


def test_retries_with_backoff_then_success(receiver: Any) -> None:
    receiver.statuses = [500, 503, 429]
    receiver.retry_after = "0"
    d = Dispatcher([_nc("webhook", receiver.url)])
    try:
        d.submit_group(NotificationGroup("k", {"alertname": "X"}, [_alert()]))
        assert d.flush(10)
        assert len(receiver.wait(4)) == 4
        (dl,) = list(d.deliveries)
        assert dl.status == "ok" and dl.attempts == 4 and dl.http_status == 200
    finally:
        d.close()


def test_client_errors_are_not_retried_and_failures_are_resent_later(receiver: Any) -> None:
    receiver.statuses = [400]
    d = Dispatcher([_nc("webhook", receiver.url, max_attempts=5)])
    try:
        g = NotificationGroup("k", {"alertname": "X"}, [_alert()])
        d.submit_group(g)
        assert d.flush(10)
        (dl,) = list(d.deliveries)
        assert dl.status == "failed" and dl.attempts == 1 and "HTTP 400" in dl.error
        assert len(receiver.requests) == 1
        # a failed group is not remembered as sent: the next round sends it again
        assert d.submit_group(g) == 1
        assert d.flush(10)
        assert list(d.deliveries)[-1].status == "ok"
    finally:
        d.close()


def test_unreachable_receiver_gives_up_after_max_attempts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connection refused
    d = Dispatcher([_nc("webhook", f"http://127.0.0.1:{port}", max_attempts=3)])
    try:
        t0 = time.monotonic()
        d.submit_group(NotificationGroup("k", {"alertname": "X"}, [_alert()]))
        assert d.flush(10)
        (dl,) = list(d.deliveries)
        assert dl.status == "failed" and dl.attempts == 3 and dl.http_status is None
        assert "ConnectError" in dl.error
        assert time.monotonic() - t0 >= 0.02  # slept 10 ms then 20 ms between attempts
    finally:
        d.close()


def test_resolved_without_a_firing_first_is_not_sent(receiver: Any) -> None:
    d = Dispatcher([_nc("webhook", receiver.url)])
    try:
        assert d.submit_group(NotificationGroup("k", {"alertname": "X"}, [_alert(state="inactive")])) == 0
    finally:
        d.close()


def test_real_alertmanager_accepts_our_alerts(alertmanager: Any) -> None:
    """POST /api/v2/alerts on a real Alertmanager; it lists them and routes them to its webhook."""
    d = Dispatcher([_nc("alertmanager", alertmanager.url)], external_url="http://sg:9464")
    try:
        now = int(time.time() * 1000)
        a = _alert()
        a.fired_at_ms, a.valid_until_ms = now - 1000, now + 600_000
        assert (
            d.submit_alerts([a], {a.fingerprint: {"sightglass_incident": "inc-1", "root_cause": "gpu:X"}})
            == 1
        )
        assert d.flush(10)
        (dl,) = list(d.deliveries)
        assert dl.status == "ok" and dl.http_status == 200, dl.error
        listed = httpx.get(alertmanager.url + "/api/v2/alerts", timeout=5).json()
        assert len(listed) == 1
        got = listed[0]
        assert got["labels"]["alertname"] == "GpuFellOffBus" and got["status"]["state"] == "active"
        assert got["annotations"]["root_cause"] == "gpu:X"
        # Alertmanager itself notifies its webhook receiver with the same alert
        (hook,) = alertmanager.webhook.wait(1, timeout=15)
        assert hook.path == "/am" and hook.body["alerts"][0]["labels"]["alertname"] == "GpuFellOffBus"
        assert hook.body["groupLabels"] == {"sightglass_incident": "inc-1"}
    finally:
        d.close()


def test_real_alertmanager_refuses_a_malformed_alert(alertmanager: Any) -> None:
    """Our client reports the Alertmanager's 400 without retrying (an alert with no labels)."""
    d = Dispatcher([_nc("alertmanager", alertmanager.url)])
    try:
        a = _alert()
        a.labels = {}
        d.submit_alerts([a])
        assert d.flush(10)
        (dl,) = list(d.deliveries)
        assert dl.status == "failed" and dl.http_status == 400 and dl.attempts == 1
    finally:
        d.close()


def test_service_sends_one_group_per_incident_and_honours_silences(receiver: Any, tmp_path: Any) -> None:
    """The whole loop on a real store: an alert fires, its incident goes to the webhook once per change;
    a silence on it holds the notification back while the incident still opens."""
    from sightglass.alerting.catalog import MemoryCatalog
    from sightglass.alerting.rules import load_rule_text
    from sightglass.alerting.service import AlertingService
    from sightglass.model import SampleBatchBuilder, SeriesKey
    from sightglass.promql.engine import Engine
    from sightglass.store.duckdb import DuckDBStore, StoreOptions

    rules = load_rule_text(
        "groups: [{name: g, interval: 30s, rules: [{alert: Hot, expr: 'temp > 85', for: 1m,"
        " labels: {severity: critical}, annotations: {summary: 'hot {{ $labels.Hostname }}'}}]}]"
    )
    for silenced in (False, True):
        store = DuckDBStore(tmp_path / f"s{silenced}", options=StoreOptions(compact_every_s=3600))
        try:
            b = SampleBatchBuilder()
            for i in range(60):  # 10 minutes at 10 s: hot from 2 to 6 minutes
                ts = T0 + i * 10_000
                b.add(
                    SeriesKey.of("temp", {"Hostname": "n1"}),
                    ts,
                    90.0 if 120_000 <= i * 10_000 < 360_000 else 70.0,
                )
            store.append(b.build())
            hook = f"{receiver.url}/s{silenced}"
            svc = AlertingService(store, Engine(store), {"notifiers": [{"type": "webhook", "url": hook}]},
                                  groups=rules, rca=False, catalog=MemoryCatalog())  # fmt: skip
            if silenced:
                svc.silences.add(
                    {"matchers": [{"name": "alertname", "value": "Hot"}], "endsAt": (T0 + 3_600_000) / 1000},
                    T0,
                )
            svc.replay(T0, T0 + 10 * 60_000)
            assert svc.dispatcher.flush(10)
            assert svc.incidents is not None and len(svc.incidents.list_incidents()) == 1
            posts = [p for p in receiver.requests if p.path == f"/s{silenced}"]
            if silenced:
                assert posts == []
            else:
                assert [p.body["status"] for p in posts] == ["firing", "resolved"]
                assert posts[0].body["alerts"][0]["annotations"]["summary"] == "hot n1"
            svc.close()
        finally:
            store.close()
