from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from topo_helpers import simulate_store

from sightglass.store.duckdb import DuckDBStore


@pytest.fixture(scope="package")
def factory16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBStore, Any]]:
    store, sim = simulate_store(tmp_path_factory.mktemp("topo16") / "data", 16, 40)
    try:
        yield store, sim
    finally:
        store.close()
