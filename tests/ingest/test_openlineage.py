"""OpenLineage run events → LineageEvent, with clear reasons for invalid events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sightglass.ingest.limits import BadRequest
from sightglass.ingest.openlineage import parse_events


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-24T12:00:00.250Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.0.0/integration/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": "0176a8c2-fe01-7439-87e6-56a1a1b4029f", "facets": {}},
        "job": {"namespace": "airflow", "name": "etl.tokenize_corpus"},
        "inputs": [{"namespace": "s3://raw-bucket", "name": "corpus/2026-11-24"}],
        "outputs": [{"namespace": "s3://tokens", "name": "shards/v3", "facets": {"schema": {}}}],
    }
    doc.update(overrides)
    return doc


def test_single_event() -> None:
    (e,) = parse_events(json.dumps(event()).encode())
    assert e.ts_ms == 1795521600250
    assert (e.event_type, e.job_namespace, e.job_name) == ("COMPLETE", "airflow", "etl.tokenize_corpus")
    assert e.run_id == "0176a8c2-fe01-7439-87e6-56a1a1b4029f"
    assert list(e.inputs) == ["s3://raw-bucket/corpus/2026-11-24"]
    assert list(e.outputs) == ["s3://tokens/shards/v3"]
    assert e.payload["producer"].startswith("https://github.com/OpenLineage")


def test_array_of_events_and_time_formats() -> None:
    events = parse_events(
        json.dumps(
            [
                event(eventType="START", eventTime="2026-11-24T12:00:00+01:00"),
                event(eventType="fail", eventTime="2026-11-24T12:00:00"),
            ]
        ).encode()
    )
    assert [e.event_type for e in events] == ["START", "FAIL"]
    assert events[1].ts_ms - events[0].ts_ms == 3_600_000  # naive time is UTC


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (event(eventType=None), "eventType is required"),
        (event(eventType="DONE"), "eventType 'DONE' is not one of"),
        (event(eventTime=None), "eventTime is required"),
        (event(eventTime="yesterday"), "not an ISO 8601"),
        (event(run={}), "run.runId is required"),
        (event(job=None), "job is required"),
        (event(job={"namespace": "a"}), "job.name is required"),
        (event(job={"name": "a"}), "job.namespace is required"),
        (event(inputs="s3://x"), "inputs must be an array"),
        (event(outputs=[{"name": "x"}]), r"outputs\[0\] needs string namespace and name"),
        ([event(), event(run=None)], r"event\[1\]: run.runId is required"),
        ("just a string", "must be a JSON object"),
        ([], "no events"),
    ],
)
def test_invalid_events(doc: Any, match: str) -> None:
    with pytest.raises(BadRequest, match=match) as info:
        parse_events(json.dumps(doc).encode())
    assert info.value.status == 400


def test_invalid_json() -> None:
    with pytest.raises(BadRequest, match="invalid JSON"):
        parse_events(b"{")
