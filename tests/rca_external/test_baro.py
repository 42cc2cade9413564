"""BARO from the RCAEval package, through our adapter (skipped when RCAEval is not installed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sightglass.rca.external import baro_available, baro_rank

from .conftest import SERVICES, write_rep

pytestmark = pytest.mark.skipif(not baro_available(), reason="RCAEval not installed: pip install 'sightglass[eval]'")


def test_baro_ranks_the_stepped_service_first(tmp_path: Path) -> None:
    inject = write_rep(tmp_path / "cartservice_cpu" / "1", "cartservice", 21)
    df = pd.read_csv(tmp_path / "cartservice_cpu" / "1" / "data.csv")
    ranks = baro_rank(df, inject)
    assert ranks[0] == "cartservice"
    assert sorted(ranks) == sorted(SERVICES)
    assert "time" not in ranks


def test_baro_fills_gaps_and_checks_input(tmp_path: Path) -> None:
    inject = write_rep(tmp_path / "paymentservice_cpu" / "1", "paymentservice", 22)
    df = pd.read_csv(tmp_path / "paymentservice_cpu" / "1" / "data.csv")
    df.loc[::7, "paymentservice_cpu"] = float("nan")
    df["frontend_note"] = "x"
    assert baro_rank(df, inject)[0] == "paymentservice"
    with pytest.raises(ValueError, match="'time' column"):
        baro_rank(df.drop(columns=["time"]), inject)
    with pytest.raises(ValueError, match="both before and after"):
        baro_rank(df, float(df["time"].max()) + 100)
