"""The BARO baseline (Pham et al., FSE'24) exactly as the PyPI package ``RCAEval`` ships it.

We call ``RCAEval.e2e.baro.baro`` and only prepare its input and read its answer: numeric columns
with gaps filled forward then backward (BARO's RobustScaler cannot rank a NaN), and metric ranks
folded into entity ranks, each entity placed at its best-ranked metric (RCAEval's own service-level
evaluation does the same). ``RCAEval`` is an optional dependency (extra ``eval``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from sightglass.rca.external.cases import split_column

INSTALL_HINT = "BARO needs the optional RCAEval package: pip install 'sightglass[eval]'"


class BaroUnavailable(RuntimeError):
    """RCAEval (or one of the packages its import pulls in) is not installed."""


_baro: Callable[..., dict[str, Any]] | None = None


def load_baro() -> Callable[..., dict[str, Any]]:
    global _baro
    if _baro is None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                from RCAEval.e2e.baro import baro
        except ImportError as exc:  # RCAEval itself, or causal-learn/matplotlib that its __init__ imports
            raise BaroUnavailable(f"{INSTALL_HINT} ({exc})") from exc
        _baro = baro
    return _baro


def baro_available() -> bool:
    try:
        load_baro()
    except BaroUnavailable:
        return False
    return True


def baro_rank(df: pd.DataFrame, inject_time: float) -> list[str]:
    """Entities ranked best first by RCAEval's BARO; ``df`` has ``time`` and ``<entity>_<metric>`` columns."""
    if "time" not in df.columns:
        raise ValueError("baro_rank: the frame needs a 'time' column (unix seconds)")
    if not math.isfinite(inject_time):
        raise ValueError(f"baro_rank: inject_time must be a finite number, got {inject_time!r}")
    baro = load_baro()
    data = df.apply(pd.to_numeric, errors="coerce")
    data = data.loc[:, data.notna().any()]
    data = data[data["time"].notna()].sort_values("time").reset_index(drop=True)
    data = data.ffill().bfill()
    before = int((data["time"] < inject_time).sum())
    if before == 0 or before == len(data):
        raise ValueError("baro_rank: need samples both before and after inject_time")
    out = baro(data, inject_time=inject_time)
    ranked: dict[str, None] = {}
    for col in out["ranks"]:
        if col == "time":
            continue
        ranked.setdefault(split_column(str(col))[0], None)
    return list(ranked)
