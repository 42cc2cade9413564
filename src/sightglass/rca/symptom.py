"""From a symptom (a PromQL expression and an instant) to the entities it is about.

The entities come from two places: the labels of the series the expression returns at ``at``, and
the equality matchers of its selectors (``histogram_quantile(0.95, sum by (le) (rate(x{model_name=
"m"}[5m])))`` returns one label-less series, but it is about ``model:m``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sightglass.promql.engine import parse
from sightglass.topology.graph import Topology
from sightglass.topology.infer import TopologyBuilder, host_of

MAX_SYMPTOM_BYTES = 16_384


def selectors(node: Any) -> Iterator[Any]:
    """Every ``VectorSelector`` in a parsed expression."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        yield node
        return
    if kind == "MatrixSelector":
        yield node.vector_selector
        return
    for attr in ("args", "expr", "lhs", "rhs", "param"):
        child = getattr(node, attr, None)
        if child is None:
            continue
        if isinstance(child, list):
            for c in child:
                yield from selectors(c)
        elif type(child).__module__ != "builtins":
            yield from selectors(child)


def aggregated_parts(query: str) -> list[str]:
    """The arguments of the outermost aggregations of ``query`` (``sum(rate(x[5m]))`` -> ``rate(x[5m])``):
    the per-entity series a fleet-wide symptom is made of."""
    out: list[str] = []

    def walk(node: Any) -> None:
        kind = type(node).__name__
        if kind == "AggregateExpr":
            out.append(str(node.expr))
            return
        for attr in ("args", "expr", "lhs", "rhs"):
            child = getattr(node, attr, None)
            if child is None:
                continue
            for c in child if isinstance(child, list) else [child]:
                if type(c).__module__ != "builtins":
                    walk(c)

    walk(parse(query))
    return list(dict.fromkeys(out))


def equality_labels(query: str) -> list[dict[str, str]]:
    """The ``label="value"`` matchers of each selector of ``query`` (one dict per selector)."""
    out = []
    for vs in selectors(parse(query)):
        labels: dict[str, str] = {}
        for m in vs.matchers.matchers:
            if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual") and m.value:
                labels[m.name] = m.value
        if labels:
            out.append(labels)
    return out


def entity_of_labels(
    labels: Mapping[str, str], topo: Topology, builder: TopologyBuilder | None = None
) -> str | None:
    """The most specific entity the topology knows that a label set identifies."""

    def known(eid: str | None) -> str | None:
        return eid if eid is not None and topo.entity(eid) is not None else None

    uuid = labels.get("UUID") or labels.get("uuid") or labels.get("gpu_uuid")
    host = host_of(labels, instance_is_host=False) or (
        host_of(labels) if labels.get("instance") and not labels.get("slurm_job_id") else None
    )
    if uuid and known(f"gpu:{uuid}"):
        return f"gpu:{uuid}"
    if host and labels.get("gpu") is not None:
        alias = builder._gpu_alias.get((host, labels["gpu"])) if builder is not None else None
        for eid in (alias, f"gpu:{host}/{labels['gpu']}"):
            if known(eid):
                return eid
    if labels.get("slurm_job_id") and known(f"job:{labels['slurm_job_id']}"):
        return f"job:{labels['slurm_job_id']}"
    for label, prefix in (("model_name", "model"), ("model", "model"), ("pipeline", "pipeline")):
        if labels.get(label) and known(f"{prefix}:{labels[label]}"):
            return f"{prefix}:{labels[label]}"
    if labels.get("deployment") and known(f"service:{labels['deployment']}"):
        return f"service:{labels['deployment']}"
    if labels.get("service") and known(f"service:{labels['service']}"):
        return f"service:{labels['service']}"
    if labels.get("switch") and known(f"switch:{labels['switch']}"):
        return f"switch:{labels['switch']}"
    if labels.get("export") and known(f"storage:{labels['export'].split(':', 1)[0]}"):
        return f"storage:{labels['export'].split(':', 1)[0]}"
    if host and labels.get("device") and known(f"nic:{host}/{labels['device']}"):
        return f"nic:{host}/{labels['device']}"
    if labels.get("pod") and labels.get("namespace") and known(f"pod:{labels['namespace']}/{labels['pod']}"):
        return f"pod:{labels['namespace']}/{labels['pod']}"
    host = host or host_of(labels)
    if host and known(f"node:{host}"):
        return f"node:{host}"
    if labels.get("node") and known(f"node:{labels['node']}"):
        return f"node:{labels['node']}"
    return None
