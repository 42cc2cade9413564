from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rca_helpers import Scenario, simulate_fault

# one fault per layer: GPU hardware, shared storage, the inference service
LAYERS = ("gpu_thermal", "storage_slowdown", "bad_deploy")


class _Scenarios:
    """Each simulated factory is built once per test session and shared."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Scenario] = {}

    def get(self, fault: str) -> Scenario:
        if fault not in self.made:
            self.made[fault] = simulate_fault(self.root / fault / "data", fault)
        return self.made[fault]

    def close(self) -> None:
        for sc in self.made.values():
            sc.store.close()


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Scenarios]:
    s = _Scenarios(tmp_path_factory.mktemp("rca"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=LAYERS)
def scenario(request: pytest.FixtureRequest, scenarios: _Scenarios) -> Scenario:
    return scenarios.get(request.param)


@pytest.fixture
def thermal(scenarios: _Scenarios) -> Scenario:
    return scenarios.get("gpu_thermal")
