"""Incident grouping rules on a small hand-built topology (2 racks, a leaf each, one spine, shared
storage, a job across rack 1), with an RCA stand-in where the test is about using its answer."""

from __future__ import annotations

from typing import Any

import pytest

from sightglass.alerting.catalog import MemoryCatalog
from sightglass.alerting.evaluator import Alert, fingerprint
from sightglass.alerting.incidents import IncidentError, IncidentManager, alert_symptom
from sightglass.model import Entity
from sightglass.topology import Topology

T0 = 1_800_000_000_000
MIN = 60_000


def _topology() -> Topology:
    t = Topology()
    for kind, eid in [("switch", "switch:l1"), ("switch", "switch:l2"), ("switch", "switch:s1"), ("storage", "storage:st"),
                      ("rack", "rack:r1"), ("rack", "rack:r2"), ("job", "job:7")]:  # fmt: skip
        t.add_entity(Entity(eid, kind, {}))
    t.add_relation("switch:l1", "switch-links-switch", "switch:s1", 0, None)
    t.add_relation("switch:l2", "switch-links-switch", "switch:s1", 0, None)
    for i, (rack, leaf) in enumerate([("r1", "l1"), ("r1", "l1"), ("r2", "l2"), ("r2", "l2")], start=1):
        n = f"node:n{i}"
        t.add_entity(Entity(n, "node", {"Hostname": f"n{i}"}))
        t.add_relation(n, "node-in-rack", f"rack:{rack}", 0, None)
        t.add_relation(n, "node-links-switch", f"switch:{leaf}", 0, None)
        t.add_relation(n, "node-mounts-storage", "storage:st", 0, None)
        for g in range(2):
            gid = f"gpu:U-{i}-{g}"
            t.add_entity(Entity(gid, "gpu", {"UUID": f"U-{i}-{g}", "Hostname": f"n{i}", "gpu": str(g)}))
            t.add_relation(gid, "gpu-in-node", n, 0, None)
            if i <= 2:
                t.add_relation("job:7", "job-uses-gpu", gid, 0, None)
        for d in range(2):
            nic = f"nic:n{i}/mlx5_{d}"
            t.add_entity(Entity(nic, "nic", {}))
            t.add_relation(n, "nic-in-node", nic, 0, None)
        if i <= 2:
            t.add_relation("job:7", "job-on-node", n, 0, None)
    t.newest_ms = T0 + 60 * MIN
    return t


def _alert(rule: str, at: int, severity: str = "critical", **labels: str) -> Alert:
    lab = {"alertname": rule, "severity": severity, **labels}
    return Alert(rule, "g", lab, {"summary": rule}, 1.0, "firing", at, fired_at_ms=at, expr=f"{rule.lower()}_metric > 0",
                 fingerprint=fingerprint(lab))  # fmt: skip


def _nic(host: str, dev: str, at: int) -> Alert:
    return _alert("IbPortDown", at, instance=f"{host}:9100", device=dev)


def _gpu(rule: str, host_idx: int, g: int, at: int, **kw: str) -> Alert:
    return _alert(rule, at, Hostname=f"n{host_idx}", gpu=str(g), UUID=f"U-{host_idx}-{g}", **kw)


@pytest.fixture
def mgr() -> IncidentManager:
    topo = _topology()
    return IncidentManager(MemoryCatalog(), topology=lambda: topo, rca_note="rca unavailable: test")


def _feed(mgr: IncidentManager, alerts: list[Alert], at: int) -> None:
    mgr.observe(alerts, at)


def _open(mgr: IncidentManager) -> list[Any]:
    return [i for i in mgr.list_incidents() if i.state != "resolved"]


def test_hcas_of_one_rack_group_under_their_leaf_and_the_switch_alert_joins(mgr: IncidentManager) -> None:
    alerts = [
        _nic("n1", "mlx5_0", T0),
        _nic("n1", "mlx5_1", T0),
        _nic("n2", "mlx5_0", T0),
        _nic("n2", "mlx5_1", T0),
    ]
    _feed(mgr, alerts, T0)
    (inc,) = _open(mgr)
    assert inc.anchor == "switch:l1" and inc.cause_entity == "switch:l1" and len(inc.alerts) == 4
    assert inc.rca_note == "rca unavailable: test"
    alerts.append(_alert("IbSwitchDown", T0 + MIN, switch="l1"))
    alerts.append(_alert("TrainingJobHang", T0 + 2 * MIN, slurm_job_id="7"))
    _feed(mgr, alerts, T0 + 2 * MIN)
    (inc,) = _open(mgr)
    assert {a["alertname"] for a in inc.alerts.values()} == {"IbPortDown", "IbSwitchDown", "TrainingJobHang"}


def test_other_rack_stays_apart_through_the_spine_and_storage(mgr: IncidentManager) -> None:
    alerts = [_nic("n1", "mlx5_0", T0), _nic("n3", "mlx5_0", T0), _gpu("GpuFellOffBus", 4, 1, T0)]
    _feed(mgr, alerts, T0)
    assert len(_open(mgr)) == 3  # the spine and the storage are shared by every node: not narrow


def test_gpus_of_one_node_group_under_the_node(mgr: IncidentManager) -> None:
    _feed(mgr, [_gpu("GpuPowerBrake", 3, 0, T0), _gpu("GpuPowerBrake", 3, 1, T0)], T0)
    (inc,) = _open(mgr)
    assert inc.anchor == "node:n3"


def test_switch_first_then_ports_join_by_dependency(mgr: IncidentManager) -> None:
    sw = _alert("IbSwitchDown", T0, switch="l2")
    _feed(mgr, [sw], T0)
    _feed(mgr, [sw, _nic("n3", "mlx5_0", T0 + MIN), _nic("n4", "mlx5_1", T0 + MIN)], T0 + MIN)
    (inc,) = _open(mgr)
    assert inc.anchor == "switch:l2" and len(inc.alerts) == 3
    assert [a["grouped_by"] for a in inc.alerts.values()][1].startswith("topology: depends on switch:l2")


def test_a_switch_alert_merges_incidents_below_it(mgr: IncidentManager) -> None:
    a1 = _nic("n1", "mlx5_0", T0)
    _feed(mgr, [a1], T0)
    a2 = _nic("n2", "mlx5_0", T0 + 30 * MIN)  # long after: no shared-dependency grouping
    mgr.group_window_ms = 5 * MIN
    _feed(mgr, [a1, a2], T0 + 30 * MIN)
    assert len(_open(mgr)) == 2
    sw = _alert("IbSwitchDown", T0 + 31 * MIN, switch="l1")
    _feed(mgr, [a1, a2, sw], T0 + 31 * MIN)
    (inc,) = _open(mgr)
    assert inc.anchor == "switch:l1" and len(inc.alerts) == 3
    merged = [i for i in mgr.list_incidents() if i.merged_into]
    assert len(merged) == 1 and merged[0].merged_into == inc.id and merged[0].state == "resolved"


def test_auto_resolve_reopen_and_lifecycle(mgr: IncidentManager) -> None:
    a = _gpu("GpuFellOffBus", 1, 0, T0)
    _feed(mgr, [a], T0)
    a.state, a.resolved_at_ms = "inactive", T0 + 2 * MIN
    _feed(mgr, [a], T0 + 2 * MIN)
    (inc,) = mgr.list_incidents()
    assert inc.state == "resolved" and inc.resolved_by == "sightglass"
    b = _gpu("GpuMissing", 1, 0, T0 + 5 * MIN)
    _feed(mgr, [a, b], T0 + 5 * MIN)
    (inc,) = mgr.list_incidents()
    assert inc.state == "open" and "reopened" in [t["event"] for t in inc.timeline]
    mgr.acknowledge(inc.id, T0 + 6 * MIN, "alice", "looking")
    with pytest.raises(IncidentError, match="already acknowledged"):
        mgr.acknowledge(inc.id, T0 + 6 * MIN)
    mgr.resolve(inc.id, T0 + 7 * MIN, "alice")
    with pytest.raises(IncidentError, match="already resolved"):
        mgr.resolve(inc.id, T0 + 7 * MIN)
    with pytest.raises(IncidentError, match="cannot be acknowledged"):
        mgr.acknowledge(inc.id, T0 + 8 * MIN)
    with pytest.raises(KeyError):
        mgr.resolve("inc-nope", T0)
    events = [t["event"] for t in inc.timeline]
    assert events[0] == "opened" and events[-2:] == ["acknowledged", "resolved"]
    # a manual resolution is final: a new alert later opens a new incident
    c = _gpu("GpuCriticalXid", 1, 0, T0 + 9 * MIN)
    _feed(mgr, [a, b, c], T0 + 9 * MIN)
    assert len(mgr.list_incidents()) == 2


def test_info_alerts_open_no_incident(mgr: IncidentManager) -> None:
    _feed(mgr, [_gpu("GpuIdleHeld", 2, 1, T0, severity="info")], T0)
    assert mgr.list_incidents() == []


def test_rca_answer_groups_and_becomes_the_cause() -> None:
    topo = _topology()
    calls: list[tuple[str, int]] = []

    def rca(symptom: str, at: int) -> dict[str, Any]:
        calls.append((symptom, at))
        return {"symptom": {"query": symptom}, "causes": [
            {"entity": {"id": "storage:st", "kind": "storage", "labels": {}}, "fault": "storage_slowdown",
             "score": 9.0, "action": "check the filer"}]}  # fmt: skip

    mgr = IncidentManager(MemoryCatalog(), topology=lambda: topo, rca=rca)
    a = _alert("StorageSlow", T0, export="st:/shared")
    _feed(mgr, [a], T0)
    (inc,) = mgr.list_incidents()
    assert inc.cause == {"entity": "storage:st", "kind": "storage", "labels": {}, "fault": "storage_slowdown",
                         "score": 9.0, "action": "check the filer", "source": "rca"}  # fmt: skip
    assert calls == [('storages_metric{export="st:/shared"}', T0)] or calls[0][1] == T0
    # a model alert with no topology path to the storage: the RCA's answer groups it
    m = _alert("SLOErrorBudgetBurn", T0 + MIN, model_name="llama")
    _feed(mgr, [a, m], T0 + MIN)
    (inc,) = mgr.list_incidents()
    assert len(inc.alerts) == 2 and inc.alerts[m.fingerprint]["grouped_by"] == "rca: top cause storage:st"


def test_many_members_under_the_anchor_beat_the_rca_top_member() -> None:
    topo = _topology()

    def rca(symptom: str, at: int) -> dict[str, Any]:
        return {
            "causes": [
                {
                    "entity": {"id": "gpu:U-3-0", "kind": "gpu", "labels": {}},
                    "fault": "power_brake",
                    "score": 3,
                }
            ]
        }

    mgr = IncidentManager(MemoryCatalog(), topology=lambda: topo, rca=rca)
    a, b = _gpu("GpuPowerBrake", 3, 0, T0), _gpu("GpuPowerBrake", 3, 1, T0)
    _feed(mgr, [a], T0)
    _feed(mgr, [a, b], T0 + 30_000)
    (inc,) = mgr.list_incidents()
    assert inc.cause is not None and inc.cause["entity"] == "node:n3" and inc.cause["rca_top"] == "gpu:U-3-0"
    assert inc.rca is not None  # the RCA stays attached


def test_rca_failure_is_recorded_not_raised() -> None:
    def rca(symptom: str, at: int) -> dict[str, Any]:
        raise RuntimeError("boom")

    mgr = IncidentManager(MemoryCatalog(), topology=lambda: _topology(), rca=rca)
    _feed(mgr, [_gpu("GpuFellOffBus", 1, 0, T0)], T0)
    (inc,) = mgr.list_incidents()
    assert inc.rca_note == "rca failed: RuntimeError: boom" and inc.cause_entity == "gpu:U-1-0"


def test_alert_symptom_narrows_the_rule_metric_by_identity_labels() -> None:
    a = _gpu("GpuThermalThrottling", 1, 0, T0)
    a.expr = "max by (Hostname, gpu, UUID) (rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m])) / 1e6 > 0.1"
    assert alert_symptom(a) == 'DCGM_FI_DEV_THERMAL_VIOLATION{Hostname="n1",UUID="U-1-0",gpu="0"}'


def test_after_a_restart_alerts_gone_meanwhile_resolve_their_incident() -> None:
    topo = _topology()
    cat = MemoryCatalog()
    first = IncidentManager(cat, topology=lambda: topo)
    a = _gpu("GpuFellOffBus", 1, 0, T0)
    first.observe([a], T0)
    again = IncidentManager(cat, topology=lambda: topo)  # the server restarted; the alert is not back
    again.observe([], T0 + 10 * MIN)  # not every group has run yet: nothing concluded
    assert again.list_incidents()[0].state == "open"
    again.observe([], T0 + 11 * MIN, complete=True)
    (inc,) = again.list_incidents()
    assert inc.state == "resolved" and inc.timeline[-2]["detail"] == "GpuFellOffBus is no longer active"
