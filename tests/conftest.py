from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sightglass.store.duckdb import DuckDBStore, StoreOptions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIGHTGLASS_SHARED", REPO.parent / "shared"))
EXPOSITION = SHARED / "data" / "exposition"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "data", options=StoreOptions(compact_every_s=3600))
    try:
        yield s
    finally:
        s.close()
