"""Alerting under the leader lease, in one process with two replicas' services on real
VictoriaMetrics and PostgreSQL: only the holder evaluates, a follower shows the leader's alerts and
incidents, an acknowledgement made on the follower reaches the leader, a takeover keeps the alert's
firing time and the incident, and a holder that lost the lease cannot write incidents."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from scaleout_helpers import Peer

from sightglass.alerting.catalog import FenceLost
from sightglass.alerting.service import AlertingService
from sightglass.model import SampleBatch
from sightglass.scaleout.config import load_backends
from sightglass.scaleout.leader import leader_for
from sightglass.scaleout.store import ScaleOutStore
from sightglass.store.postgres import PostgresCatalog
from sightglass.store.remote import RemoteEngine, RemoteMetricStore, RemoteOptions


def _replica(vm: Peer, dsn: str, rid: str) -> ScaleOutStore:
    b = load_backends({
        "metrics": {"kind": "victoriametrics", "url": vm.url, "remote_write_url": vm.write_url},
        "catalog": {"kind": "postgres", "dsn": dsn},
        "replicas": {"enabled": True, "id": rid, "lease_ttl": "30s", "heartbeat": "1s"},
    })  # fmt: skip
    return ScaleOutStore(RemoteMetricStore(RemoteOptions(vm.url, vm.write_url)), PostgresCatalog(dsn), b)


def _service(store: ScaleOutStore, rules: Path) -> AlertingService:
    cfg = {"default_rules": False, "default_slos": False, "rule_files": [str(rules)], "clock": "data"}
    return AlertingService(store, RemoteEngine(store.metrics), cfg, rca=False, leader=leader_for(store, "alerting"))


def test_one_evaluator_follower_ack_takeover_and_fence(vm: Peer, pg_dsn: str, tmp_path: Path) -> None:
    import _peers

    metric = f"sg_leader_{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000) - 5_000
    rows = [(metric, {"host": "n1"}, now - k * 10_000, 1.0) for k in range(6)][::-1]
    w = RemoteMetricStore(RemoteOptions(vm.url, vm.write_url))
    w.append(SampleBatch.from_rows(rows))
    w.close()
    _peers.vm_flush(vm.server)
    time.sleep(1.2)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"groups:\n  - name: g\n    interval: 10s\n    rules:\n      - alert: Up\n        expr: {metric} > 0\n"
        "        labels: {severity: critical}\n"
    )
    sa, sb = _replica(vm, pg_dsn, "a"), _replica(vm, pg_dsn, "b")
    a, b = _service(sa, rules), _service(sb, rules)
    try:
        assert a.step(now)["at_ms"] == now  # a takes the lease first and evaluates
        assert b.step(now)["leader"] is False  # b follows: evaluates nothing ...
        assert b.evaluator.evaluations == 0
        fired = [x for x in a.evaluator.alerts() if x.state == "firing"]
        assert len(fired) == 1
        # ... but shows the leader's alert and incident
        assert [(x.fingerprint, x.fired_at_ms) for x in b.evaluator.alerts()] == [
            (fired[0].fingerprint, fired[0].fired_at_ms)
        ]
        assert b.incidents is not None and a.incidents is not None
        (inc,) = b.incidents.list_incidents()
        assert [i.id for i in a.incidents.list_incidents()] == [inc.id]
        # an acknowledgement on the follower lands in the catalog, and the leader takes it up
        with b.lock:
            b.incidents.acknowledge(inc.id, now + 1, by="ops")
        a.step(now + 10_000)
        got = a.incidents.get(inc.id)
        assert got is not None and got.state == "acknowledged" and got.acknowledged_by == "ops"
        # the leader's lease expires (paused, partitioned): b takes over from a's checkpoint
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute("UPDATE leases SET expires_ms = 0 WHERE task = 'alerting'")
        b.step(now + 20_000)
        assert b.leader is not None and b.leader.lease is not None and b.restored == 1
        again = [x for x in b.evaluator.alerts() if x.state == "firing"]
        assert [(x.fingerprint, x.fired_at_ms) for x in again] == [(fired[0].fingerprint, fired[0].fired_at_ms)]
        # a lost it: its round is a follower's, and an armed write of its own is refused
        assert a.step(now + 20_000)["leader"] is False
        a.catalog.armed = True
        with pytest.raises(FenceLost):
            a.catalog.save_incident(inc.to_dict())
        a.catalog.armed = False
        incs = sa.catalog.load_incidents()
        assert [(d["id"], d["state"]) for d in incs] == [(inc.id, "acknowledged")]  # one incident, not two
    finally:
        for svc in (a, b):
            svc.close()
        for s in (sa, sb):
            s.close()
