"""OpenLineage run events (JSON, one event or an array) → :class:`~sightglass.model.LineageEvent`.

Required, per the OpenLineage spec's ``RunEvent``: ``eventType`` (START, RUNNING, COMPLETE, ABORT,
FAIL, OTHER), ``eventTime`` (ISO 8601; a time without an offset is taken as UTC), ``run.runId``,
``job.namespace`` and ``job.name``. Datasets become ``"<namespace>/<name>"`` strings (the
OpenLineage naming convention: ``postgres://db:5432/analytics.public.orders``). The whole event is
kept as ``payload`` so facets are not lost. One invalid event rejects the request (400) with the
index of the event and the field at fault, so a client never half-writes a batch.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from sightglass.ingest.limits import BadRequest
from sightglass.model import LineageEvent

EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})


def parse_events(body: bytes) -> list[LineageEvent]:
    """Decode a JSON body holding one run event or an array of them."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"invalid JSON: {e}", reason="decode") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BadRequest("no events in the body", reason="invalid_event")
    return [to_event(item, i if isinstance(doc, list) else None) for i, item in enumerate(items)]


def to_event(doc: Any, index: int | None = None) -> LineageEvent:
    """Validate one run event and convert it."""
    where = f"event[{index}]: " if index is not None else ""

    def fail(msg: str) -> BadRequest:
        return BadRequest(where + msg, reason="invalid_event")

    if not isinstance(doc, Mapping):
        raise fail("an event must be a JSON object")
    event_type = doc.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise fail("eventType is required (START, RUNNING, COMPLETE, ABORT, FAIL or OTHER)")
    if event_type.upper() not in EVENT_TYPES:
        raise fail(f"eventType {event_type!r} is not one of START, RUNNING, COMPLETE, ABORT, FAIL, OTHER")
    ts_ms = _parse_time(doc.get("eventTime"), fail)
    run = doc.get("run")
    if not isinstance(run, Mapping) or not isinstance(run.get("runId"), str) or not run.get("runId"):
        raise fail("run.runId is required")
    job = doc.get("job")
    if not isinstance(job, Mapping):
        raise fail("job is required (with namespace and name)")
    for part in ("namespace", "name"):
        if not isinstance(job.get(part), str) or not job.get(part):
            raise fail(f"job.{part} is required")
    return LineageEvent(
        ts_ms=ts_ms,
        event_type=event_type.upper(),
        job_namespace=job["namespace"],
        job_name=job["name"],
        run_id=run["runId"],
        inputs=_datasets(doc.get("inputs"), "inputs", fail),
        outputs=_datasets(doc.get("outputs"), "outputs", fail),
        payload=dict(doc),
    )


def _parse_time(value: Any, fail: Any) -> int:
    if not isinstance(value, str) or not value:
        raise fail("eventTime is required (ISO 8601, e.g. 2026-01-01T12:00:00.000Z)")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"eventTime {value!r} is not an ISO 8601 date-time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _datasets(value: Any, what: str, fail: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(f"{what} must be an array of datasets")
    out = []
    for i, ds in enumerate(value):
        if (
            not isinstance(ds, Mapping)
            or not isinstance(ds.get("namespace"), str)
            or not isinstance(ds.get("name"), str)
        ):
            raise fail(f"{what}[{i}] needs string namespace and name")
        out.append(f"{ds['namespace']}/{ds['name']}")
    return out
