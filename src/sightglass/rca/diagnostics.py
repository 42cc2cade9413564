"""GPU diagnostics as RCA evidence: a DCGM verdict on a GPU the symptom depends on.

The alerting automation (``sightglass.alerting.diagnostics``) runs ``dcgmi diag`` on the GPUs of a
job whose symptom has no hardware signal (silent data corruption) and stores one ``gpu.diagnostic``
event per GPU. When the analysis is re-run with those events in reach (``evidence_until_ms``):

- a GPU of the symptom's neighbourhood that **failed** a test becomes a cause ahead of every cause
  without such a verdict: a failed DCGM test is a direct finding on the hardware, which a statistical
  anomaly is not. Its hypothesis follows what failed: a compute test (diagnostic, targeted stress or
  power, pulse, EUD) under a loss symptom is ``silent_data_corruption``, a memory test (memory,
  memtest, memory bandwidth, page retirement) ``hbm_ecc``, anything else ``gpu_diagnostic_failure``.
  Several failing GPUs are ordered by how many tests failed (the one with most first);
- a GPU that **passed** lowers GPU-hardware hypotheses on that GPU (score halved, said in its summary),
  and when every diagnosed GPU of a job passed, the job's SDC cause says so (replay is what is left).

Each such cause carries the diagnostic event, a re-check query on the gauge
``sightglass_gpu_diagnostic_result`` and a runbook line.
"""

from __future__ import annotations

from typing import Any

from sightglass.rca.result import Cause, EventEvidence

EVENT_KIND = "gpu.diagnostic"
METRIC = "sightglass_gpu_diagnostic_result"
LOSS_METRICS = ("training_loss", "loss")
HARDWARE = {"hbm_ecc", "xid79_fell_off_bus", "nvlink_degraded", "gpu_thermal", "silent_data_corruption"}
ACTIONS = {
    "silent_data_corruption": "The GPU failed a DCGM compute diagnostic while its job's loss spiked: drain it "
    "(exclude it from the scheduler), restart the job from the checkpoint before the spike on the other GPUs, "
    "and open an RMA with the dcgmi diag log (test and error below).",
    "hbm_ecc": "The GPU failed a DCGM memory diagnostic: drain it, check its retired pages / remapped rows "
    "(nvidia-smi -q -d ROW_REMAPPER), reset it if remapping is pending, and RMA it if the test fails again.",
    "gpu_diagnostic_failure": "The GPU failed a DCGM diagnostic: drain it, read the dcgmi diag log (test and "
    "error below), rerun the failing test alone (dcgmi diag -r <test>) and RMA it if it fails again.",
}


def _loss_symptom(symptom: str) -> bool:
    return any(m in symptom for m in LOSS_METRICS)


def _fault_for(kinds: set[str], symptom: str) -> str:
    if "compute" in kinds and _loss_symptom(symptom):
        return "silent_data_corruption"
    if "memory" in kinds:
        return "hbm_ecc"
    return "gpu_diagnostic_failure"


def _with(summary: str, sentence: str) -> str:
    return f"{summary} {sentence}" if summary else sentence


def _recheck(labels: dict[str, str]) -> str:
    uuid = labels.get("UUID")
    sel = (
        f'UUID="{uuid}"' if uuid else f'Hostname="{labels.get("Hostname", "")}",gpu="{labels.get("gpu", "")}"'
    )
    return f"{METRIC}{{{sel}}} == 3"


def apply(
    causes: list[Cause],
    *,
    store: Any,
    topo: Any,
    entity_of: Any,
    neighbourhood: dict[str, int],
    symptom: str,
    start_ms: int,
    until_ms: int,
    top: int,
    labels_of: Any,
) -> tuple[list[Cause], list[str]]:
    """``causes`` re-ranked with the diagnostics stored in ``[start_ms, until_ms]``; and warnings."""
    if _loss_symptom(symptom):
        from sightglass.rca.knowledge import RUNBOOK

        for c in causes:
            # the job is the only suspect of its own loss spike (nothing below it changed): that is
            # the signature of silent data corruption, not of a hang (a hang stops the steps)
            if c.kind == "job" and c.fault == "nccl_hang" and not c.signals and not c.events:
                c.fault, c.action = "silent_data_corruption", RUNBOOK["silent_data_corruption"]
    try:
        events = store.query_events(start_ms, until_ms, kind=EVENT_KIND)
    except Exception as e:  # a store without the event log: the answer stands without diagnostics
        return causes, [f"diagnostics not read: {type(e).__name__}: {e}"]
    latest: dict[str, Any] = {}
    for ev in events:
        eid = entity_of(ev.entity)
        if eid is None or eid not in neighbourhood:
            continue
        if eid not in latest or ev.ts_ms >= latest[eid].ts_ms:
            latest[eid] = ev
    if not latest:
        return causes, []
    by_id = {c.entity_id: c for c in causes}
    failed: list[tuple[int, str, Any]] = []
    passed: list[str] = []
    for eid, ev in latest.items():
        attrs = dict(ev.attributes)
        if attrs.get("result") == "fail":
            failed.append((len(attrs.get("failed") or []), eid, ev))
        elif attrs.get("result") == "pass":
            passed.append(eid)
    notes: list[str] = []
    # a pass lowers hardware hypotheses on that GPU
    for eid in passed:
        hit = by_id.get(eid)
        if hit is not None and hit.fault in HARDWARE:
            hit.score *= 0.5
            hit.summary = _with(hit.summary, "It passed its DCGM diagnostic (score halved).")
    diagnosed_pass = set(passed)
    for c in causes:
        if c.kind == "job" and c.fault == "silent_data_corruption":
            gpus = [g for g in neighbourhood if g.startswith("gpu:") and g in latest]
            if gpus and all(g in diagnosed_pass for g in gpus):
                c.summary = _with(
                    c.summary,
                    f"All {len(gpus)} diagnosed GPUs of the job passed DCGM diagnostics: replay the spiking steps "
                    "rank by rank to find the GPU.",
                )
    if not failed:
        causes.sort(key=lambda c: -c.score)
        return causes[:top], notes
    lead = max((c.score for c in causes), default=1.0)
    new: list[Cause] = []
    for rank, (n_failed, eid, ev) in enumerate(sorted(failed, key=lambda x: (-x[0], x[1]))):
        attrs = dict(ev.attributes)
        kinds = set(attrs.get("failed_kinds") or [])
        fault = _fault_for(kinds, symptom)
        labels = labels_of(eid) or dict(ev.entity)
        tests = attrs.get("tests") or {}
        first = next((n for n in attrs.get("failed") or [] if n in tests), None)
        err = ""
        if first is not None and tests[first].get("errors"):
            err = f": {str(tests[first]['errors'][0])[:200]}"
        evidence = EventEvidence(
            ev.ts_ms, ev.kind, dict(ev.entity), attrs, ev.severity, "events", _recheck(labels)
        )
        old = by_id.pop(eid, None)
        score = lead * 2.0 + n_failed - 0.01 * rank
        summary = (
            f"Failed DCGM diagnostic (dcgmi diag -r {attrs.get('level', '?')}): {', '.join(attrs.get('failed') or [])}"
            f"{err}."
        )
        if old is not None:
            old.fault, old.score, old.action = fault, score, ACTIONS[fault]
            old.events.insert(0, evidence)
            old.summary = _with(summary, old.summary) if old.summary else summary
            new.append(old)
        else:
            new.append(Cause(eid, "gpu", labels, fault, score, ev.ts_ms, neighbourhood.get(eid, 1), 1,
                             events=[evidence], action=ACTIONS[fault], summary=summary))  # fmt: skip
    notes.append(
        f"{len(failed)} GPU(s) of the symptom's neighbourhood failed a DCGM diagnostic; they lead the answer"
    )
    rest = [c for c in causes if c.entity_id in by_id]
    out = sorted(new, key=lambda c: -c.score) + sorted(rest, key=lambda c: -c.score)
    return out[:top], notes
