"""Small generated datasets in the RCAEval layout (no copied data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SERVICES = ("frontend", "cartservice", "paymentservice", "emailservice")
T0 = 1_700_000_000


def write_rep(
    rep: Path, culprit: str, seed: int, *, n: int = 240, inject_at: int = 160, file: str = "data.csv"
) -> float:
    """A rep folder with one metric step in ``culprit`` at ``inject_at`` seconds."""
    rng = np.random.default_rng(seed)
    rep.mkdir(parents=True, exist_ok=True)
    t = T0 + np.arange(n)
    cols: dict[str, np.ndarray] = {"time": t}
    for svc in SERVICES:
        cpu = 0.2 + 0.02 * rng.standard_normal(n)
        lat = 0.05 + 0.005 * rng.standard_normal(n)
        mem = 100.0 + rng.standard_normal(n)
        if svc == culprit:
            cpu[inject_at:] += 0.6
            lat[inject_at:] += 0.05
        cols[f"{svc}_cpu"] = cpu
        cols[f"{svc}_latency-90"] = lat
        cols[f"{svc}_mem"] = mem
    pd.DataFrame(cols).to_csv(rep / file, index=False)
    inject = float(T0 + inject_at)
    (rep / "inject_time.txt").write_text(f"{int(inject)}\n")
    return inject


@pytest.fixture
def rcaeval_root(tmp_path: Path) -> Path:
    root = tmp_path / "RE1-OB"
    write_rep(root / "cartservice_cpu" / "1", "cartservice", 1)
    write_rep(root / "cartservice_cpu" / "2", "cartservice", 2, file="simple_metrics.csv")
    write_rep(root / "paymentservice_mem" / "1", "paymentservice", 3, file="metrics.csv")
    return root
