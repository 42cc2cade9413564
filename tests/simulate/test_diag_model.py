"""The simulator's model of what DCGM diagnostics report, and its output through the real parser."""

from __future__ import annotations

import numpy as np
import pytest

from sightglass.agent.dcgm_diag import parse_diag_json
from sightglass.simulate.engine import Simulator, simulate_diagnostic
from sightglass.simulate.faults import (
    DIAG_FALSE_POSITIVE_P,
    DIAG_LEVEL_SECONDS,
    SDC_DETECT_P,
    ScriptedFault,
    diagnostic_outcome,
)


def _fail_rate(faults: set[str], level: int, n: int = 3000) -> float:
    hits = 0
    for k in range(n):
        out = diagnostic_outcome(faults, level, 0, np.random.default_rng([1, k]))
        hits += any(s == "fail" for s, _ in out.values())
    return hits / n


def test_rates_follow_the_documented_assumptions() -> None:
    assert abs(_fail_rate({"silent_data_corruption"}, 3) - SDC_DETECT_P[3]) < 0.04
    assert _fail_rate({"silent_data_corruption"}, 2) < 0.02  # level 2 has no compute stress test
    assert _fail_rate(set(), 3) < DIAG_FALSE_POSITIVE_P * 3
    out = diagnostic_outcome({"hbm_ecc"}, 2, 5, np.random.default_rng(3))
    assert out["memory"][0] == "fail" or _fail_rate({"hbm_ecc"}, 2) > 0.8
    assert SDC_DETECT_P[3] < 1.0 and DIAG_LEVEL_SECONDS[3] == 900


def _sdc_sim(start: int) -> tuple[Simulator, str, int]:
    """A 2-node factory three steps into a silent data corruption: the simulator, the faulty GPU's host and index."""
    sim = Simulator(2, 5, start, scripted=[ScriptedFault("silent_data_corruption", 0, 600_000, {})], fault_every_s=None)
    for _ in range(3):
        sim.step()
    f = next(x for x in sim.faults if x.state.get("started"))
    return sim, f.root["Hostname"], int(f.root["gpu"])


def test_simulated_output_parses_and_takes_time() -> None:
    start = 1_794_787_200_000
    sim, host, gpu = _sdc_sim(start)
    seen = set()
    for k in range(12):  # different start times, different draws: the faulty GPU fails in some
        text, dur = simulate_diagnostic(sim, host, list(range(8)), 3, start + 60_000 * k)
        rep = parse_diag_json(text)
        assert sorted(rep.gpus) == list(range(8)) and dur == 900_000
        seen.add(rep.status_of(gpu))
    assert seen == {"pass", "fail"}
    with pytest.raises(ValueError, match="no node"):
        simulate_diagnostic(sim, "node-99", [0], 3, start)


def test_simulated_replay_matches_on_healthy_gpus_and_differs_on_the_sdc_one_at_the_stated_rate() -> None:
    from sightglass.agent.replay import parse_replay_json
    from sightglass.simulate.engine import simulate_replay
    from sightglass.simulate.faults import REPLAY_DETECT_P, REPLAY_SECONDS

    start = 1_794_787_200_000
    sim, host, gpu = _sdc_sim(start)
    other = next(n.hostname for n in sim.factory.nodes if n.hostname != host)
    n, hits = 400, 0
    for k in range(n):
        text, dur = simulate_replay(sim, host, list(range(8)), 42, start + 1000 * k)
        rep = parse_replay_json(text, list(range(8)))
        healthy = {rep.gpus[g].checksum for g in range(8) if g != gpu}
        assert len(healthy) == 1 and dur == REPLAY_SECONDS * 1000
        hits += rep.gpus[gpu].checksum not in healthy
        if k < 20:  # another node's GPUs give the same known answer
            o = parse_replay_json(simulate_replay(sim, other, [0, 1], 42, start + 1000 * k)[0])
            assert {g.checksum for g in o.gpus.values()} == healthy
    assert abs(hits / n - REPLAY_DETECT_P) < 0.07
    assert REPLAY_DETECT_P < 1.0
