"""The catalog on PostgreSQL: entities, relations, events, configs, incidents, cost rollups, leases.

:class:`PostgresCatalog` has the catalog methods of the embedded store (``append_events``,
``query_events``, ``upsert_entities``, ``entities``, ``append_relations``, ``relations``,
``append_configs``, spans, logs, lineage) with the same arguments and answers, so the topology,
analytics and API run on either. Several Sightglass replicas share one database; the ``leases`` and
``analytics_batches`` tables coordinate them (``sightglass.scaleout.leases``). The schema is created
at open (idempotent ``CREATE TABLE IF NOT EXISTS``) and versioned in ``sightglass_meta``; see
``docs/scaleout.md`` for every table.

One connection per thread (psycopg connections are not shared across threads); every write is one
transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sightglass.model import ConfigSnapshot, Entity, Event, LineageEvent, LogRecord, Relation, Span
from sightglass.store.base import StoreError
from sightglass.store.rows import config_row, event_row, lineage_row, log_row, span_row, to_json

SCHEMA_VERSION = 2  # 2: leases.state (the checkpoint of leader-held work)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sightglass_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY, ts BIGINT NOT NULL, end_ts BIGINT, kind TEXT NOT NULL,
    severity TEXT NOT NULL, source TEXT NOT NULL, entity JSONB NOT NULL, attributes JSONB NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, labels JSONB NOT NULL, attributes JSONB NOT NULL,
    updated_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS entities_kind ON entities (kind);
CREATE TABLE IF NOT EXISTS relations (
    id BIGSERIAL PRIMARY KEY, src TEXT NOT NULL, kind TEXT NOT NULL, dst TEXT NOT NULL,
    start_ms BIGINT NOT NULL, end_ms BIGINT);
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT, span_id TEXT, parent_span_id TEXT, name TEXT, kind INTEGER, start_ns BIGINT,
    end_ns BIGINT, status_code INTEGER, status_message TEXT, service TEXT, attributes JSONB,
    resource JSONB, events JSONB);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE TABLE IF NOT EXISTS logs (
    ts_ns BIGINT, observed_ns BIGINT, severity_number INTEGER, severity_text TEXT, body TEXT,
    trace_id TEXT, span_id TEXT, service TEXT, attributes JSONB, resource JSONB);
CREATE TABLE IF NOT EXISTS lineage (
    id BIGSERIAL PRIMARY KEY, ts BIGINT NOT NULL, event_type TEXT, job_namespace TEXT, job_name TEXT,
    run_id TEXT, inputs JSONB, outputs JSONB, payload JSONB);
CREATE INDEX IF NOT EXISTS lineage_ts ON lineage (ts);
CREATE TABLE IF NOT EXISTS configs (ts BIGINT NOT NULL, entity JSONB NOT NULL, config JSONB NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, opened_ms BIGINT NOT NULL, closed_ms BIGINT, state TEXT NOT NULL,
    title TEXT NOT NULL, payload JSONB NOT NULL);
CREATE TABLE IF NOT EXISTS cost_rollups (
    bucket_ms BIGINT NOT NULL, width_ms BIGINT NOT NULL, scope_kind TEXT NOT NULL, scope TEXT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL, gpu_hours DOUBLE PRECISION, tokens DOUBLE PRECISION,
    payload JSONB NOT NULL DEFAULT '{}', PRIMARY KEY (bucket_ms, width_ms, scope_kind, scope));
CREATE TABLE IF NOT EXISTS alerting_silences (id TEXT PRIMARY KEY, payload JSONB NOT NULL);
CREATE TABLE IF NOT EXISTS metric_metadata (metric TEXT PRIMARY KEY, type TEXT, help TEXT, unit TEXT);
CREATE TABLE IF NOT EXISTS leases (
    task TEXT NOT NULL, part INTEGER NOT NULL, owner TEXT, epoch BIGINT NOT NULL DEFAULT 0,
    expires_ms BIGINT NOT NULL DEFAULT 0, watermark_ms BIGINT, PRIMARY KEY (task, part));
ALTER TABLE leases ADD COLUMN IF NOT EXISTS state BYTEA;
CREATE TABLE IF NOT EXISTS analytics_batches (
    id BIGSERIAL PRIMARY KEY, task TEXT NOT NULL, part INTEGER NOT NULL, from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL, owner TEXT NOT NULL, epoch BIGINT NOT NULL, events INTEGER NOT NULL,
    committed_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS replicas (
    id TEXT PRIMARY KEY, url TEXT, started_ms BIGINT NOT NULL, heartbeat_ms BIGINT NOT NULL);
"""


_j = to_json


def _now_ms() -> int:
    return int(time.time() * 1000)


def connect(dsn: str) -> Any:
    """A psycopg 3 connection, with an install hint when the extra is missing."""
    try:
        import psycopg
    except ImportError:  # the optional dependency
        raise StoreError("the PostgreSQL catalog needs psycopg 3: pip install 'psycopg[binary]'") from None
    try:
        return psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL ({_redact(dsn)}): {e}") from None


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return " ".join(p for p in dsn.split() if not p.startswith("password="))


class PostgresCatalog:
    """The catalog store on PostgreSQL (see the module docstring)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(7412001)")  # replicas migrating at once
            cur.execute(SCHEMA)
            cur.execute("SELECT value FROM sightglass_meta WHERE key = 'schema_version'")
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO sightglass_meta VALUES ('schema_version', %s)", [str(SCHEMA_VERSION)]
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"the PostgreSQL catalog has schema version {row[0]}, newer than this Sightglass "
                    f"({SCHEMA_VERSION}); upgrade Sightglass"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # the idempotent DDL above has just migrated it
                cur.execute("UPDATE sightglass_meta SET value = %s WHERE key = 'schema_version'",
                            [str(SCHEMA_VERSION)])  # fmt: skip

    # ------------------------------------------------------------------ connections
    def conn(self) -> Any:
        c = getattr(self._local, "conn", None)
        if c is None or c.closed:
            c = self._local.conn = connect(self.dsn)
            with self._conns_lock:
                self._conns.append(c)
        return c

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction: committed on success, rolled back on any error."""
        import psycopg

        c = self.conn()
        try:
            with c.transaction(), c.cursor() as cur:
                yield cur
        except psycopg.OperationalError as e:
            c.close()  # a fresh connection next time
            raise StoreError(f"PostgreSQL catalog error: {e}") from None

    def close(self) -> None:
        with self._conns_lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        with self.transaction() as cur:
            cur.executemany(sql, rows)
        return len(rows)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cur:
            cur.execute(sql, list(params))
            return list(cur.fetchall())

    # ------------------------------------------------------------------ events
    @staticmethod
    def event_rows(events: Sequence[Event]) -> list[tuple[Any, ...]]:
        return [event_row(e) for e in events]

    EVENT_INSERT = (
        "INSERT INTO events (ts, end_ts, kind, severity, source, entity, attributes) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )

    def append_events(self, events: Sequence[Event]) -> int:
        return self._many(self.EVENT_INSERT, self.event_rows(events))

    def query_events(
        self, start_ms: int, end_ms: int, kind: str | None = None, entity: Mapping[str, str] | None = None
    ) -> list[Event]:
        sql = "SELECT ts, end_ts, kind, severity, source, entity, attributes FROM events WHERE ts >= %s AND ts <= %s"
        params: list[Any] = [start_ms, end_ms]
        if kind:
            sql += " AND (kind = %s OR kind LIKE %s)"
            params += [kind, kind.replace("%", r"\%").replace("_", r"\_") + ".%"]
        if entity:
            sql += " AND entity @> %s::jsonb"
            params.append(_j(dict(entity)))
        rows = self._rows(sql + " ORDER BY ts, id", params)
        return [Event(ts, k, ent, attrs, sev, src, end) for ts, end, k, sev, src, ent, attrs in rows]

    # ------------------------------------------------------------------ entities and relations
    def upsert_entities(self, entities: Sequence[Entity]) -> int:
        now = _now_ms()
        return self._many(
            "INSERT INTO entities VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
            "kind = EXCLUDED.kind, labels = EXCLUDED.labels, attributes = EXCLUDED.attributes, "
            "updated_ms = EXCLUDED.updated_ms",
            [(e.id, e.kind, _j(dict(e.labels)), _j(dict(e.attributes)), now) for e in _dedup(entities)],
        )

    def entities(self, kind: str | None = None) -> list[Entity]:
        sql = "SELECT id, kind, labels, attributes FROM entities"
        rows = (
            self._rows(sql + " WHERE kind = %s ORDER BY id", [kind])
            if kind
            else self._rows(sql + " ORDER BY id")
        )
        return [Entity(i, k, lb, a) for i, k, lb, a in rows]

    def append_relations(self, relations: Sequence[Relation]) -> int:
        return self._many(
            "INSERT INTO relations (src, kind, dst, start_ms, end_ms) VALUES (%s, %s, %s, %s, %s)",
            [(r.src, r.kind, r.dst, r.start_ms, r.end_ms) for r in relations],
        )

    def relations(self) -> list[Relation]:
        rows = self._rows("SELECT src, kind, dst, start_ms, end_ms FROM relations ORDER BY id")
        return [Relation(*r) for r in rows]

    # ------------------------------------------------------------------ traces, logs, lineage, configs
    def append_spans(self, spans: Sequence[Span]) -> int:
        return self._many(
            "INSERT INTO spans VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [span_row(s) for s in spans],
        )

    def query_spans(self, trace_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        cols = ["trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns",
                "status_code", "status_message", "service", "attributes", "resource", "events"]  # fmt: skip
        sql = f"SELECT {', '.join(cols)} FROM spans"
        params: list[Any] = []
        if trace_id:
            sql += " WHERE trace_id = %s"
            params.append(trace_id)
        rows = self._rows(sql + " ORDER BY start_ns LIMIT %s", [*params, int(limit)])
        return [
            {
                c: (_j(v) if c in ("attributes", "resource", "events") else v)
                for c, v in zip(cols, r, strict=True)
            }
            for r in rows
        ]

    def append_logs(self, logs: Sequence[LogRecord]) -> int:
        return self._many("INSERT INTO logs VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", [log_row(r) for r in logs])

    def append_lineage(self, events: Sequence[LineageEvent]) -> int:
        return self._many(
            "INSERT INTO lineage (ts, event_type, job_namespace, job_name, run_id, inputs, outputs, payload) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [lineage_row(e) for e in events],
        )

    def lineage_since(self, ts_ms: int) -> list[tuple[int, str, str, str, str]]:
        """``(ts, namespace, job, inputs json, outputs json)`` of lineage events after ``ts_ms``."""
        rows = self._rows(
            "SELECT ts, job_namespace, job_name, inputs, outputs FROM lineage WHERE ts > %s ORDER BY ts",
            [ts_ms],
        )
        return [(int(t), ns, name, _j(i), _j(o)) for t, ns, name, i, o in rows]

    def append_configs(self, snapshots: Sequence[ConfigSnapshot]) -> int:
        return self._many("INSERT INTO configs VALUES (%s, %s, %s, %s)", [config_row(c) for c in snapshots])

    def configs(self, start_ms: int, end_ms: int) -> list[ConfigSnapshot]:
        rows = self._rows("SELECT ts, entity, config, source FROM configs WHERE ts >= %s AND ts <= %s ORDER BY ts",
                          [start_ms, end_ms])  # fmt: skip
        return [ConfigSnapshot(t, e, c, s or "") for t, e, c, s in rows]

    # ------------------------------------------------------------------ incidents and cost rollups
    def upsert_incident(
        self, incident_id: str, opened_ms: int, closed_ms: int | None, state: str, title: str,
        payload: Mapping[str, Any],
    ) -> None:  # fmt: skip
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO incidents VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "closed_ms = EXCLUDED.closed_ms, state = EXCLUDED.state, title = EXCLUDED.title, "
                "payload = EXCLUDED.payload",
                [incident_id, opened_ms, closed_ms, state, title, _j(dict(payload))],
            )

    def incidents(self, state: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, opened_ms, closed_ms, state, title, payload FROM incidents"
        rows = (
            self._rows(sql + " WHERE state = %s ORDER BY opened_ms", [state])
            if state
            else self._rows(sql + " ORDER BY opened_ms")
        )
        keys = ("id", "opened_ms", "closed_ms", "state", "title", "payload")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def upsert_cost_rollups(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Rows with bucket_ms, width_ms, scope_kind, scope, cost_usd (+ gpu_hours, tokens, payload)."""
        return self._many(
            "INSERT INTO cost_rollups VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
            "(bucket_ms, width_ms, scope_kind, scope) DO UPDATE SET cost_usd = EXCLUDED.cost_usd, "
            "gpu_hours = EXCLUDED.gpu_hours, tokens = EXCLUDED.tokens, payload = EXCLUDED.payload",
            [
                (
                    int(r["bucket_ms"]),
                    int(r["width_ms"]),
                    str(r["scope_kind"]),
                    str(r["scope"]),
                    float(r["cost_usd"]),
                    r.get("gpu_hours"),
                    r.get("tokens"),
                    _j(dict(r.get("payload") or {})),
                )
                for r in rows
            ],
        )

    def cost_rollups(self, start_ms: int, end_ms: int, scope_kind: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT bucket_ms, width_ms, scope_kind, scope, cost_usd, gpu_hours, tokens, payload "
               "FROM cost_rollups WHERE bucket_ms >= %s AND bucket_ms < %s")  # fmt: skip
        params: list[Any] = [start_ms, end_ms]
        if scope_kind:
            sql += " AND scope_kind = %s"
            params.append(scope_kind)
        keys = ("bucket_ms", "width_ms", "scope_kind", "scope", "cost_usd", "gpu_hours", "tokens", "payload")
        return [
            dict(zip(keys, r, strict=True)) for r in self._rows(sql + " ORDER BY bucket_ms, scope", params)
        ]

    # the alerting catalog interface (sightglass.alerting.catalog.AlertingCatalog)
    def save_incident(self, incident: Mapping[str, Any]) -> None:
        self.upsert_incident(str(incident["id"]), int(incident["opened_ms"]), incident.get("resolved_ms"),
                             str(incident["state"]), str(incident.get("title", "")), incident)  # fmt: skip

    def load_incidents(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT payload FROM (SELECT payload, opened_ms FROM incidents ORDER BY opened_ms DESC LIMIT %s) t "
            "ORDER BY opened_ms",
            [int(limit)],
        )
        return [dict(r[0]) for r in rows if isinstance(r[0], dict) and "id" in r[0]]

    def save_silence(self, silence: Mapping[str, Any]) -> None:
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO alerting_silences VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
                [str(silence["id"]), _j(dict(silence))],
            )

    def load_silences(self) -> list[dict[str, Any]]:
        return [dict(r[0]) for r in self._rows("SELECT payload FROM alerting_silences ORDER BY id")]

    # ------------------------------------------------------------------ metadata, admin
    def upsert_metadata(self, rows: Sequence[tuple[str, str, str, str]]) -> int:
        return self._many(
            "INSERT INTO metric_metadata VALUES (%s, %s, %s, %s) ON CONFLICT (metric) DO UPDATE SET "
            "type = EXCLUDED.type, help = EXCLUDED.help, unit = EXCLUDED.unit",
            list({r[0]: r for r in rows}.values()),
        )

    def metric_metadata(self) -> list[tuple[str, str, str, str]]:
        return [
            (str(a), str(b), str(c), str(d))
            for a, b, c, d in self._rows("SELECT metric, type, help, unit FROM metric_metadata")
        ]

    def count(self, table: str) -> int:
        if table not in {"events", "entities", "relations", "spans", "logs", "lineage", "configs",
                         "incidents", "cost_rollups", "analytics_batches", "leases"}:  # fmt: skip
            raise ValueError(f"unknown catalog table {table!r}")
        return int(self._rows(f"SELECT count(*) FROM {table}")[0][0])

    def stats(self) -> dict[str, Any]:
        return {"catalog": "postgres", "dsn": _redact(self.dsn), "events": self.count("events"),
                "entities": self.count("entities")}  # fmt: skip


def _dedup(entities: Sequence[Entity]) -> list[Entity]:
    """The last of each id (one INSERT ... ON CONFLICT cannot touch a row twice)."""
    return list({e.id: e for e in entities}.values())
