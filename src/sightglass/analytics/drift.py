"""Configuration and change: config snapshots per entity, change events, drift against peers or a
pinned golden config.

Where configuration comes from:

- **series labels** (new series only, incrementally: a label value that changes starts a new series,
  so the series' first sample is the change time): dcgm-exporter ``DCGM_FI_DRIVER_VERSION``,
  ``DCGM_FI_NVML_VERSION``, ``DCGM_FI_CUDA_DRIVER_VERSION``, ``DCGM_FI_DEV_VBIOS_VERSION``,
  ``DCGM_FI_DEV_INFOROM_IMAGE_VER``, ``modelName`` (per GPU, and per node for the driver and GPU
  model); kube-state-metrics ``kube_node_info`` (kernel, kubelet, container runtime, OS image);
  node_exporter ``node_uname_info`` (kernel release); vLLM ``vllm:cache_config_info`` (every
  label, per engine replica ``engine:<instance>/<engine>``, whose peers are the model's replicas);
- **sample values** of settings exported as gauges: ``DCGM_FI_DEV_POWER_MGMT_LIMIT`` (W) per GPU;
- **the store's ``configs`` table** (``ConfigSnapshot`` from the agent or an API client): nested
  keys flattened with dots, the entity from its labels (``entity``, else ``UUID`` -> GPU,
  ``Hostname``/``node`` -> node, ``model_name`` -> model).

Every value that changes is a ``config.change`` event (attributes ``key``, ``from``, ``to``,
``source``). *Drift* is a value that differs from

- the pinned golden config for the entity or its kind (``{"node": {"driver_version": "550.144.03"}}``,
  a JSON/YAML/TOML file: :func:`load_golden`), else
- its peer group's majority: the nodes with the same GPU model, the GPUs of one node, the replicas
  of one model, other entities of the same kind — when the group has at least ``min_peers`` members
  with the key and one value holds more than ``majority`` of them.

A drift opening is a ``config.drift`` event (``key``, ``value``, ``expected``, ``reason`` =
``golden`` | ``peers``, ``peers``, ``share``); closing, ``config.drift.resolved``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sightglass.model import Event, Matcher

SOURCE = "sightglass-analytics"
GPU_LABELS = {
    "DCGM_FI_DRIVER_VERSION": "driver_version",
    "DCGM_FI_NVML_VERSION": "nvml_version",
    "DCGM_FI_CUDA_DRIVER_VERSION": "cuda_driver_version",
    "DCGM_FI_DEV_VBIOS_VERSION": "vbios_version",
    "DCGM_FI_DEV_INFOROM_IMAGE_VER": "inforom_version",
    "modelName": "gpu_model",
}
NODE_FROM_GPU = ("driver_version", "nvml_version", "cuda_driver_version", "gpu_model")
KSM_NODE_LABELS = {
    "kernel_version": "kernel_version",
    "kubelet_version": "kubelet_version",
    "kubeproxy_version": "kubeproxy_version",
    "container_runtime_version": "container_runtime_version",
    "os_image": "os_image",
}
ENGINE_INFO = ("vllm:cache_config_info", "sglang:server_info")
ENGINE_SKIP = frozenset({"instance", "job", "engine", "model_name", "__name__"})
VALUE_SETTINGS = {"DCGM_FI_DEV_POWER_MGMT_LIMIT": "power_limit_w"}
# software every node should agree on whatever its GPUs (a small GPU-model group falls back to all nodes)
FLEET_KEYS = frozenset(
    {
        "driver_version",
        "nvml_version",
        "cuda_driver_version",
        "kernel_version",
        "kernel_release",
        "kubelet_version",
        "kubeproxy_version",
        "container_runtime_version",
        "os_image",
    }
)
# identities and hardware facts, not settings: never peer drift (a golden value still applies)
IGNORE_KEYS = ("uuid", "serial", "ip", "hostname", "pci_bus_id", "uid", "gpu_model")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    golden: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    min_peers: int = 3
    majority: float = 0.5
    value_tolerance: float = 0.5  # numeric settings: a change smaller than this is noise
    ignore_keys: tuple[str, ...] = IGNORE_KEYS

    def __post_init__(self) -> None:
        if self.min_peers < 2:
            raise ValueError(f"drift min_peers must be >= 2, got {self.min_peers}")
        if not 0 < self.majority < 1:
            raise ValueError(f"drift majority must be in (0, 1), got {self.majority}")


def load_golden(path: str | Path) -> dict[str, dict[str, str]]:
    """A golden config file: ``{selector: {key: value}}``, selector an entity id or a kind.

    JSON, YAML (``.yaml``/``.yml``) or TOML (``.toml``); raises ``ValueError`` naming the problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ValueError(f"golden config {p}: cannot read it ({e.strerror})") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        elif p.suffix == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except Exception as e:
        raise ValueError(f"golden config {p}: not valid {p.suffix.lstrip('.') or 'json'}: {e}") from None
    return parse_golden(doc, where=str(p))


def parse_golden(doc: Any, where: str = "golden config") -> dict[str, dict[str, str]]:
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: expected a mapping of selector -> {{key: value}}")
    out: dict[str, dict[str, str]] = {}
    for sel, cfg in doc.items():
        if not isinstance(sel, str) or not sel:
            raise ValueError(f"{where}: selector {sel!r} must be a non-empty string (a kind or an entity id)")
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{where}: {sel}: expected a mapping of key -> value")
        vals: dict[str, str] = {}
        for k, v in _flatten(cfg).items():
            if v is None or isinstance(v, list | dict):
                raise ValueError(f"{where}: {sel}.{k}: value must be a string, number or boolean")
            vals[k] = _norm(v)
        out[sel] = vals
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list | dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def entity_of_config_labels(labels: Mapping[str, Any]) -> str | None:
    """The entity a ``ConfigSnapshot`` is about, from its labels."""
    if labels.get("entity"):
        return str(labels["entity"])
    uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
    if uuid:
        return f"gpu:{uuid}"
    host = labels.get("Hostname") or labels.get("hostname") or labels.get("node") or labels.get("host")
    if host:
        return f"node:{host}"
    if labels.get("model_name"):
        return f"model:{labels['model_name']}"
    if labels:
        return "config:" + ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return None


@dataclass(slots=True)
class ConfigValue:
    value: str
    since_ms: int
    source: str


@dataclass(frozen=True, slots=True)
class Drift:
    entity: str
    key: str
    value: str
    expected: str
    reason: str  # golden | peers
    group: str
    peers: int
    share: float
    since_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "key": self.key,
            "value": self.value,
            "expected": self.expected,
            "reason": self.reason,
            "group": self.group,
            "peers": self.peers,
            "share": round(self.share, 4),
            "since_ms": self.since_ms,
        }


@dataclass(slots=True)
class DriftReport:
    changes: list[Event] = field(default_factory=list)
    opened: list[Drift] = field(default_factory=list)
    resolved: list[Drift] = field(default_factory=list)

    def to_events(self, now_ms: int) -> list[Event]:
        evs = list(self.changes)
        for d in self.opened:
            evs.append(
                Event(
                    now_ms,
                    "config.drift",
                    {"entity": d.entity},
                    {**d.to_dict(), "detected_ms": now_ms},
                    "warning",
                    SOURCE,
                )
            )
        for d in self.resolved:
            evs.append(
                Event(now_ms, "config.drift.resolved", {"entity": d.entity}, d.to_dict(), "info", SOURCE)
            )
        return evs


@dataclass(slots=True)
class ConfigTracker:
    """Per batch: fold in new series, setting samples and stored snapshots; report changes/drift."""

    config: DriftConfig = field(default_factory=DriftConfig)
    write_events: bool = True
    values: dict[str, dict[str, ConfigValue]] = field(default_factory=dict)
    ident: dict[str, dict[str, str]] = field(default_factory=dict)  # entity -> identity labels
    group_hint: dict[str, str] = field(default_factory=dict)  # gpu -> node, engine -> model
    open_drifts: dict[tuple[str, str], Drift] = field(default_factory=dict)
    next_sid: int = 0
    pending: list[int] = field(default_factory=list)
    watermark_ms: int | None = None
    configs_ms: int = -(2**62)
    changes_seen: int = 0
    steps: int = 0

    def step(self, store: Any, until_ms: int) -> DriftReport:
        report = DriftReport()
        self._from_series(store, until_ms, report)
        start = self.watermark_ms + 1 if self.watermark_ms is not None else until_ms - 15 * 60_000
        if until_ms >= start:
            self._from_values(store, start, until_ms, report)
        self._from_configs(store, until_ms, report)
        self.watermark_ms = max(until_ms, self.watermark_ms or until_ms)
        now = self.drifts()
        cur = {(d.entity, d.key): d for d in now}
        report.opened = [d for k, d in sorted(cur.items()) if k not in self.open_drifts]
        report.resolved = [d for k, d in sorted(self.open_drifts.items()) if k not in cur]
        self.open_drifts = cur
        self.changes_seen += len(report.changes)
        self.steps += 1
        if self.write_events:
            evs = report.to_events(until_ms)
            if evs:
                store.append_events(evs)
        return report

    # ------------------------------------------------------------------ sources
    def _set(self, entity: str, key: str, value: str, ts_ms: int, source: str, report: DriftReport) -> None:
        per = self.values.setdefault(entity, {})
        cur = per.get(key)
        if cur is None:
            per[key] = ConfigValue(value, ts_ms, source)
            return
        if ts_ms < cur.since_ms or cur.value == value:
            return
        per[key] = ConfigValue(value, ts_ms, source)
        report.changes.append(
            Event(
                ts_ms,
                "config.change",
                {"entity": entity, **self.ident.get(entity, {})},
                {"key": key, "from": cur.value, "to": value, "source": source},
                "info",
                SOURCE,
            )
        )

    def _from_series(self, store: Any, until_ms: int, report: DriftReport) -> None:
        keys: dict[int, Any] = getattr(getattr(store, "index", None), "keys", {}) or {}
        new = [*self.pending, *(sid for sid in keys if sid >= self.next_sid)]
        if not new:
            return
        self.next_sid = max(self.next_sid, max(new) + 1)
        lo = min(new)
        first: dict[int, int] = {}
        cur = store.cursor()
        try:
            for sid, f in cur.execute("SELECT id, first_ms FROM series WHERE id >= ?", [lo]).fetchall():
                if f is not None:
                    first[int(sid)] = int(f)
            for sid, f in cur.execute(
                "SELECT series_id, min(ts) FROM samples_head WHERE series_id >= ? GROUP BY series_id", [lo]
            ).fetchall():
                first[int(sid)] = int(f)  # the samples say when it appeared; the catalog can be coarser
        finally:
            cur.close()
        rows: list[tuple[int, int, Any]] = []
        pending: list[int] = []
        for sid in new:
            k = keys[sid]
            m = k.metric
            if m.startswith("DCGM_") or m in ("kube_node_info", "node_uname_info") or m.endswith(ENGINE_INFO):
                f = first.get(sid)
                if f is None:
                    continue  # no sample at all: nothing to say
                if f > until_ms:  # not there yet as of this step (a back-filled store)
                    pending.append(sid)
                else:
                    rows.append((f, sid, k))
        engine_model: dict[str, str] = {}
        for sid in new:
            k = keys[sid]
            if k.metric.startswith(("vllm:", "sglang:")):
                lab = k.label_dict()
                if lab.get("model_name") and lab.get("instance"):
                    engine_model[f"engine:{lab['instance']}/{lab.get('engine', '0')}"] = lab["model_name"]
        self.group_hint.update({e: f"model:{m}" for e, m in engine_model.items()})
        rows.sort(key=lambda r: (r[0], r[1]))
        seen_sig: set[tuple[Any, ...]] = set()
        for ts, _sid, k in rows:
            lab = k.label_dict()
            m = k.metric
            if m.startswith("DCGM_"):
                sig = ("dcgm", lab.get("UUID") or lab.get("uuid"), *(lab.get(x) for x in GPU_LABELS))
                if sig in seen_sig:
                    continue  # the hundred metrics of one GPU say the same
                seen_sig.add(sig)
                self._gpu_labels(lab, ts, report)
            elif m == "kube_node_info" and lab.get("node"):
                ent = f"node:{lab['node']}"
                self.ident.setdefault(ent, {"Hostname": lab["node"]})
                for label, key in KSM_NODE_LABELS.items():
                    if lab.get(label):
                        self._set(ent, key, lab[label], ts, "kube-state-metrics", report)
            elif m == "node_uname_info":
                host = lab.get("nodename") or (lab.get("instance", "").rsplit(":", 1)[0] or None)
                if host and lab.get("release"):
                    self._set(f"node:{host}", "kernel_release", lab["release"], ts, "node_exporter", report)
            else:  # engine info series
                inst = lab.get("instance", "")
                ent = f"engine:{inst}/{lab.get('engine', '0')}"
                self.ident.setdefault(ent, {"instance": inst, "engine": lab.get("engine", "0")})
                for label, v in lab.items():
                    if label not in ENGINE_SKIP and v:
                        prefix = m.split(":", 1)[0]
                        self._set(ent, f"{prefix}.{label}", v, ts, m, report)
        self.pending = pending

    def _gpu_labels(self, lab: dict[str, str], ts: int, report: DriftReport) -> None:
        uuid = lab.get("UUID") or lab.get("uuid")
        host = lab.get("Hostname") or lab.get("hostname")
        if not uuid:
            return
        gpu = f"gpu:{uuid}"
        self.ident.setdefault(
            gpu, {k: v for k, v in (("UUID", uuid), ("Hostname", host), ("gpu", lab.get("gpu"))) if v}
        )
        if host:
            self.group_hint[gpu] = f"node:{host}"
            self.ident.setdefault(f"node:{host}", {"Hostname": host})
        for label, key in GPU_LABELS.items():
            v = lab.get(label)
            if not v:
                continue
            self._set(gpu, key, v, ts, "dcgm-exporter", report)
            if host and key in NODE_FROM_GPU:
                self._set(f"node:{host}", key, v, ts, "dcgm-exporter", report)

    def _from_values(self, store: Any, start_ms: int, end_ms: int, report: DriftReport) -> None:
        names = "|".join(VALUE_SETTINGS)
        for sd in store.select([Matcher("__name__", "=~", names)], start_ms, end_ms):
            lab = sd.key.label_dict()
            uuid = lab.get("UUID") or lab.get("uuid")
            if not uuid:
                continue
            ent = f"gpu:{uuid}"
            key = VALUE_SETTINGS[sd.key.metric]
            ok = np.isfinite(sd.values) & ~sd.stale
            ts, vals = sd.ts_ms[ok], sd.values[ok]
            if not len(vals):
                continue
            cur = self.values.get(ent, {}).get(key)
            try:
                prev = float(cur.value) if cur is not None else float(vals[0])
            except ValueError:
                prev = float(vals[0])
            host = lab.get("Hostname") or lab.get("hostname")
            node = f"node:{host}" if host else None  # the node's setting: its GPUs' newest value
            points = [0] if cur is None else []
            points += np.flatnonzero(
                np.abs(np.diff(np.concatenate([[prev], vals]))) > self.config.value_tolerance
            ).tolist()
            for j in points:
                v, t = _norm(float(vals[j])), int(ts[j])
                self._set(ent, key, v, t, "dcgm-exporter", report)
                if node:
                    self._set(node, key, v, t, "dcgm-exporter", report)

    def _from_configs(self, store: Any, until_ms: int, report: DriftReport) -> None:
        cur = store.cursor()
        try:
            rows = cur.execute(
                "SELECT ts, entity, config, source FROM configs WHERE ts > ? AND ts <= ? ORDER BY ts",
                [self.configs_ms, until_ms],
            ).fetchall()
        finally:
            cur.close()
        for ts, ent_json, cfg_json, source in rows:
            self.configs_ms = max(self.configs_ms, int(ts))
            try:
                labels, cfg = json.loads(ent_json), json.loads(cfg_json)
            except ValueError:
                continue
            if not isinstance(labels, dict) or not isinstance(cfg, dict):
                continue
            ent = entity_of_config_labels(labels)
            if ent is None:
                continue
            self.ident.setdefault(ent, {k: str(v) for k, v in labels.items() if k != "entity"})
            for k, v in _flatten(cfg).items():
                if v is not None:
                    self._set(ent, k, _norm(v), int(ts), source or "configs", report)

    # ------------------------------------------------------------------ drift
    def group_of(self, entity: str) -> str:
        hint = self.group_hint.get(entity)
        if hint:
            return hint
        kind = entity.split(":", 1)[0]
        if kind == "node":
            model = self.values.get(entity, {}).get("gpu_model")
            return f"nodes:{model.value}" if model else "nodes"
        return kind

    def drifts(self) -> list[Drift]:
        cfg = self.config
        golden = cfg.golden
        groups: dict[str, list[str]] = {}
        for ent in self.values:
            groups.setdefault(self.group_of(ent), []).append(ent)
        parents: dict[str, list[str]] = {}
        for g, members in groups.items():
            if g.startswith("nodes:"):  # nodes of one GPU model, within all nodes
                parents.setdefault("nodes", []).extend(members)

        def majority(members: list[str], key: str) -> tuple[str, float, int] | None:
            vals = [self.values[e][key].value for e in members if key in self.values[e]]
            if len(vals) < cfg.min_peers:
                return None
            top, top_n = Counter(vals).most_common(1)[0]
            share = top_n / len(vals)
            return (top, share, len(vals)) if share > cfg.majority else None

        out: list[Drift] = []
        for group, members in sorted(groups.items()):
            keys = sorted({k for e in members for k in self.values[e]})
            for key in keys:
                ignored = any(key.lower().endswith(x) for x in cfg.ignore_keys)
                peers = None if ignored else majority(members, key)
                where = group
                parent = "nodes" if group.startswith("nodes:") else None
                if peers is None and not ignored and parent is not None and key in FLEET_KEYS:
                    have = sum(1 for e in members if key in self.values[e])
                    if have < cfg.min_peers:  # too few of this GPU model: compare with all nodes
                        peers, where = majority(parents[parent], key), parent
                for e in members:
                    v = self.values[e].get(key)
                    if v is None:
                        continue
                    pin = golden.get(e, {}).get(key)
                    if pin is None:
                        pin = golden.get(e.split(":", 1)[0], {}).get(key)
                    if pin is not None:
                        if v.value != pin:
                            out.append(Drift(e, key, v.value, pin, "golden", group, 0, 1.0, v.since_ms))
                    elif peers is not None and v.value != peers[0]:
                        out.append(
                            Drift(e, key, v.value, peers[0], "peers", where, peers[2], peers[1], v.since_ms)
                        )
        return out

    def snapshot(self, entity: str) -> dict[str, Any]:
        return {
            k: {"value": v.value, "since_ms": v.since_ms, "source": v.source}
            for k, v in sorted(self.values.get(entity, {}).items())
        }

    def status(self) -> dict[str, Any]:
        return {
            "entities": len(self.values),
            "keys": sum(len(v) for v in self.values.values()),
            "open_drifts": len(self.open_drifts),
            "changes_seen": self.changes_seen,
            "golden_selectors": len(self.config.golden),
            "watermark_ms": self.watermark_ms,
        }


def drift_dicts(drifts: Iterable[Drift]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in drifts]
