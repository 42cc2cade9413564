"""The topology of a simulated factory, checked against the simulator's own inventory."""

from __future__ import annotations

from typing import Any

from topo_helpers import simulate_store

from sightglass.model import Event, SampleBatch
from sightglass.store.duckdb import DuckDBStore
from sightglass.topology import Topology, TopologyBuilder, build_topology


def _check_against_inventory(topo: Topology, sim: Any) -> None:
    f = sim.factory
    assert {e.id for e in topo.entities("node")} == {f"node:{n.hostname}" for n in f.nodes}
    assert len(topo.entities("gpu")) == f.n_gpus
    for g, uuid in enumerate(f.gpu_uuid):
        host = f.node_of_gpu(g).hostname
        assert topo.related(f"gpu:{uuid}", "gpu-in-node") == [f"node:{host}"]
        assert topo.entity(f"gpu:{uuid}").labels["gpu"] == str(g % 8)  # type: ignore[union-attr]
    for n in f.nodes:
        nics = topo.related(f"node:{n.hostname}", "nic-in-node", outgoing=False)
        assert len(nics) == 8
        assert topo.related(f"node:{n.hostname}", "node-mounts-storage") == ["storage:storage-01"]
        assert topo.related(f"node:{n.hostname}", "node-in-rack") == [f"rack:{n.rack}"]
        assert topo.related(f"node:{n.hostname}", "node-links-switch") == [f"switch:{n.leaf}"]
    for svc in sim.services:
        sid = f"service:{svc.name}"
        assert topo.related(f"model:{svc.model_name}", "model-served-by-service") == [sid]
        pods = topo.related(sid, "service-has-pod")
        assert pods == sorted(f"pod:inference/{p}" for p in svc.pods)
        assert topo.owner(sid) == f"team:{svc.team}"
        for p, n in zip(svc.pods, svc.nodes, strict=True):
            host = f.nodes[n].hostname
            assert topo.related(f"pod:inference/{p}", "pod-on-node") == [f"node:{host}"]
            gpus = topo.related(f"pod:inference/{p}", "pod-uses-gpu")
            assert gpus == sorted(f"gpu:{f.gpu_uuid[n * 8 + i]}" for i in range(8))
    for h in sim.holds:
        gpus = topo.related(f"pod:{h.namespace}/{h.pod}", "pod-uses-gpu")
        assert gpus == sorted(f"gpu:{f.gpu_uuid[g]}" for g in h.gpus)
        assert topo.owner(f"pod:{h.namespace}/{h.pod}") == f"team:{h.team}"
    for j in sim.jobs:  # running at the end: live now, on all GPUs of its nodes
        jid = f"job:{j.job_id}"
        want = sorted(f"gpu:{f.gpu_uuid[g]}" for g in j.gpus)
        assert topo.related(jid, "job-uses-gpu") == want
        assert topo.owner(jid) == f"team:{j.team}"
    for j in sim.finished_jobs:  # ended: history, visible as of their lifetime only
        jid = f"job:{j.job_id}"
        assert topo.related(jid, "job-uses-gpu") == []
        assert len(topo.related(jid, "job-uses-gpu", at_ms=j.start_ms + 1000)) == 8 * len(j.nodes)
    for p in sim.pipelines:
        assert topo.related(f"pipeline:{p.name}", "dataset-produced-by-pipeline", outgoing=False) == [
            f"dataset:{p.dataset}"
        ]
        assert topo.owner(f"pipeline:{p.name}") == f"team:{p.team}"


def test_topology_of_simulated_factory(factory16: tuple[DuckDBStore, Any]) -> None:
    store, sim = factory16
    topo = build_topology(store, inventory=sim.factory.describe())
    _check_against_inventory(topo, sim)
    kinds = topo.kinds()
    assert kinds["gpu"] == 128 and kinds["node"] == 16 and kinds["rack"] == 4 and kinds["switch"] == 6


def test_depends_on_and_dependents(factory16: tuple[DuckDBStore, Any]) -> None:
    store, sim = factory16
    topo = build_topology(store, inventory=sim.factory.describe())
    svc = sim.services[0]
    node = sim.factory.nodes[svc.nodes[0]]
    deps = topo.depends_on(f"model:{svc.model_name}")
    gpu = f"gpu:{sim.factory.gpu_uuid[svc.nodes[0] * 8]}"
    assert deps[f"service:{svc.name}"] == 1
    assert deps[gpu] == 2  # model -> pod -> gpu
    for want in (f"node:{node.hostname}", f"rack:{node.rack}", f"switch:{node.leaf}", "switch:spine-01"):
        assert want in deps
    up = topo.dependents(gpu)
    assert f"model:{svc.model_name}" in up and f"service:{svc.name}" in up
    job = sim.jobs[0]
    jdeps = topo.depends_on(f"job:{job.job_id}")
    assert f"node:{sim.factory.nodes[job.nodes[0]].hostname}" in jdeps
    assert "storage:storage-01" in jdeps


def test_path(factory16: tuple[DuckDBStore, Any]) -> None:
    store, sim = factory16
    topo = build_topology(store, inventory=sim.factory.describe())
    svc = sim.services[0]
    node = sim.factory.nodes[svc.nodes[0]]
    steps = topo.path(f"model:{svc.model_name}", f"rack:{node.rack}")
    assert steps is not None and steps[-1].dst == f"rack:{node.rack}"
    assert len(steps) == 3  # model -> pod -> node -> rack
    assert topo.path("node:nope", f"rack:{node.rack}") is None


def test_incremental_update_matches_one_shot(tmp_path: Any) -> None:
    store, sim = simulate_store(tmp_path / "a", 4, 10)
    try:
        b = TopologyBuilder()
        b.update(store)
        n_before = len(b.topology.edges)
        # a new GPU series with the lower-case labels of dcgm-exporter main, MIG and exported_pod
        t = sim.now_ms + 10_000
        store.append(
            SampleBatch.from_rows(
                [
                    (
                        "DCGM_FI_DEV_GPU_UTIL",
                        {
                            "hostname": "node-99",
                            "uuid": "GPU-new",
                            "gpu": "0",
                            "GPU_I_ID": "3",
                            "GPU_I_PROFILE": "1g.10gb",
                            "pod": "dcgm-exporter-abcde",
                            "exported_pod": "trainer-0",
                            "exported_namespace": "ml",
                        },
                        t,
                        5.0,
                    ),
                    ("kube_pod_info", {"pod": "trainer-0", "namespace": "ml", "node": "node-99"}, t, 1.0),
                ]
            )
        )
        store.append_events(
            [
                Event(
                    t,
                    "job.start",
                    {"slurm_job_id": "7"},
                    {"nodes": ["node-99"], "account": "ads", "dataset": "s3://d/x"},
                )
            ]
        )
        topo = b.update(store)
        assert len(topo.edges) > n_before
        assert topo.related("mig:GPU-new/3", "mig-in-gpu") == ["gpu:GPU-new"]
        assert topo.related("pod:ml/trainer-0", "pod-uses-gpu") == ["mig:GPU-new/3"]
        assert topo.related("pod:ml/trainer-0", "pod-on-node") == ["node:node-99"]
        assert topo.related("job:7", "job-uses-gpu") == ["gpu:GPU-new"]
        assert topo.related("job:7", "job-reads-dataset") == ["dataset:s3://d/x"]
        assert topo.owner("job:7") == "team:ads"
        assert topo.entity("pod:kube-system/dcgm-exporter-abcde") is None
        fresh = build_topology(store)
        assert {k: (e.start_ms, e.end_ms) for k, e in fresh.edges.items()} == {
            k: (e.start_ms, e.end_ms) for k, e in topo.edges.items()
        }
    finally:
        store.close()


def test_persist_and_reload(tmp_path: Any) -> None:
    store, sim = simulate_store(tmp_path / "a", 4, 10)
    try:
        b = TopologyBuilder()
        b.add_inventory(sim.factory.describe())
        b.update(store)
        n_ent, n_rel = b.persist(store)
        assert n_ent == len(b.topology.entities_by_id) and n_rel == len(b.topology.edges)
        assert b.persist(store) == (0, 0)  # nothing moved: nothing written
        again = TopologyBuilder().update(store)  # racks come back from the catalog tables
        assert again.kinds() == b.topology.kinds()
        assert again.related(f"node:{sim.factory.nodes[0].hostname}", "node-in-rack") == ["rack:rack-01"]
    finally:
        store.close()


def test_topology_at_1000_nodes(tmp_path: Any) -> None:
    store, sim = simulate_store(tmp_path / "big", 1000, 1)
    try:
        topo = build_topology(store, inventory=sim.factory.describe())  # its cost: bench/analytics.py
        _check_against_inventory(topo, sim)
        assert topo.kinds()["gpu"] == 8000 and topo.kinds()["rack"] == 250
    finally:
        store.close()


def test_node_target_label_names_the_host_of_scraped_series() -> None:
    from sightglass.topology.infer import host_of

    scraped = {"__name__": "node_infiniband_port_data_received_bytes_total", "instance": "127.0.0.1:40123", "node": "node-03"}
    assert host_of(scraped) == "node-03"
    assert host_of(scraped, instance_is_host=False) == "node-03"
    ksm = {"__name__": "kube_pod_info", "instance": "ksm:8080", "node": "node-03", "pod": "p"}
    assert host_of(ksm, instance_is_host=False) is None
    assert host_of({"__name__": "DCGM_FI_DEV_GPU_TEMP", "Hostname": "node-01", "node": "x"}) == "node-01"
