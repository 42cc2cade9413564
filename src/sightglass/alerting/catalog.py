"""Where incidents and silences live: a small interface, with a DuckDB and an in-memory implementation.

``AlertingCatalog`` is all the alerting code needs, so the PostgreSQL catalog
(``sightglass.store.postgres.PostgresCatalog``, through ``store.alerting_catalog``) replaces the
embedded one on a scale-out store. :class:`FencedCatalog` guards it there: while the evaluation loop
runs, incident writes go through only if this replica still holds the alerting lease. The DuckDB one keeps incidents in the store's ``incidents`` table (one JSON payload per
incident next to its id, state and times) and silences in ``alerting_silences``, created here
idempotently.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Protocol


class AlertingCatalog(Protocol):
    def save_incident(self, incident: dict[str, Any]) -> None: ...
    def load_incidents(self, *, limit: int = 1000) -> list[dict[str, Any]]: ...
    def save_silence(self, silence: dict[str, Any]) -> None: ...
    def load_silences(self) -> list[dict[str, Any]]: ...


class MemoryCatalog:
    def __init__(self) -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self.silences: dict[str, dict[str, Any]] = {}

    def save_incident(self, incident: dict[str, Any]) -> None:
        self.incidents[incident["id"]] = json.loads(json.dumps(incident))

    def load_incidents(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        rows = sorted(self.incidents.values(), key=lambda d: d["opened_ms"])
        return rows[-limit:]

    def save_silence(self, silence: dict[str, Any]) -> None:
        self.silences[silence["id"]] = dict(silence)

    def load_silences(self) -> list[dict[str, Any]]:
        return list(self.silences.values())


class DuckDBCatalog:
    """Incidents and silences in the Sightglass store's DuckDB file."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._lock = threading.Lock()
        if not getattr(store, "read_only", False):
            self._exec(
                "CREATE TABLE IF NOT EXISTS alerting_silences (id VARCHAR PRIMARY KEY, payload VARCHAR)"
            )

    def _exec(self, sql: str, params: list[Any] | None = None) -> list[Any]:
        with self._lock:
            cur = self.store.cursor()
            try:
                cur.execute(sql, params or [])
                try:
                    return list(cur.fetchall())
                except Exception:
                    return []
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    def save_incident(self, incident: dict[str, Any]) -> None:
        self._exec(
            "INSERT OR REPLACE INTO incidents VALUES (?, ?, ?, ?, ?, ?)",
            [
                incident["id"],
                incident["opened_ms"],
                incident.get("resolved_ms"),
                incident["state"],
                incident["title"],
                json.dumps(incident, separators=(",", ":"), default=str),
            ],
        )

    def load_incidents(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT payload FROM (SELECT payload, opened_ms FROM incidents ORDER BY opened_ms DESC LIMIT ?) "
            "ORDER BY opened_ms",
            [limit],
        )
        out = []
        for (payload,) in rows:
            with contextlib.suppress(ValueError, TypeError):
                d = json.loads(payload)
                if isinstance(d, dict) and "id" in d:
                    out.append(d)
        return out

    def save_silence(self, silence: dict[str, Any]) -> None:
        self._exec(
            "INSERT OR REPLACE INTO alerting_silences VALUES (?, ?)",
            [silence["id"], json.dumps(silence, separators=(",", ":"))],
        )

    def load_silences(self) -> list[dict[str, Any]]:
        out = []
        for (payload,) in self._exec("SELECT payload FROM alerting_silences"):
            with contextlib.suppress(ValueError, TypeError):
                out.append(json.loads(payload))
        return out


class FenceLost(RuntimeError):
    """This replica no longer holds the lease its automatic writes depend on."""


class FencedCatalog:
    """``inner``, with incident writes refused while ``armed`` and ``check()`` is False.

    The alerting loop arms it around an evaluation round on the replica holding the alerting lease,
    so a replica that lost the lease mid-round (paused, partitioned) cannot overwrite the incidents
    the new holder keeps. Human actions (acknowledge, resolve, silences) come from the HTTP handlers
    while it is not armed and are written on any replica."""

    def __init__(self, inner: Any, check: Any) -> None:
        self.inner = inner
        self.check = check
        self.armed = False
        self.refused = 0

    def save_incident(self, incident: dict[str, Any]) -> None:
        if self.armed and not self.check():
            self.refused += 1
            raise FenceLost(f"alerting lease lost: incident {incident.get('id')} not saved")
        self.inner.save_incident(incident)

    def load_incidents(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.inner.load_incidents(limit=limit))

    def save_silence(self, silence: dict[str, Any]) -> None:
        self.inner.save_silence(silence)

    def load_silences(self) -> list[dict[str, Any]]:
        return list(self.inner.load_silences())
