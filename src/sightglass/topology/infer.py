"""Infer the topology from what the store already holds: series labels, events, lineage, inventory.

:class:`TopologyBuilder` is incremental: each :meth:`~TopologyBuilder.update` reads only the series
created or seen since the last one (the ``series`` catalog and the head of the sample table) and the
events and lineage runs after its watermarks, and merges them into one :class:`Topology`.

Entity ids (stable, readable, docs/topology.md): ``gpu:<UUID>`` (``gpu:<host>/<index>`` while no UUID
is known), ``mig:<UUID>/<GPU_I_ID>``, ``node:<host>``, ``nic:<host>/<device>``, ``rack:<name>``,
``switch:<name>``, ``storage:<server>``, ``pod:<namespace>/<name>``, ``service:<name>``,
``model:<model_name>``, ``job:<slurm job id>``, ``pipeline:<name>``, ``dataset:<namespace>/<name>``,
``team:<name>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sightglass.model import Entity, Event, Relation, SeriesKey
from sightglass.topology.graph import Topology

HOST_LABELS = ("Hostname", "hostname", "kubernetes_node", "nodename")
TEAM_LABELS = ("team", "label_team", "label_app_kubernetes_io_team")
ENGINE_PREFIXES = ("vllm:", "ray_vllm:", "sglang:", "tgi_", "nv_")
_EXPORTER_POD = re.compile(r"^(nvidia-)?dcgm-exporter")
_RS_HASH = re.compile(r"-[a-z0-9]{6,10}$")
_FAR_FUTURE = 2**62


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    """How to read ownership and liveness.

    ``namespace_teams`` maps a Kubernetes namespace to the team that owns its pods (site rules,
    docs/conventions.md §8: team labels are site-specific); ``team_labels`` are the labels read as
    a team name. A relation whose evidence stopped more than ``slack_ms`` ago is history.
    """

    namespace_teams: Mapping[str, str] = field(default_factory=dict)
    team_labels: tuple[str, ...] = TEAM_LABELS
    slack_ms: int = 300_000


class _Store(Protocol):
    def cursor(self) -> Any: ...
    def entities(self, kind: str | None = None) -> list[Entity]: ...
    def relations(self) -> Any: ...
    def query_events(self, start_ms: int, end_ms: int, kind: str | None = None) -> list[Event]: ...


# ---------------------------------------------------------------------- ids
def gpu_id(uuid: str | None, host: str | None, index: str | None) -> str:
    return f"gpu:{uuid}" if uuid else f"gpu:{host}/{index}"


def host_of(labels: Mapping[str, str], *, instance_is_host: bool = True) -> str | None:
    """The host a series is about: ``Hostname``/``hostname`` (dcgm-exporter), ``kubernetes_node``,
    a ``node`` target label, else the host part of ``instance`` (per-host exporters only)."""
    for k in HOST_LABELS:
        v = labels.get(k)
        if v and not _EXPORTER_POD.match(v):
            return v
    # A ``node`` target label (Kubernetes SD relabelling, the demo's scrape configs) names the host
    # the exporter runs on; on kube-state-metrics series it names a pod's node instead.
    node = labels.get("node")
    if node and not labels.get("__name__", "").startswith("kube_"):
        return node
    inst = labels.get("instance")
    if instance_is_host and inst:
        if inst.startswith("["):  # [ipv6]:port
            return inst[1:].split("]", 1)[0]
        return inst.rsplit(":", 1)[0] if inst.count(":") == 1 else inst
    return None


def pod_of(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """The workload pod of a dcgm-exporter series: ``exported_pod`` (Prometheus renamed the
    exporter's label, §0.4) before ``pod``, and legacy ``pod_name``; never the exporter's own pod."""
    for pk, nk in (
        ("exported_pod", "exported_namespace"),
        ("pod", "namespace"),
        ("pod_name", "pod_namespace"),
    ):
        p = labels.get(pk)
        if p:
            if _EXPORTER_POD.match(p):
                continue
            return labels.get(nk) or labels.get("namespace") or "default", p
    return None


def service_of_replicaset(name: str) -> str:
    """A Deployment's name from its ReplicaSet's (``llama-7d9f0c0b5`` -> ``llama``)."""
    return _RS_HASH.sub("", name)


def dataset_id(name: str) -> str:
    return f"dataset:{name}"


# ---------------------------------------------------------------------- the builder
@dataclass(slots=True)
class _JobSpan:
    job: str
    start: int
    end: int | None
    nodes: list[str] = field(default_factory=list)
    gpus: dict[str, list[str]] = field(default_factory=dict)  # host -> gpu indexes (None: all)


class TopologyBuilder:
    """Keeps a :class:`Topology` up to date with a store, one cheap :meth:`update` at a time."""

    def __init__(self, config: TopologyConfig | None = None) -> None:
        self.config = config or TopologyConfig()
        self.topology = Topology(slack_ms=self.config.slack_ms)
        self._next_sid = 0
        self._seen_ms = -1  # samples up to here are accounted for
        self._event_ms = -(2**62)
        self._lineage_ms = -(2**62)
        self._loaded = False
        self._gpu_alias: dict[tuple[str, str], str] = {}
        self._sig_cache: dict[tuple[Any, ...], list[tuple[str, str, str]]] = {}
        self._series_rel: dict[int, list[tuple[str, str, str]]] = {}
        self._deferred: dict[tuple[str, str, str], list[int]] = {}
        self._jobs: dict[str, _JobSpan] = {}
        self._pod_containers: dict[str, set[str]] = {}
        self.dirty_entities: set[str] = set()
        self._persisted: dict[tuple[str, str, str], tuple[int, int | None]] = {}

    # ------------------------------------------------------------------ entry points
    def update(self, store: _Store) -> Topology:
        """Fold in what the store gained since the last call."""
        if not self._loaded:
            self._load_persisted(store)
            self._loaded = True
        self._update_series(store)
        self._update_events(store)
        self._update_lineage(store)
        self._resolve_deferred()
        self._expand_jobs()
        return self.topology

    def add_inventory(self, doc: Mapping[str, Any]) -> None:
        """Racks, switches and storage from an inventory document (the simulator's
        ``factory.json`` shape: ``nodes[{hostname, rack, leaf, gpus[{gpu, UUID}]}]``,
        ``switches{leaf, spine}``, ``storage``). Labels rarely carry them."""
        sw = doc.get("switches") or {}
        leaves, spines = list(sw.get("leaf", [])), list(sw.get("spine", []))
        for s in leaves:
            self._ent(f"switch:{s}", "switch", {"switch": s}, {"tier": "leaf"})
        for s in spines:
            self._ent(f"switch:{s}", "switch", {"switch": s}, {"tier": "spine"})
            for leaf in leaves:
                self._rel(f"switch:{leaf}", "switch-links-switch", f"switch:{s}", 0, None)
        for r in doc.get("racks", []):
            self._ent(f"rack:{r}", "rack", {"rack": r})
        if doc.get("storage"):
            self._ent(f"storage:{doc['storage']}", "storage", {"storage": str(doc["storage"])})
        for nd in doc.get("nodes", []):
            host = str(nd["hostname"])
            node = self._node(host)
            if nd.get("rack"):
                self._ent(f"rack:{nd['rack']}", "rack", {"rack": str(nd["rack"])})
                self._rel(node, "node-in-rack", f"rack:{nd['rack']}", 0, None)
            if nd.get("leaf"):
                self._ent(f"switch:{nd['leaf']}", "switch", {"switch": str(nd["leaf"])}, {"tier": "leaf"})
                self._rel(node, "node-links-switch", f"switch:{nd['leaf']}", 0, None)
            for g in nd.get("gpus", []):
                gid = self._gpu(g.get("UUID"), host, str(g.get("gpu")))
                self._rel(gid, "gpu-in-node", node, 0, None)

    # ------------------------------------------------------------------ helpers
    def _ent(
        self, eid: str, kind: str, labels: Mapping[str, str], attrs: Mapping[str, Any] | None = None
    ) -> str:
        if self.topology.add_entity(Entity(eid, kind, dict(labels), dict(attrs or {}))):
            self.dirty_entities.add(eid)
        return eid

    def _rel(self, src: str, kind: str, dst: str, start: int, end: int | None) -> None:
        self.topology.add_relation(src, kind, dst, start, end)

    def _node(self, host: str) -> str:
        return self._ent(f"node:{host}", "node", {"Hostname": host})

    def _gpu(self, uuid: str | None, host: str | None, index: str | None) -> str:
        alias = (host, index) if host and index is not None else None
        if not uuid and alias:
            known = self._gpu_alias.get(alias)
            if known:
                return known
        if not uuid and not alias:
            raise ValueError("a GPU needs a UUID or a host and an index")
        gid = gpu_id(uuid, host, index)
        labels = {k: v for k, v in (("UUID", uuid), ("Hostname", host), ("gpu", index)) if v}
        self._ent(gid, "gpu", labels)
        if alias and uuid:
            old = self._gpu_alias.get(alias)
            self._gpu_alias[alias] = gid
            if old and old != gid and old.startswith("gpu:") and "/" in old:
                self._merge(old, gid)
        return gid

    def _merge(self, old: str, new: str) -> None:
        """A GPU first known by host/index got its UUID: move its relations over."""
        topo = self.topology
        for key in list(topo._out.get(old, ())) + list(topo._in.get(old, ())):
            e = topo.edges.pop(key)
            topo._out.get(e.src, set()).discard(key)
            topo._in.get(e.dst, set()).discard(key)
            src = new if e.src == old else e.src
            dst = new if e.dst == old else e.dst
            topo.add_relation(src, e.kind, dst, e.start_ms, e.end_ms)
        topo.entities_by_id.pop(old, None)

    def _team(self, name: str) -> str:
        return self._ent(f"team:{name}", "team", {"team": name})

    def _load_persisted(self, store: _Store) -> None:
        for e in store.entities():
            self.topology.add_entity(e)
            if e.kind == "gpu" and e.labels.get("Hostname") and e.labels.get("gpu") is not None:
                self._gpu_alias[(e.labels["Hostname"], e.labels["gpu"])] = e.id
        # rows are appended as bounds change: the last row of a relation has its newest end
        latest: dict[tuple[str, str, str], tuple[int, int | None]] = {}
        for r in store.relations():
            key = (r.src, r.kind, r.dst)
            prev = latest.get(key)
            start = r.start_ms if prev is None else min(prev[0], r.start_ms)
            latest[key] = (start, r.end_ms)
        for (s, k, d), (start, end) in latest.items():
            self.topology.add_relation(s, k, d, start, end)
            self._persisted[(s, k, d)] = (start, end)

    # ------------------------------------------------------------------ series labels
    def _update_series(self, store: _Store) -> None:
        cur = store.cursor()
        try:
            spans: dict[int, list[int]] = {}
            for sid, first, last in cur.execute(
                "SELECT id, first_ms, last_ms FROM series WHERE id >= ? OR last_ms > ?",
                [self._next_sid, self._seen_ms],
            ).fetchall():
                f = first if first is not None else (last if last is not None else 0)
                spans[int(sid)] = [f, last if last is not None else f]
            for sid, lo, hi in cur.execute(
                "SELECT series_id, min(ts), max(ts) FROM samples_head WHERE ts > ? GROUP BY series_id",
                [self._seen_ms],
            ).fetchall():
                sp = spans.get(int(sid))
                if sp is None:
                    spans[int(sid)] = [int(lo), int(hi)]
                else:
                    sp[0], sp[1] = min(sp[0], int(lo)), max(sp[1], int(hi))
            index = getattr(getattr(store, "index", None), "keys", None)
            if index is None:  # a store without an in-memory index: read the catalog
                rows = cur.execute(
                    "SELECT id, metric, labels FROM series WHERE id >= ?", [self._next_sid]
                ).fetchall()
                index = {int(i): SeriesKey(m, tuple(sorted(json.loads(lb).items()))) for i, m, lb in rows}
        finally:
            cur.close()
        keys: dict[int, SeriesKey] = {}
        for sid in spans:
            if sid not in self._series_rel:
                k = index.get(sid)
                if k is not None:
                    keys[sid] = k
        # series with a GPU UUID first, so host/index-only series find their GPU by alias
        uuid_first = {sid for sid, k in keys.items() if _has_uuid(k)}
        order = sorted(spans, key=lambda s: (s not in uuid_first, s))
        topo = self.topology
        for sid in order:
            first, last = spans[sid]
            rels = self._series_rel.get(sid)
            if rels is None:
                key = keys.get(sid)
                if key is None:
                    continue
                rels = self._series_rel[sid] = self._relations_of(key, first, last)
            for src, kind, dst in rels:
                if kind[0] == "_":  # evidence resolved after the pass (_resolve_deferred)
                    b = self._deferred.get((src, kind, dst))
                    if b is None:
                        self._deferred[(src, kind, dst)] = [first, last]
                    else:
                        b[0], b[1] = min(b[0], first), max(b[1], last)
                else:
                    topo.add_relation(src, kind, dst, first, last)
            self._seen_ms = max(self._seen_ms, last)
        if keys:
            self._next_sid = max(max(keys) + 1, self._next_sid)

    def _relations_of(self, key: SeriesKey, first: int, last: int) -> list[tuple[str, str, str]]:
        """The entities and relations one series is evidence of (cached per label signature)."""
        labels = key.label_dict()
        m = key.metric
        family = (
            "dcgm"
            if m.startswith("DCGM_")
            else "node"
            if m.startswith("node_")
            else "ksm"
            if m.startswith("kube_")
            else "engine"
            if m.startswith(ENGINE_PREFIXES)
            else "other"
        )
        sig = (family, tuple((k, v) for k, v in key.labels if k in _TOPO_LABELS))
        cached = self._sig_cache.get(sig)
        if cached is not None:
            return cached
        rels: list[tuple[str, str, str]] = []
        if family == "dcgm":
            self._from_dcgm(labels, rels)
        elif family == "node":
            self._from_node_exporter(m, labels, rels)
        elif family == "ksm":
            self._from_ksm(m, labels, rels)
        elif family == "engine":
            self._from_engine(m, labels, rels)
        self._from_workload_labels(labels, rels)
        self._sig_cache[sig] = rels
        return rels

    def _from_dcgm(self, labels: dict[str, str], rels: list[tuple[str, str, str]]) -> None:
        host = host_of(labels, instance_is_host=True)
        uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
        index = labels.get("gpu")
        if not uuid and not (host and index is not None):
            return
        gid = self._gpu(uuid, host, index)
        attrs: dict[str, Any] = {
            k: labels[k]
            for k in ("modelName", "pci_bus_id", "device", "DCGM_FI_DRIVER_VERSION")
            if k in labels
        }
        if attrs:
            self._ent(gid, "gpu", {}, attrs)
        if host:
            node = self._node(host)
            rels.append((gid, "gpu-in-node", node))
        target = gid
        if labels.get("GPU_I_ID"):
            mid = f"mig:{gid[4:]}/{labels['GPU_I_ID']}"
            self._ent(
                mid, "mig", {"GPU_I_ID": labels["GPU_I_ID"]}, {"profile": labels.get("GPU_I_PROFILE", "")}
            )
            rels.append((mid, "mig-in-gpu", gid))
            target = mid
        pod = pod_of(labels)
        if pod:
            pid = self._pod(*pod)
            rels.append((pid, "pod-uses-gpu", target))
            if host:
                rels.append((pid, "pod-on-node", f"node:{host}"))
            container = labels.get("exported_container") or labels.get("container")
            if container:
                self._pod_containers.setdefault(pid, set()).add(container)
        for job in (labels.get("hpc_job") or "").split(","):
            if job.strip():
                jid = self._ent(f"job:{job.strip()}", "job", {"slurm_job_id": job.strip()})
                rels.append((jid, "job-uses-gpu", target))

    def _pod(self, namespace: str, name: str) -> str:
        pid = self._ent(f"pod:{namespace}/{name}", "pod", {"namespace": namespace, "pod": name})
        team = self.config.namespace_teams.get(namespace)
        if team:
            self._rel(self._team(team), "team-owns", pid, 0, None)
        return pid

    def _from_node_exporter(
        self, metric: str, labels: dict[str, str], rels: list[tuple[str, str, str]]
    ) -> None:
        host = host_of(labels)
        if not host:
            return
        node = self._node(host)
        dev = labels.get("device")
        if dev and metric.startswith("node_infiniband_"):
            nid = self._ent(
                f"nic:{host}/{dev}", "nic", {"instance": labels.get("instance", ""), "device": dev}
            )
            rels.append((nid, "nic-in-node", node))
        export = labels.get("export")
        if export:
            server = export.split(":", 1)[0]
            sid = self._ent(f"storage:{server}", "storage", {"export": export})
            rels.append((node, "node-mounts-storage", sid))

    def _from_ksm(self, metric: str, labels: dict[str, str], rels: list[tuple[str, str, str]]) -> None:
        node = labels.get("node")
        if metric.startswith("kube_node") and node:
            self._node(node)
            return
        pod, ns = labels.get("pod"), labels.get("namespace")
        if not pod or not ns:
            return
        pid = self._pod(ns, pod)
        if node:
            rels.append((pid, "pod-on-node", self._node(node)))
        if labels.get("container"):
            self._pod_containers.setdefault(pid, set()).add(labels["container"])
        app = labels.get("label_app_kubernetes_io_name") or labels.get("label_app")
        if not app and labels.get("created_by_kind") in ("ReplicaSet", "StatefulSet"):
            # the owner's name, used only when no app label names the pod's service (post pass)
            cb = labels.get("created_by_name", "")
            owner = service_of_replicaset(cb) if labels["created_by_kind"] == "ReplicaSet" else cb
            rels.append((pid, "_owner", owner))
        if app:
            svc = self._ent(f"service:{app}", "service", {"service": app}, {"namespace": ns})
            rels.append((svc, "service-has-pod", pid))
        team = next((labels[t] for t in self.config.team_labels if labels.get(t)), None)
        if team:
            rels.append((self._team(team), "team-owns", pid))
            if app:
                rels.append((self._team(team), "team-owns", f"service:{app}"))

    def _from_engine(self, metric: str, labels: dict[str, str], rels: list[tuple[str, str, str]]) -> None:
        model = labels.get("model_name") or labels.get("model")
        if not model:
            return
        mid = self._ent(f"model:{model}", "model", {"model_name": model})
        pod = pod_of(labels)
        hint = labels.get("job") or metric.split(":", 1)[0].split("_", 1)[0]
        if pod:
            rels.append((mid, "model-served-by-pod", self._pod(*pod)))
        else:
            host = host_of(labels)
            if host:
                # resolved to the pod(s) on that host once the pods are known (_resolve_engines)
                rels.append((mid, "_engine", f"{host}|{hint}"))

    def _from_workload_labels(self, labels: dict[str, str], rels: list[tuple[str, str, str]]) -> None:
        team = next((labels[t] for t in self.config.team_labels if labels.get(t)), None)
        job = labels.get("slurm_job_id")
        if job:
            jid = self._ent(
                f"job:{job}",
                "job",
                {"slurm_job_id": job},
                {"job_name": labels["job_name"]} if labels.get("job_name") else {},
            )
            host = host_of(labels, instance_is_host=False)
            if host and labels.get("gpu") is not None:
                rels.append((jid, "job-uses-gpu", self._gpu(None, host, labels["gpu"])))
            if team:
                rels.append((self._team(team), "team-owns", jid))
            if labels.get("dataset"):
                ds = self._ent(dataset_id(labels["dataset"]), "dataset", {"dataset": labels["dataset"]})
                rels.append((jid, "job-reads-dataset", ds))
        pipe = labels.get("pipeline")
        if pipe:
            pid = self._ent(f"pipeline:{pipe}", "pipeline", {"pipeline": pipe})
            if labels.get("dataset"):
                ds = self._ent(dataset_id(labels["dataset"]), "dataset", {"dataset": labels["dataset"]})
                rels.append((ds, "dataset-produced-by-pipeline", pid))
            if team:
                rels.append((self._team(team), "team-owns", pid))
        if labels.get("switch"):
            self._ent(
                f"switch:{labels['switch']}",
                "switch",
                {"switch": labels["switch"]},
                {"tier": labels["tier"]} if labels.get("tier") else {},
            )

    # ------------------------------------------------------------------ engines -> pods
    def _resolve_deferred(self) -> None:
        topo = self.topology
        for (pid, kind, owner), (first, last) in self._deferred.items():
            if kind == "_owner" and not topo.related(pid, "service-has-pod", outgoing=False):
                ns = (topo.entity(pid) or Entity(pid, "pod", {})).labels.get("namespace", "")
                svc = self._ent(f"service:{owner}", "service", {"service": owner}, {"namespace": ns})
                self._rel(svc, "service-has-pod", pid, first, last)
        for (mid, kind, where), (first, last) in self._deferred.items():
            if kind != "_engine":
                continue
            host, hint = where.split("|", 1)
            on_node = topo.related(f"node:{host}", "pod-on-node", outgoing=False, at_ms=last)
            pods = [p for p in on_node if hint in self._pod_containers.get(p, ())]
            if not pods:
                with_gpus = [p for p in on_node if topo.related(p, "pod-uses-gpu", at_ms=last)]
                pods = with_gpus if len(with_gpus) == 1 else []
            for p in pods:
                self._rel(mid, "model-served-by-pod", p, first, last)
        for key in list(topo.edges):
            if key[1] == "model-served-by-pod":
                e = topo.edges[key]
                for svc in topo.related(e.dst, "service-has-pod", outgoing=False, at_ms=e.end_ms):
                    self._rel(e.src, "model-served-by-service", svc, e.start_ms, e.end_ms)

    # ------------------------------------------------------------------ events: Slurm jobs
    def _update_events(self, store: _Store) -> None:
        events = store.query_events(self._event_ms + 1, _FAR_FUTURE)
        for ev in events:
            self._event_ms = max(self._event_ms, ev.ts_ms)
            if ev.kind in ("job.start", "job.end", "slurm.job"):
                self._job_event(ev)
            elif ev.kind.startswith("switch."):
                sw = ev.entity.get("switch")
                if sw:
                    tier = ev.attributes.get("tier")
                    self._ent(f"switch:{sw}", "switch", {"switch": sw}, {"tier": tier} if tier else {})

    def _job_event(self, ev: Event) -> None:
        a = ev.attributes
        job = str(ev.entity.get("slurm_job_id") or a.get("job_id") or "")
        if not job:
            return
        jid = f"job:{job}"
        attrs = {
            k: a[k] for k in ("job_name", "account", "user", "partition", "state") if a.get(k) is not None
        }
        self._ent(jid, "job", {"slurm_job_id": job}, attrs)
        span = self._jobs.get(jid)
        if span is None:
            span = self._jobs[jid] = _JobSpan(jid, ev.ts_ms, None)
        if ev.kind == "slurm.job":  # an accounting record: start/end/nodes/gpus in full
            span.start = int(a.get("start") or ev.ts_ms)
            span.end = int(a["end"]) if a.get("end") is not None else None
        elif ev.kind == "job.start":
            span.start = ev.ts_ms
        else:
            span.end = ev.ts_ms
        if a.get("nodes"):
            span.nodes = [str(n) for n in a["nodes"]]
        if isinstance(a.get("gpus"), Mapping):
            span.gpus = {str(h): [str(i) for i in v] for h, v in a["gpus"].items()}
        team = a.get("account") or a.get("team")
        if team:
            self._rel(self._team(str(team)), "team-owns", jid, span.start, None)
        if a.get("dataset"):
            ds = self._ent(dataset_id(str(a["dataset"])), "dataset", {"dataset": str(a["dataset"])})
            self._rel(jid, "job-reads-dataset", ds, span.start, span.end)

    def _expand_jobs(self) -> None:
        """Jobs are intervals on nodes; expand them to the GPUs those nodes have (all of them, or
        the indexes the accounting record names)."""
        topo = self.topology
        for span in self._jobs.values():
            for host in span.nodes:
                node = self._node(host)
                self._set_interval(span.job, "job-on-node", node, span.start, span.end)
                want = span.gpus.get(host)
                gpus = sorted({k[0] for k in topo._in.get(node, ()) if k[1] == "gpu-in-node"})
                for gid in gpus:
                    ent = topo.entity(gid)
                    if want is not None and ent is not None and ent.labels.get("gpu") not in want:
                        continue
                    self._set_interval(span.job, "job-uses-gpu", gid, span.start, span.end)

    def _set_interval(self, src: str, kind: str, dst: str, start: int, end: int | None) -> None:
        topo = self.topology
        topo.add_relation(src, kind, dst, start, end)
        e = topo.edges[(src, kind, dst)]
        e.start_ms, e.end_ms, e.exact = start, end, True

    # ------------------------------------------------------------------ OpenLineage
    def _update_lineage(self, store: _Store) -> None:
        cur = store.cursor()
        try:
            rows = cur.execute(
                "SELECT job_namespace, job_name, min(ts), max(ts), list(DISTINCT inputs), list(DISTINCT outputs) "
                "FROM lineage WHERE ts > ? GROUP BY job_namespace, job_name",
                [self._lineage_ms],
            ).fetchall()
        finally:
            cur.close()
        for ns, name, lo, hi, inputs, outputs in rows:
            self._lineage_ms = max(self._lineage_ms, int(hi))
            pid = self._ent(f"pipeline:{name}", "pipeline", {"pipeline": name}, {"namespace": ns})
            for raw in inputs or []:
                for ds in json.loads(raw or "[]"):
                    d = self._ent(dataset_id(ds), "dataset", {"dataset": ds})
                    self._rel(pid, "pipeline-reads-dataset", d, int(lo), int(hi))
            for raw in outputs or []:
                for ds in json.loads(raw or "[]"):
                    d = self._ent(dataset_id(ds), "dataset", {"dataset": ds})
                    self._rel(d, "dataset-produced-by-pipeline", pid, int(lo), int(hi))

    # ------------------------------------------------------------------ persistence
    def persist(self, store: Any) -> tuple[int, int]:
        """Write changed entities and all relations whose bounds moved; (entities, relations)."""
        ents = [
            self.topology.entities_by_id[i]
            for i in sorted(self.dirty_entities)
            if i in self.topology.entities_by_id
        ]
        if ents:
            store.upsert_entities(ents)
        self.dirty_entities.clear()
        done = self._persisted
        out = []
        newest = self.topology.newest_ms
        for key, e in self.topology.edges.items():
            # a relation still live is written open-ended: it is rewritten only when it closes
            end = None if e.end_ms is None or e.end_ms + self.config.slack_ms >= newest else e.end_ms
            if done.get(key) != (e.start_ms, end):
                done[key] = (e.start_ms, end)
                out.append(Relation(e.src, e.kind, e.dst, e.start_ms, end))
        if out:
            store.append_relations(out)
        return len(ents), len(out)


_TOPO_LABELS = frozenset(
    {
        *HOST_LABELS,
        "instance",
        "UUID",
        "uuid",
        "gpu_uuid",
        "gpu",
        "GPU_I_ID",
        "GPU_I_PROFILE",
        "pod",
        "namespace",
        "exported_pod",
        "exported_namespace",
        "exported_container",
        "container",
        "pod_name",
        "pod_namespace",
        "hpc_job",
        "node",
        "device",
        "port",
        "export",
        "label_app_kubernetes_io_name",
        "label_app",
        "created_by_kind",
        "created_by_name",
        "model_name",
        "model",
        "job",
        "slurm_job_id",
        "job_name",
        "pipeline",
        "dataset",
        "switch",
        "tier",
        "modelName",
        "pci_bus_id",
        "DCGM_FI_DRIVER_VERSION",
        *TEAM_LABELS,
    }
)


def _has_uuid(key: SeriesKey) -> bool:
    return any(k in ("UUID", "uuid") for k, _ in key.labels)


def build_topology(
    store: _Store, *, inventory: Mapping[str, Any] | None = None, config: TopologyConfig | None = None
) -> Topology:
    """One-shot: the topology of everything in ``store`` (plus an optional inventory document)."""
    b = TopologyBuilder(config)
    if inventory is not None:
        b.add_inventory(inventory)
    return b.update(store)


def iter_entity_ids(topology: Topology, kinds: Iterable[str]) -> list[str]:
    return [e.id for k in kinds for e in topology.entities(k)]


def entity_of_series(key: SeriesKey, builder: TopologyBuilder | None = None) -> str | None:
    """The one entity a series is *about* (the most specific): a GPU for dcgm-exporter and rank
    series, a NIC for InfiniBand ports, the storage for NFS mounts, the node for the rest of
    node_exporter, a switch, a pipeline, the model for engine series, the job for job-level
    training series, the pod for kube-state-metrics pod series."""
    labels = key.label_dict()
    m = key.metric

    def gpu(host: str | None) -> str | None:
        uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
        idx = labels.get("gpu")
        if uuid:
            base = f"gpu:{uuid}"
        elif host and idx is not None:
            alias = builder._gpu_alias.get((host, idx)) if builder is not None else None
            base = alias or gpu_id(None, host, idx)
        else:
            return None
        return f"mig:{base[4:]}/{labels['GPU_I_ID']}" if labels.get("GPU_I_ID") else base

    if m.startswith("DCGM_"):
        return gpu(host_of(labels))
    if labels.get("slurm_job_id"):
        host = host_of(labels, instance_is_host=False)
        if host and labels.get("gpu") is not None:
            return gpu(host)
        return f"job:{labels['slurm_job_id']}"
    if labels.get("export"):
        return f"storage:{labels['export'].split(':', 1)[0]}"
    if m.startswith("node_"):
        host = host_of(labels)
        if host is None:
            return None
        if m.startswith("node_infiniband_") and labels.get("device"):
            return f"nic:{host}/{labels['device']}"
        return f"node:{host}"
    if labels.get("switch"):
        return f"switch:{labels['switch']}"
    if labels.get("pipeline"):
        return f"pipeline:{labels['pipeline']}"
    if m.startswith(ENGINE_PREFIXES) and (labels.get("model_name") or labels.get("model")):
        return f"model:{labels.get('model_name') or labels.get('model')}"
    if m.startswith("kube_"):
        if labels.get("pod") and labels.get("namespace"):
            return f"pod:{labels['namespace']}/{labels['pod']}"
        if labels.get("node"):
            return f"node:{labels['node']}"
    return None
