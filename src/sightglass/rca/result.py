"""The answer of a root cause analysis: ranked causes, each with its evidence chain.

``RcaResult.to_dict()`` is the stable JSON schema (docs/rca.md); ``render_text`` the readable form.
Times are RFC 3339 strings next to their Unix milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sightglass.timeutil import format_ts

SCHEMA_VERSION = 1


def _ts(ms: int | None) -> str | None:
    return format_ts(ms) if ms is not None else None


@dataclass(slots=True)
class SignalEvidence:
    """One anomalous signal of the cause: its value in the fault window against its baseline."""

    metric: str
    series: str  # the column, as "metric{labels}"
    value: float
    baseline: float
    scale: float
    z: float
    onset_ms: int | None
    role: str  # "cause" | "effect" | "absent"
    query: str  # PromQL to re-check it
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "series": self.series,
            "value": _round(self.value),
            "baseline": _round(self.baseline),
            "scale": _round(self.scale),
            "z": _round(self.z),
            "onset": _ts(self.onset_ms),
            "onset_ms": self.onset_ms,
            "role": self.role,
            "weight": self.weight,
            "query": self.query,
        }


@dataclass(slots=True)
class EventEvidence:
    """A discrete event on (or under) the cause: an XID, a throttle reason, a deploy, a change."""

    ts_ms: int
    kind: str
    labels: dict[str, str]
    attributes: dict[str, Any]
    severity: str
    source: str  # "events" (the store's event log) | "metrics" (read from a series)
    query: str | None  # PromQL showing it, when a series carries it

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": format_ts(self.ts_ms),
            "ts_ms": self.ts_ms,
            "kind": self.kind,
            "labels": self.labels,
            "attributes": self.attributes,
            "severity": self.severity,
            "source": self.source,
            "query": self.query,
        }


@dataclass(slots=True)
class PeerEvidence:
    """The cause against its peers (the GPUs of its node or job, the replicas of its service)."""

    group: str
    metric: str
    value: float
    peer_median: float
    z: float
    peers: int
    outlier: bool
    query: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "metric": self.metric,
            "value": _round(self.value),
            "peer_median": _round(self.peer_median),
            "z": _round(self.z),
            "peers": self.peers,
            "outlier": self.outlier,
            "query": self.query,
        }


@dataclass(slots=True)
class Cause:
    entity_id: str
    kind: str
    labels: dict[str, str]
    fault: str
    score: float
    onset_ms: int | None
    distance: int
    explains: int
    signals: list[SignalEvidence] = field(default_factory=list)
    events: list[EventEvidence] = field(default_factory=list)
    peers: list[PeerEvidence] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # anomalous members (a common cause)
    path: list[dict[str, Any]] = field(default_factory=list)
    action: str = ""
    summary: str = ""

    def to_dict(self, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "entity": {"id": self.entity_id, "kind": self.kind, "labels": self.labels},
            "fault": self.fault,
            "score": _round(self.score),
            "onset": _ts(self.onset_ms),
            "onset_ms": self.onset_ms,
            "distance": self.distance,
            "explains": self.explains,
            "summary": self.summary,
            "evidence": {
                "signals": [s.to_dict() for s in self.signals],
                "events": [e.to_dict() for e in self.events],
                "peers": [p.to_dict() for p in self.peers],
                "members": self.members,
                "path": self.path,
            },
            "action": self.action,
        }


@dataclass(slots=True)
class RcaResult:
    symptom: str
    at_ms: int
    window_start_ms: int
    symptom_entities: list[str]
    symptom_onset_ms: int | None
    symptom_value: float | None
    causes: list[Cause]
    candidates: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    # not part of the JSON: what the evaluation needs (the candidates, the signals read)
    candidate_ids: list[str] = field(default_factory=list, repr=False)
    frame: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "symptom": {
                "query": self.symptom,
                "at": format_ts(self.at_ms),
                "at_ms": self.at_ms,
                "entities": self.symptom_entities,
                "value": _round(self.symptom_value) if self.symptom_value is not None else None,
                "onset": _ts(self.symptom_onset_ms),
                "onset_ms": self.symptom_onset_ms,
            },
            "window": {"start": format_ts(self.window_start_ms), "end": format_ts(self.at_ms)},
            "candidates": self.candidates,
            "seconds": round(self.seconds, 4),
            "causes": [c.to_dict(i + 1) for i, c in enumerate(self.causes)],
            "warnings": self.warnings,
        }

    @property
    def top(self) -> Cause | None:
        return self.causes[0] if self.causes else None


def _round(v: float) -> float:
    if v != v or v in (float("inf"), float("-inf")):
        return v
    return float(f"{v:.6g}")


def render_text(result: dict[str, Any]) -> str:
    """A readable rendering of ``RcaResult.to_dict()`` (also of one received over HTTP)."""
    s = result["symptom"]
    lines = [f"Symptom  {s['query']}  at {s['at']}"]
    if s.get("entities"):
        onset = f", changed at {s['onset']}" if s.get("onset") else ""
        lines.append(f"         on {', '.join(s['entities'])}{onset}")
    lines.append(
        f"Analysed {result['candidates']} candidate entities in {result['seconds'] * 1000:.0f} ms"
    )
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    if not result["causes"]:
        lines.append("No cause found: nothing the symptom depends on changed in the window.")
    for c in result["causes"]:
        e = c["entity"]
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(e["labels"].items()))
        lines.append("")
        lines.append(f"#{c['rank']}  {e['kind']} {{{labels}}}  fault={c['fault']}  score={c['score']}")
        if c.get("summary"):
            lines.append(f"    {c['summary']}")
        if c.get("onset"):
            lines.append(f"    since {c['onset']}")
        ev = c["evidence"]
        for sig in ev["signals"][:5]:
            lines.append(
                f"    signal  {sig['series']}: {sig['value']} vs baseline {sig['baseline']} "
                f"(z={sig['z']}, {sig['role']})"
            )
            lines.append(f"            check: {sig['query']}")
        for evt in ev["events"][:5]:
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(evt["attributes"].items()))
            lines.append(f"    event   {evt['ts']} {evt['kind']} {attrs}")
            if evt.get("query"):
                lines.append(f"            check: {evt['query']}")
        for p in ev["peers"][:3]:
            tag = "outlier" if p["outlier"] else "like its peers"
            lines.append(
                f"    peers   {p['metric']}: {p['value']} vs median {p['peer_median']} of {p['peers']} "
                f"in {p['group']} (z={p['z']}, {tag})"
            )
            lines.append(f"            check: {p['query']}")
        if ev["members"]:
            more = f" (+{len(ev['members']) - 6})" if len(ev["members"]) > 6 else ""
            lines.append(f"    common cause of {', '.join(ev['members'][:6])}{more}")
        if ev["path"]:
            hops = " -> ".join([ev["path"][0]["from"], *(h["to"] for h in ev["path"])])
            lines.append(f"    path    {hops}")
        lines.append(f"    action  {c['action']}")
    return "\n".join(lines)
