"""Catalog rows as both catalog backends (DuckDB, PostgreSQL) store them: one tuple shape per model
type, in table column order, with nested values as compact, key-sorted JSON."""

from __future__ import annotations

import json
from typing import Any

from sightglass.model import ConfigSnapshot, Event, LineageEvent, LogRecord, Span


def to_json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True, default=str)


def event_row(e: Event) -> tuple[Any, ...]:
    return (e.ts_ms, e.end_ts_ms, e.kind, e.severity, e.source, to_json(dict(e.entity)), to_json(dict(e.attributes)))


def span_row(s: Span) -> tuple[Any, ...]:
    return (
        s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns, s.status_code,
        s.status_message, s.service, to_json(dict(s.attributes)), to_json(dict(s.resource)), to_json(list(s.events)),
    )  # fmt: skip


def log_row(r: LogRecord) -> tuple[Any, ...]:
    return (
        r.ts_ns, r.observed_ns, r.severity_number, r.severity_text, r.body, r.trace_id, r.span_id, r.service,
        to_json(dict(r.attributes)), to_json(dict(r.resource)),
    )  # fmt: skip


def lineage_row(e: LineageEvent) -> tuple[Any, ...]:
    return (
        e.ts_ms, e.event_type, e.job_namespace, e.job_name, e.run_id,
        to_json(list(e.inputs)), to_json(list(e.outputs)), to_json(dict(e.payload)),
    )  # fmt: skip


def config_row(s: ConfigSnapshot) -> tuple[Any, ...]:
    return (s.ts_ms, to_json(dict(s.entity)), to_json(dict(s.config)), s.source)
