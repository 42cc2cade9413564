"""GPU diagnostics as RCA evidence: a DCGM verdict or a replay mismatch on a GPU the symptom depends on.

The alerting automation (``sightglass.alerting.diagnostics``) runs a deterministic replay (the agent's
``replay_command``: the same inputs on every GPU of the job, one checksum per GPU) and ``dcgmi diag``
on the GPUs of a job whose symptom has no hardware signal (silent data corruption). It stores one
``gpu.replay`` event per replayed GPU and one ``gpu.diagnostic`` event per diagnosed GPU. When the
analysis is re-run with those events in reach (``evidence_until_ms``):

- a GPU of the symptom's neighbourhood whose replay checksum **differed** from the majority of the
  job's GPUs (or from the hook's known answer) is ``silent_data_corruption``: the same computation on
  the same inputs gave a different result on it, which is the definition of the fault;
- a GPU that **failed** a DCGM test becomes a cause ahead of every cause without such a verdict: a
  failed DCGM test is a direct finding on the hardware, which a statistical anomaly is not. Its
  hypothesis follows what failed: a compute test (diagnostic, targeted stress or power, pulse, EUD)
  under a loss symptom is ``silent_data_corruption``, a memory test (memory, memtest, memory
  bandwidth, page retirement) ``hbm_ecc``, anything else ``gpu_diagnostic_failure``.
  Such GPUs lead the answer, a replay mismatch and a DCGM failure on the same GPU as one cause with
  both pieces of evidence; they are ordered by evidence (a replay mismatch counts as two failed tests);
- a GPU that **passed** DCGM or whose replay **matched** lowers GPU-hardware hypotheses on that GPU
  (score halved, said in its summary), and when every checked GPU of a job passed, the job's SDC
  cause says so.

Each such cause carries the event, a re-check query (``sightglass_gpu_diagnostic_result{...} == 3``,
``sightglass_gpu_replay_mismatch{...} == 1``) and a runbook line. (The rule that a job alone under its
own loss spike is silent data corruption lives with the other hypotheses, in ``rca.knowledge``.)
"""

from __future__ import annotations

from typing import Any

from sightglass.rca.knowledge import loss_symptom
from sightglass.rca.result import Cause, EventEvidence

EVENT_KIND = "gpu.diagnostic"
REPLAY_EVENT_KIND = "gpu.replay"
METRIC = "sightglass_gpu_diagnostic_result"
REPLAY_METRIC = "sightglass_gpu_replay_mismatch"
HARDWARE = {"hbm_ecc", "xid79_fell_off_bus", "nvlink_degraded", "gpu_thermal", "silent_data_corruption"}
REPLAY_WEIGHT = 2  # a replay mismatch counts as this many failed DCGM tests when ordering GPUs
ACTIONS = {
    "silent_data_corruption": "The GPU failed a DCGM compute diagnostic while its job's loss spiked: drain it "
    "(exclude it from the scheduler), restart the job from the checkpoint before the spike on the other GPUs, "
    "and open an RMA with the dcgmi diag log (test and error below).",
    "hbm_ecc": "The GPU failed a DCGM memory diagnostic: drain it, check its retired pages / remapped rows "
    "(nvidia-smi -q -d ROW_REMAPPER), reset it if remapping is pending, and RMA it if the test fails again.",
    "gpu_diagnostic_failure": "The GPU failed a DCGM diagnostic: drain it, read the dcgmi diag log (test and "
    "error below), rerun the failing test alone (dcgmi diag -r <test>) and RMA it if it fails again.",
}
REPLAY_ACTION = (
    "The GPU computed a different result from the job's other GPUs on the same replayed inputs (silent data "
    "corruption): drain it (exclude it from the scheduler), restart the job from the checkpoint before the "
    "loss spike without it, rerun the replay on it to confirm, and open an RMA with the checksums below."
)


def _fault_for(kinds: set[str], symptom: str) -> str:
    if "compute" in kinds and loss_symptom(symptom):
        return "silent_data_corruption"
    if "memory" in kinds:
        return "hbm_ecc"
    return "gpu_diagnostic_failure"


def _with(summary: str, sentence: str) -> str:
    return f"{summary} {sentence}" if summary else sentence


def _selector(labels: dict[str, str]) -> str:
    uuid = labels.get("UUID")
    return f'UUID="{uuid}"' if uuid else f'Hostname="{labels.get("Hostname", "")}",gpu="{labels.get("gpu", "")}"'


def _recheck(labels: dict[str, str]) -> str:
    return f"{METRIC}{{{_selector(labels)}}} == 3"


def _replay_recheck(labels: dict[str, str]) -> str:
    return f"{REPLAY_METRIC}{{{_selector(labels)}}} == 1"


def _latest(store: Any, kind: str, start_ms: int, until_ms: int, entity_of: Any, neighbourhood: dict[str, int]) -> dict[str, Any]:
    latest: dict[str, Any] = {}
    for ev in store.query_events(start_ms, until_ms, kind=kind):
        eid = entity_of(ev.entity)
        if eid is None or eid not in neighbourhood:
            continue
        if eid not in latest or ev.ts_ms >= latest[eid].ts_ms:
            latest[eid] = ev
    return latest


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
    """``causes`` re-ranked with the diagnostics and replays stored in ``[start_ms, until_ms]``; and warnings."""
    try:
        latest = _latest(store, EVENT_KIND, start_ms, until_ms, entity_of, neighbourhood)
        replays = _latest(store, REPLAY_EVENT_KIND, start_ms, until_ms, entity_of, neighbourhood)
    except Exception as e:  # a store without the event log: the answer stands without diagnostics
        return causes, [f"diagnostics not read: {type(e).__name__}: {e}"]
    if not latest and not replays:
        return causes, []
    by_id = {c.entity_id: c for c in causes}
    failed: dict[str, int] = {}  # GPU -> weight of its evidence
    passed: list[tuple[str, str]] = []
    for eid, ev in latest.items():
        attrs = dict(ev.attributes)
        if attrs.get("result") == "fail":
            failed[eid] = failed.get(eid, 0) + len(attrs.get("failed") or [])
        elif attrs.get("result") == "pass":
            passed.append((eid, "It passed its DCGM diagnostic (score halved)."))
    for eid, ev in replays.items():
        res = dict(ev.attributes).get("result")
        if res == "mismatch":
            failed[eid] = failed.get(eid, 0) + REPLAY_WEIGHT
        elif res == "match":
            passed.append((eid, "Its replay checksum matched the job's other GPUs (score halved)."))
    notes: list[str] = []
    # a pass lowers hardware hypotheses on that GPU
    for eid, sentence in passed:
        hit = by_id.get(eid)
        if hit is not None and hit.fault in HARDWARE and eid not in failed:
            hit.score *= 0.5
            hit.summary = _with(hit.summary, sentence)
    ok_dcgm = {e for e, ev in latest.items() if dict(ev.attributes).get("result") == "pass"}
    ok_replay = {e for e, ev in replays.items() if dict(ev.attributes).get("result") == "match"}
    for c in causes:
        if c.kind == "job" and c.fault == "silent_data_corruption" and not failed:
            gpus = [g for g in neighbourhood if g.startswith("gpu:") and (g in latest or g in replays)]
            if gpus and all(g in ok_dcgm or g in ok_replay for g in gpus):
                if any(g in replays for g in gpus):
                    line = (f"All {len(gpus)} checked GPUs of the job passed (replay checksums matched, DCGM passed): "
                            "the corruption did not recur; replay the spiking steps themselves rank by rank.")  # fmt: skip
                else:
                    line = (f"All {len(gpus)} diagnosed GPUs of the job passed DCGM diagnostics: replay the spiking steps "
                            "rank by rank to find the GPU.")  # fmt: skip
                c.summary = _with(c.summary, line)
    if not failed:
        causes.sort(key=lambda c: -c.score)
        return causes[:top], notes
    lead = max((c.score for c in causes), default=1.0)
    new: list[Cause] = []
    for rank, (eid, weight) in enumerate(sorted(failed.items(), key=lambda x: (-x[1], x[0]))):
        dcgm = latest.get(eid) if latest.get(eid) is not None and dict(latest[eid].attributes).get("result") == "fail" else None
        rep = replays.get(eid) if replays.get(eid) is not None and dict(replays[eid].attributes).get("result") == "mismatch" else None
        ev0 = rep or dcgm
        assert ev0 is not None
        labels = labels_of(eid) or dict(ev0.entity)
        evidence: list[EventEvidence] = []
        parts: list[str] = []
        fault, action = "silent_data_corruption", REPLAY_ACTION
        if rep is not None:
            ra = dict(rep.attributes)
            evidence.append(EventEvidence(rep.ts_ms, rep.kind, dict(rep.entity), ra, rep.severity, "events", _replay_recheck(labels)))
            parts.append(
                f"Replay mismatch: on the same inputs ({str(ra.get('input', ''))[:80]}) its checksum "
                f"{str(ra.get('checksum', ''))[:16]} differs from {ra.get('against', 'the majority')} "
                f"{str(ra.get('expected', ''))[:16]} of {ra.get('agreeing', '?')} GPU(s)."
            )  # fmt: skip
        if dcgm is not None:
            attrs = dict(dcgm.attributes)
            tests = attrs.get("tests") or {}
            first = next((n for n in attrs.get("failed") or [] if n in tests), None)
            err = ""
            if first is not None and tests[first].get("errors"):
                err = f": {str(tests[first]['errors'][0])[:200]}"
            evidence.append(EventEvidence(dcgm.ts_ms, dcgm.kind, dict(dcgm.entity), attrs, dcgm.severity, "events", _recheck(labels)))
            parts.append(f"Failed DCGM diagnostic (dcgmi diag -r {attrs.get('level', '?')}): {', '.join(attrs.get('failed') or [])}{err}.")
            if rep is None:
                fault = _fault_for(set(attrs.get("failed_kinds") or []), symptom)
                action = ACTIONS[fault]
        old = by_id.pop(eid, None)
        score = lead * 2.0 + weight - 0.01 * rank
        summary = " ".join(parts)
        if old is not None:
            old.fault, old.score, old.action = fault, score, action
            old.events[:0] = evidence
            old.summary = _with(summary, old.summary) if old.summary else summary
            new.append(old)
        else:
            new.append(Cause(eid, "gpu", labels, fault, score, ev0.ts_ms, neighbourhood.get(eid, 1), 1,
                             events=evidence, action=action, summary=summary))  # fmt: skip
    n_rep = sum(1 for e in failed if e in replays and dict(replays[e].attributes).get("result") == "mismatch")
    what = " or ".join(w for w, n in (("differed in a replay", n_rep), ("failed a DCGM diagnostic", len(failed) - n_rep)) if n)
    notes.append(f"{len(failed)} GPU(s) of the symptom's neighbourhood {what}; they lead the answer")
    rest = [c for c in causes if c.entity_id in by_id]
    out = sorted(new, key=lambda c: -c.score) + sorted(rest, key=lambda c: -c.score)
    return out[:top], notes
