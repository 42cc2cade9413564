"""Twins of the GPU heatmap, the topology map (rack → node → GPU with health) and one entity's page.

The map's structure comes from the topology graph (``gpu-in-node``, ``node-in-rack``; racks come only
from an inventory, docs/topology.md), its colours from :mod:`sightglass.web.fleet`. Nodes without a
rack are grouped under ``rack: null``.
"""

from __future__ import annotations

from typing import Any

from sightglass.api.envelope import APIError
from sightglass.topology.graph import Topology, entity_dict
from sightglass.web.fleet import METRICS, Fleet, GpuKey
from sightglass.web.overview import HEALTH_ORDER
from sightglass.web.query import Queries, Window

MAX_RELATED = 60


def heatmap(ctx: Any, w: Window, metric: str) -> dict[str, Any]:
    if metric not in METRICS:
        raise APIError(f'invalid parameter "metric": {metric!r}; one of {", ".join(METRICS)}')
    q = Queries(ctx, w)
    fleet = Fleet(q)
    primary = fleet.read_primary()  # every GPU has its cell, even one missing this metric
    if metric not in primary:
        fleet.read(metric)
    fleet.read_state()
    gpus = fleet.sorted()
    vals = [v for g in gpus if (v := g.values.get(metric)) is not None]
    fixed = METRICS[metric][2]
    domain = list(fixed) if fixed else ([min(vals), max(vals)] if vals else None)
    nodes: dict[str, list[dict[str, Any]]] = {}
    for g in gpus:
        nodes.setdefault(g.node, []).append(
            {
                "gpu": g.gpu,
                "entity": g.entity_id(),
                "value": g.values.get(metric),
                "health": g.health,
                "throttle_reasons": g.to_dict(())["throttle_reasons"],
                "failed_reasons": g.failed,
            }
        )
    return {
        "window": w.to_dict(),
        "metric": metric,
        "promql": METRICS[metric][0],
        "unit": METRICS[metric][1],
        "metrics": {k: {"promql": v[0], "unit": v[1]} for k, v in METRICS.items()},
        "domain": domain,
        "nodes": [{"node": n, "gpus": gs} for n, gs in nodes.items()],
        "queries": q.ran,
    }


def topology_map(ctx: Any, w: Window, topo: Topology) -> dict[str, Any]:
    q = Queries(ctx, w)
    fleet = Fleet(q)
    fleet.read_primary()
    fleet.read_state()
    rack_of: dict[str, str] = {}
    node_gpus: dict[str, list[str]] = {}
    for e in topo.relations(w.at_ms):
        if e.kind == "node-in-rack":
            rack_of[e.src] = e.dst
        elif e.kind == "gpu-in-node":
            node_gpus.setdefault(e.dst, []).append(e.src)
    by_key: dict[GpuKey, str] = {}
    for ent in topo.entities("gpu"):
        lab = ent.labels
        by_key[(lab.get("Hostname") or lab.get("hostname") or "", lab.get("gpu", ""))] = ent.id
    seen_nodes = {f"node:{g.node}" for g in fleet.gpus.values()}
    node_ids = sorted({e.id for e in topo.entities("node")} | seen_nodes)
    racks: dict[str | None, list[dict[str, Any]]] = {}
    for nid in node_ids:
        host = nid.split(":", 1)[1]
        gpus = [g for (h, _), g in fleet.gpus.items() if h == host]
        gpus.sort(key=lambda g: int(g.gpu) if g.gpu.isdigit() else 1 << 30)
        cells = [
            {
                "gpu": g.gpu,
                "entity": by_key.get((g.node, g.gpu), g.entity_id()),
                "health": g.health,
                "sm_active": g.values.get("sm_active"),
                "util_percent": g.values.get("util_percent"),
                "failed_reasons": g.failed,
            }
            for g in gpus
        ]
        states = {c["health"] for c in cells}
        health = next((h for h in HEALTH_ORDER if h in states), "unknown")
        rack = rack_of.get(nid)
        racks.setdefault(rack, []).append({"node": host, "entity": nid, "health": health, "gpus": cells})
    out = []
    for rack, nodes in sorted(racks.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        states = {n["health"] for n in nodes}
        out.append(
            {
                "rack": rack.split(":", 1)[1] if rack else None,
                "entity": rack,
                "health": next((h for h in HEALTH_ORDER if h in states), "unknown"),
                "nodes": nodes,
            }
        )
    return {
        "window": w.to_dict(),
        "racks": out,
        "kinds": topo.kinds(),
        "health_legend": list(HEALTH_ORDER),
        "queries": q.ran,
    }


def _gpu_by_index(topo: Topology, entity_id: str) -> Any:
    """``gpu:<node>/<index>`` (what series without a UUID name) → the GPU entity, once its UUID is known."""
    if not entity_id.startswith("gpu:") or "/" not in entity_id:
        return None
    host, _, index = entity_id[4:].rpartition("/")
    for e in topo.entities("gpu"):
        lab = e.labels
        if lab.get("gpu") == index and (lab.get("Hostname") or lab.get("hostname")) == host:
            return e
    return None


def _selector(labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def entity(ctx: Any, w: Window, topo: Topology, entity_id: str) -> dict[str, Any]:
    ent = topo.entity(entity_id) or _gpu_by_index(topo, entity_id)
    if ent is None:
        raise APIError(f"no entity {entity_id!r}", "not_found")
    entity_id = ent.id

    def kind_of(i: str) -> str:
        e = topo.entities_by_id.get(i)
        return e.kind if e is not None else i.split(":", 1)[0]

    neighbours = []
    for edge in topo.neighbours(entity_id, w.at_ms):
        other = edge.dst if edge.src == entity_id else edge.src
        neighbours.append(
            {"id": other, "kind": kind_of(other), "relation": edge.kind, "outgoing": edge.src == entity_id}
        )
    neighbours.sort(key=lambda n: (n["kind"], n["id"]))
    deps = sorted(topo.depends_on(entity_id, w.at_ms).items(), key=lambda kv: (kv[1], kv[0]))
    dents = sorted(topo.dependents(entity_id, w.at_ms).items(), key=lambda kv: (kv[1], kv[0]))
    labels = dict(ent.labels)
    q = Queries(ctx, w)
    signals: list[dict[str, Any]] = []
    if labels:
        sel = _selector(labels)
        for lab, v in q.vector(f"count by (__name__) ({sel})")[:200]:
            signals.append(
                {"metric": lab.get("__name__", ""), "series": v, "promql": _selector_for(lab, labels)}
            )
        signals.sort(key=lambda s: s["metric"])
    return {
        "window": w.to_dict(),
        "entity": entity_dict(ent),
        "owner": topo.owner(entity_id, w.at_ms),
        "neighbours": neighbours[:MAX_RELATED],
        "depends_on": [{"id": i, "kind": kind_of(i), "distance": d} for i, d in deps[:MAX_RELATED]],
        "dependents": [{"id": i, "kind": kind_of(i), "distance": d} for i, d in dents[:MAX_RELATED]],
        "counts": {"neighbours": len(neighbours), "depends_on": len(deps), "dependents": len(dents)},
        "signals": signals,
        "queries": q.ran,
    }


def _selector_for(metric_labels: dict[str, str], labels: dict[str, str]) -> str:
    return metric_labels.get("__name__", "") + _selector(labels)
