"""``POST /api/v1/rca`` and the Alertmanager webhook through the real app, with hostile input."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import httpx
import pytest
from rca_helpers import Scenario

from sightglass.config import Config
from sightglass.server import build_app
from sightglass.timeutil import format_ts


def _post(sc: Scenario, path: str, body: Any = None, *, content: bytes | None = None, ctype: str = "application/json") -> httpx.Response:
    app, _ = build_app(Config(data=str(sc.store.data_dir)), sc.store)
    raw = content if content is not None else json.dumps(body).encode()

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sg") as c:
            return await c.post(path, content=raw, headers={"content-type": ctype})

    return asyncio.run(go())


def test_rca_endpoint(thermal: Scenario) -> None:
    r = _post(thermal, "/api/v1/rca", {"symptom": thermal.symptom, "at": format_ts(thermal.at_ms)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    d = body["data"]
    assert d["schema"] == 1 and d["symptom"]["query"] == thermal.symptom
    top = d["causes"][0]
    assert top["entity"]["kind"] == "gpu"
    assert all(k in top for k in ("fault", "score", "onset", "evidence", "action"))
    assert {"signals", "events", "peers", "path", "members"} <= set(top["evidence"])
    # Unix seconds work as well, and top limits the answer
    r2 = _post(thermal, "/api/v1/rca", {"symptom": thermal.symptom, "at": thermal.at_ms / 1000, "top": 1})
    assert r2.status_code == 200 and len(r2.json()["data"]["causes"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ([1, 2], 400, "JSON object"),
        ({"at": "now"}, 400, "symptom"),
        ({"symptom": "   "}, 400, "symptom"),
        ({"symptom": "up", "at": "yesterday-ish"}, 400, "at"),
        ({"symptom": "up", "at": True}, 400, "at"),
        ({"symptom": "up", "at": "nan"}, 400, "at"),
        ({"symptom": "up", "top": 0}, 400, "top"),
        ({"symptom": "up", "top": "5"}, 400, "top"),
        ({"symptom": "up", "window": "1s"}, 400, "window"),
        ({"symptom": "up", "evil": 1}, 400, "unknown"),
        ({"symptom": "up\x00"}, 400, "NUL"),
        ({"symptom": "x" * 20_000}, 400, "longer"),
        ({"symptom": "sum(rate(x[5m]"}, 400, "cannot evaluate"),
        ({"symptom": "up", "at": 1e300}, 400, "at"),
    ],
)
def test_rca_bad_input(thermal: Scenario, body: Any, status: int, needle: str) -> None:
    r = _post(thermal, "/api/v1/rca", body)
    assert r.status_code == status, r.text
    j = r.json()
    assert j["status"] == "error" and needle in j["error"]


def test_rca_malformed_and_oversized(thermal: Scenario) -> None:
    r = _post(thermal, "/api/v1/rca", content=b'{"symptom": ')
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = _post(thermal, "/api/v1/rca", content=b"")
    assert r.status_code == 400
    r = _post(thermal, "/api/v1/rca", content=b"\xff\xfe{}")
    assert r.status_code == 400
    r = _post(thermal, "/api/v1/rca", content=b"symptom=up", ctype="application/x-www-form-urlencoded")
    assert r.status_code == 400 and "content type" in r.json()["error"]
    big = json.dumps({"symptom": "up", "pad": "x" * (2 << 20)}).encode()
    r = _post(thermal, "/api/v1/rca", content=big)
    assert r.status_code == 413 and r.json()["errorType"] == "too_large"


def _alert(**kw: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"status": "firing", "labels": {"alertname": "StepTimeHigh"}, "annotations": {}}
    a.update(kw)
    return a


def _payload(*alerts: Any, version: str = "4") -> dict[str, Any]:
    return {
        "version": version, "groupKey": "{}:{}", "status": "firing", "receiver": "sightglass",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts),
    }


def test_alertmanager_webhook(thermal: Scenario) -> None:
    starts = format_ts(thermal.at_ms - 60_000)
    gen = "http://prom:9090/graph?" + urllib.parse.urlencode({"g0.expr": thermal.symptom, "g0.tab": "1"})
    job = thermal.symptom.split('"')[1]
    alerts = [
        _alert(generatorURL=gen, startsAt=starts),
        _alert(annotations={"expr": thermal.symptom}, startsAt=starts),
        _alert(labels={"alertname": "JobSlow", "slurm_job_id": job, "severity": "page"}, startsAt=starts),
        _alert(status="resolved", annotations={"expr": "up"}, startsAt=starts),
    ]
    r = _post(thermal, "/api/v1/rca/alertmanager", _payload(*alerts))
    assert r.status_code == 200, r.text
    out = r.json()["data"]
    assert len(out) == 3  # the resolved alert is skipped
    for d in out[:2]:
        assert d["symptom"]["query"] == thermal.symptom and d["causes"][0]["entity"]["kind"] == "gpu"
        assert d["alert"] == "StepTimeHigh"
    assert out[2]["symptom"]["query"] == f'{{slurm_job_id="{job}"}}'
    assert f"job:{job}" in out[2]["symptom"]["entities"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("not an object", "JSON object"),
        (_payload(version="3"), "version"),
        ({"version": "4", "alerts": []}, "non-empty"),
        (_payload(*[_alert(annotations={"expr": "up"})] * 51), "more than"),
        (_payload(_alert(status="resolved", annotations={"expr": "up"})), "no firing"),
        (_payload(_alert(labels={"alertname": "X"})), "no expression"),
        (_payload(_alert(labels={"a": 1})), "strings"),
        (_payload(_alert(annotations={"expr": "up"}, startsAt="soon")), "startsAt"),
        (_payload("alert"), "object"),
    ],
)
def test_alertmanager_bad_input(thermal: Scenario, body: Any, needle: str) -> None:
    r = _post(thermal, "/api/v1/rca/alertmanager", body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
