"""GPU diagnostics as RCA evidence (rca/diagnostics.py) on a real simulated store: a failed compute
test moves a loss-spike answer to the GPU, a memory failure reads as HBM, passes leave the job; a
replay mismatch moves it to the GPU that differed, a matching replay leaves the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sightglass.model import Event
from sightglass.rca.engine import analyze
from sightglass.simulate.fast import case_doc, run_ingest
from sightglass.simulate.faults import ScriptedFault
from sightglass.store.duckdb import DuckDBStore, StoreOptions
from sightglass.timeutil import parse_time_ms
from sightglass.topology import TopologyBuilder

START = 1_794_787_200_000


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sdc")
    store = DuckDBStore(Path(tmp) / "d", options=StoreOptions(compact_every_s=3600))
    _, sim = run_ingest(store, nodes=4, duration_s=1500, seed=101, start_ms=START, workdir=tmp, stop_s=990,
                        scripted=[ScriptedFault("silent_data_corruption", 660_000, 900_000, {})])  # fmt: skip
    f = next(x for x in sim.faults if x.state.get("started"))
    doc = case_doc(f.truth(), "silent_data_corruption", START, 1500)
    b = TopologyBuilder()
    b.add_inventory(sim.factory.describe())
    b.update(store)
    at = parse_time_ms(doc["at"])
    job = analyze(store, doc["symptom"], at, builder=b).symptom_entities[0]
    gpus = [b.topology.entity(g) for g in b.topology.depends_on(job, at, max_depth=2) if g.startswith("gpu:")]
    try:
        yield {"store": store, "b": b, "doc": doc, "at": at, "root": f.root, "gpus": gpus, "inv": sim.factory.describe()}
    finally:
        store.close()


def _event(e: Any, ts: int, result: str, failed: list[str], kinds: list[str], err: str = "") -> Event:
    tests = {"software": {"status": "pass", "kind": "software", "errors": []}}
    for t, k in zip(failed, kinds, strict=True):
        tests[t] = {"status": "fail", "kind": k, "errors": [err]}
    attrs = {"result": result, "level": 3, "failed": failed, "failed_kinds": kinds, "tests": tests}
    return Event(ts, "gpu.diagnostic", {k: e.labels[k] for k in ("Hostname", "gpu", "UUID")}, attrs,
                 "critical" if result == "fail" else "info", "dcgmi")  # fmt: skip


def test_first_answer_is_the_job_with_sdc(case: dict[str, Any]) -> None:
    res = analyze(case["store"], case["doc"]["symptom"], case["at"], builder=case["b"])
    assert res.causes[0].kind == "job" and res.causes[0].fault == "silent_data_corruption"
    assert all(c.kind != "gpu" or c.labels.get("gpu") != case["root"]["gpu"] for c in res.causes[:1])


def test_failed_compute_then_memory_then_passes(case: dict[str, Any]) -> None:
    store, at, sym = case["store"], case["at"], case["doc"]["symptom"]
    bad = next(e for e in case["gpus"] if e.labels["Hostname"] == case["root"]["Hostname"] and e.labels["gpu"] == case["root"]["gpu"])
    others = [e for e in case["gpus"] if e.id != bad.id]
    t1 = at + 16 * 60_000
    # every GPU passed but one, which failed the compute check
    store.append_events([_event(e, t1, "pass", [], []) for e in others])
    store.append_events([_event(bad, t1, "fail", ["diagnostic"], ["compute"], "GPU 1: GEMM mismatch")])
    before = analyze(store, sym, at, builder=case["b"])  # diagnostics after `at` do not count by default
    assert before.causes[0].kind == "job"
    res = analyze(store, sym, at, builder=case["b"], evidence_until_ms=t1)
    top = res.causes[0]
    assert top.entity_id == bad.id and top.fault == "silent_data_corruption"
    assert top.events[0].kind == "gpu.diagnostic" and top.events[0].query == f'sightglass_gpu_diagnostic_result{{UUID="{bad.labels["UUID"]}"}} == 3'
    assert "GEMM mismatch" in top.summary and "drain it" in top.action
    assert res.causes[1].kind == "job"  # the job stays in the answer, below its GPU
    assert any("failed a DCGM diagnostic" in w for w in res.warnings)
    # a later run on the same GPU failing its memory test reads as HBM
    t2 = t1 + 60_000
    store.append_events([_event(bad, t2, "fail", ["memory"], ["memory"], "Found 3 faulty memory elements on GPU 1")])
    res = analyze(store, sym, at, builder=case["b"], evidence_until_ms=t2)
    assert res.causes[0].entity_id == bad.id and res.causes[0].fault == "hbm_ecc"
    # and a third run where it passes: no GPU verdict is left, the job leads and says all passed
    t3 = t2 + 60_000
    store.append_events([_event(bad, t3, "pass", [], [])])
    res = analyze(store, sym, at, builder=case["b"], evidence_until_ms=t3)
    assert res.causes[0].kind == "job" and "passed DCGM diagnostics" in res.causes[0].summary


def _replay(e: Any, ts: int, result: str, checksum: str, expected: str, n: int) -> Event:
    attrs = {"result": result, "input": "gemm-int-2048x2048-seed-7-x8", "checksum": checksum, "expected": expected,
             "against": "the majority", "agreeing": n - 1, "compared": n, "task": "replay-x", "incident": "inc-x"}  # fmt: skip
    return Event(ts, "gpu.replay", {k: e.labels[k] for k in ("Hostname", "gpu", "UUID")}, attrs,
                 "critical" if result == "mismatch" else "info", "replay")  # fmt: skip


def test_replay_mismatch_then_match(case: dict[str, Any]) -> None:
    """After the DCGM runs above (the last: every GPU passed), a replay in which the faulty GPU's
    checksum differs from the job's other GPUs moves the answer to it; a later matching replay does not."""
    store, at, sym = case["store"], case["at"], case["doc"]["symptom"]
    bad = next(e for e in case["gpus"] if e.labels["Hostname"] == case["root"]["Hostname"] and e.labels["gpu"] == case["root"]["gpu"])
    others = [e for e in case["gpus"] if e.id != bad.id]
    good, wrong = "a" * 64, "b" * 64
    t4 = at + 20 * 60_000
    store.append_events([_replay(e, t4, "match", good, good, len(case["gpus"])) for e in others])
    store.append_events([_replay(bad, t4, "mismatch", wrong, good, len(case["gpus"]))])
    res = analyze(store, sym, at, builder=case["b"], evidence_until_ms=t4)
    top = res.causes[0]
    assert top.entity_id == bad.id and top.fault == "silent_data_corruption"
    assert top.events[0].kind == "gpu.replay"
    assert top.events[0].query == f'sightglass_gpu_replay_mismatch{{UUID="{bad.labels["UUID"]}"}} == 1'
    assert "Replay mismatch" in top.summary and "bbbbbbbb" in top.summary and "differs from the majority" in top.summary
    assert "without it" in top.action and "RMA" in top.action
    assert any("differed in a replay" in w for w in res.warnings)
    # the GPUs that matched are not causes of their own
    assert all(c.entity_id not in {e.id for e in others} or c.score < top.score for c in res.causes)
    # a second replay where it matches: no GPU verdict is left; the job leads and says all passed
    t5 = t4 + 60_000
    store.append_events([_replay(bad, t5, "match", good, good, len(case["gpus"]))])
    res = analyze(store, sym, at, builder=case["b"], evidence_until_ms=t5)
    assert res.causes[0].kind == "job" and "replay checksums matched" in res.causes[0].summary


def test_job_alone_under_its_loss_spike_is_sdc() -> None:
    from sightglass.rca.knowledge import hypothesis

    assert hypothesis("job", set(), set(), set(), set(), symptom='max(training_loss{slurm_job_id="7"})') == "silent_data_corruption"
    assert hypothesis("job", set(), set(), set(), set(), symptom="rate(training_steps_total[5m])") == "nccl_hang"
    assert hypothesis("job", {"training_rank_compute_seconds"}, set(), set(), set(), symptom="training_loss") == "nccl_hang"
    assert hypothesis("job", set(), set(), {"gpu.xid"}, set(), symptom="training_loss") == "nccl_hang"
