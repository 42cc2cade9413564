"""The topology graph: entities and time-bounded relations, and the walks RCA needs.

A relation ``src --kind--> dst`` holds over ``[start_ms, end_ms]`` (``end_ms`` ``None``: still
holds). Each relation kind says which side *depends on* the other (:data:`DEPENDS`): a GPU depends
on its node, a pod on its GPUs, a model on the service serving it, a job on its GPUs and datasets.
Ownership (``team-owns-*``) links entities without a dependency.

Every walk takes ``at_ms``: the graph as of that instant. ``None`` means "now", the newest instant
the graph has seen (relations that ended more than ``slack_ms`` before it are history).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sightglass.model import Entity, Relation

# "src": the source depends on the destination; "dst": the reverse; None: no dependency.
DEPENDS: dict[str, str | None] = {
    "gpu-in-node": "src",
    "mig-in-gpu": "src",
    "nic-in-node": "dst",  # the node's network goes through its NICs
    "node-in-rack": "src",
    "node-links-switch": "src",
    "nic-links-switch": "src",
    "switch-links-switch": "src",  # leaf -> spine
    "node-mounts-storage": "src",
    "pod-on-node": "src",
    "pod-uses-gpu": "src",
    "service-has-pod": "src",
    "model-served-by-service": "src",
    "model-served-by-pod": "src",
    "job-on-node": "src",
    "job-uses-gpu": "src",
    "job-reads-dataset": "src",
    "pipeline-reads-dataset": "src",
    "dataset-produced-by-pipeline": "src",
    "team-owns": None,
}


@dataclass(slots=True)
class Edge:
    """A relation with mutable bounds (merged as evidence arrives)."""

    src: str
    kind: str
    dst: str
    start_ms: int
    end_ms: int | None
    exact: bool = False  # bounds from a record (a job's start and end), not from last-seen samples

    def relation(self) -> Relation:
        return Relation(self.src, self.kind, self.dst, self.start_ms, self.end_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "kind": self.kind,
            "dst": self.dst,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of a path: from ``src`` over ``kind`` to ``dst`` (``forward``: along the relation)."""

    src: str
    kind: str
    dst: str
    forward: bool

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.src, "relation": self.kind, "to": self.dst, "forward": self.forward}


@dataclass(slots=True)
class Topology:
    """Entities by id and relations indexed both ways; cheap to query, updated in place."""

    slack_ms: int = 300_000
    entities_by_id: dict[str, Entity] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], Edge] = field(default_factory=dict)
    newest_ms: int = 0
    _out: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    _in: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    def add_entity(self, entity: Entity) -> bool:
        """Add or merge an entity (labels and attributes are unioned); True when it changed."""
        old = self.entities_by_id.get(entity.id)
        if old is None:
            self.entities_by_id[entity.id] = entity
            return True
        labels = {**old.labels, **entity.labels}
        attrs = {**old.attributes, **entity.attributes}
        if labels == dict(old.labels) and attrs == dict(old.attributes):
            return False
        self.entities_by_id[entity.id] = Entity(old.id, old.kind, labels, attrs)
        return True

    def add_relation(self, src: str, kind: str, dst: str, start_ms: int, end_ms: int | None) -> bool:
        """Add a relation or widen its bounds; True when it changed."""
        key = (src, kind, dst)
        e = self.edges.get(key)
        if end_ms is not None:
            self.newest_ms = max(self.newest_ms, end_ms)
        self.newest_ms = max(self.newest_ms, start_ms)
        if e is None:
            self.edges[key] = Edge(src, kind, dst, start_ms, end_ms)
            self._out.setdefault(src, set()).add(key)
            self._in.setdefault(dst, set()).add(key)
            return True
        changed = False
        if start_ms < e.start_ms:
            e.start_ms, changed = start_ms, True
        if e.end_ms is not None and (end_ms is None or end_ms > e.end_ms):
            e.end_ms, changed = end_ms, True
        return changed

    def close_relation(self, src: str, kind: str, dst: str, end_ms: int) -> None:
        """Mark a relation ended at ``end_ms`` (a job ended, a pod was deleted)."""
        e = self.edges.get((src, kind, dst))
        if e is not None:
            e.end_ms = end_ms
            self.newest_ms = max(self.newest_ms, end_ms)

    def add_relations(self, relations: Iterable[Relation]) -> None:
        for r in relations:
            self.add_relation(r.src, r.kind, r.dst, r.start_ms, r.end_ms)

    # ------------------------------------------------------------------ reading
    def entity(self, entity_id: str) -> Entity | None:
        return self.entities_by_id.get(entity_id)

    def entities(self, kind: str | None = None) -> list[Entity]:
        es = self.entities_by_id.values()
        return sorted((e for e in es if kind is None or e.kind == kind), key=lambda e: e.id)

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entities_by_id.values():
            out[e.kind] = out.get(e.kind, 0) + 1
        return dict(sorted(out.items()))

    def relations(self, at_ms: int | None = None) -> list[Edge]:
        return [e for e in self.edges.values() if self._live(e, at_ms)]

    def _live(self, e: Edge, at_ms: int | None) -> bool:
        t = self.newest_ms if at_ms is None else at_ms
        slack = 0 if e.exact else self.slack_ms
        if e.start_ms - slack > t:
            return False
        return e.end_ms is None or e.end_ms + slack >= t

    def _edges_of(self, entity_id: str, at_ms: int | None) -> Iterator[tuple[Edge, bool]]:
        """Live edges touching ``entity_id``, with True when it is their source."""
        for key in self._out.get(entity_id, ()):
            e = self.edges[key]
            if self._live(e, at_ms):
                yield e, True
        for key in self._in.get(entity_id, ()):
            e = self.edges[key]
            if self._live(e, at_ms):
                yield e, False

    def neighbours(self, entity_id: str, at_ms: int | None = None) -> list[Edge]:
        """Relations touching the entity, as of ``at_ms``."""
        return sorted((e for e, _ in self._edges_of(entity_id, at_ms)), key=lambda e: (e.kind, e.src, e.dst))

    def _deps(self, entity_id: str, at_ms: int | None, *, up: bool) -> Iterator[str]:
        for e, is_src in self._edges_of(entity_id, at_ms):
            d = DEPENDS.get(e.kind)
            if d is None:
                continue
            # up (depends_on): follow src->dst when "src" depends, dst->src when "dst" depends
            if (d == "src") == (is_src == up):
                yield e.dst if is_src else e.src

    def depends_on(self, entity_id: str, at_ms: int | None = None, max_depth: int = 16) -> dict[str, int]:
        """Everything ``entity_id`` depends on, transitively: id -> distance (hops)."""
        return self._walk(entity_id, at_ms, max_depth, up=True)

    def dependents(self, entity_id: str, at_ms: int | None = None, max_depth: int = 16) -> dict[str, int]:
        """Everything that depends on ``entity_id``, transitively: id -> distance (hops)."""
        return self._walk(entity_id, at_ms, max_depth, up=False)

    def _walk(self, start: str, at_ms: int | None, max_depth: int, *, up: bool) -> dict[str, int]:
        seen = {start: 0}
        q = deque([start])
        while q:
            cur = q.popleft()
            d = seen[cur]
            if d >= max_depth:
                continue
            for nxt in self._deps(cur, at_ms, up=up):
                if nxt not in seen:
                    seen[nxt] = d + 1
                    q.append(nxt)
        del seen[start]
        return dict(sorted(seen.items(), key=lambda kv: (kv[1], kv[0])))

    def path(self, a: str, b: str, at_ms: int | None = None, max_depth: int = 12) -> list[Step] | None:
        """A shortest path between two entities over any live relation (ignoring direction)."""
        if a == b:
            return []
        prev: dict[str, Step] = {}
        seen = {a}
        q: deque[tuple[str, int]] = deque([(a, 0)])
        while q:
            cur, d = q.popleft()
            if d >= max_depth:
                continue
            for e, is_src in sorted(
                self._edges_of(cur, at_ms), key=lambda x: (x[0].kind, x[0].src, x[0].dst)
            ):
                nxt = e.dst if is_src else e.src
                if nxt in seen:
                    continue
                seen.add(nxt)
                prev[nxt] = Step(cur, e.kind, nxt, is_src)
                if nxt == b:
                    steps: list[Step] = []
                    x = b
                    while x != a:
                        s = prev[x]
                        steps.append(s)
                        x = s.src
                    return steps[::-1]
                q.append((nxt, d + 1))
        return None

    def related(
        self, entity_id: str, kind: str, *, outgoing: bool = True, at_ms: int | None = None
    ) -> list[str]:
        """Ids linked by relation ``kind`` (from the entity when ``outgoing``, else to it)."""
        out = [
            (e.dst if is_src else e.src)
            for e, is_src in self._edges_of(entity_id, at_ms)
            if e.kind == kind and is_src == outgoing
        ]
        return sorted(set(out))

    def owner(self, entity_id: str, at_ms: int | None = None) -> str | None:
        """The team owning the entity (directly, or through what it depends on)."""
        owners = self.related(entity_id, "team-owns", outgoing=False, at_ms=at_ms)
        if owners:
            return owners[0]
        # a model is owned through the service serving it; a GPU through the workload using it
        for near in (
            self.depends_on(entity_id, at_ms, max_depth=1),
            self.dependents(entity_id, at_ms, max_depth=3),
        ):
            for dep in near:
                owners = self.related(dep, "team-owns", outgoing=False, at_ms=at_ms)
                if owners:
                    return owners[0]
        return None

    def peer_groups(self, at_ms: int | None = None) -> dict[str, list[str]]:
        """Groups whose members should behave alike: the GPUs of a node, the GPUs of a job, the
        pods (replicas) of a service, the nodes of a rack. Group id -> member ids."""
        groups: dict[str, list[str]] = {}
        spec = (
            ("node", "gpu-in-node"),
            ("job", "job-uses-gpu"),
            ("service", "service-has-pod"),
            ("rack", "node-in-rack"),
        )
        for kind, rel in spec:
            for ent in self.entities(kind):
                outgoing = rel in ("job-uses-gpu", "service-has-pod")
                members = self.related(ent.id, rel, outgoing=outgoing, at_ms=at_ms)
                if len(members) >= 2:
                    groups[ent.id] = members
        return groups

    def to_dict(self, at_ms: int | None = None) -> dict[str, Any]:
        return {
            "entities": [entity_dict(e) for e in self.entities()],
            "relations": [e.to_dict() for e in self.relations(at_ms)],
        }


def entity_dict(e: Entity) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "labels": dict(e.labels), "attributes": dict(e.attributes)}
