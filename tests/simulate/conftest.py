"""Fixtures for the simulator tests."""

from __future__ import annotations

import pytest
from sim_helpers import Run, run_sim


@pytest.fixture(scope="session")
def healthy_run() -> Run:
    return run_sim(nodes=8, minutes=30, seed=3)
