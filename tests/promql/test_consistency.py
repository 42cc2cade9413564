"""Self-consistency without a peer: a range query's value at each step equals the instant query there.

The evaluator computes all steps of a range query at once; instant queries take the one-step path.
Agreement between the two on the compliance dataset catches vectorisation mistakes even where CI
has no Prometheus to compare with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sightglass.promql import compliance
from sightglass.promql.engine import Engine
from sightglass.promql.result import QueryError
from sightglass.store.duckdb import DuckDBStore, StoreOptions

START, END, STEP = compliance._m(2) + 500, compliance._m(126), 1_170_000  # 7 steps, off the minute grid


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    path: Path = tmp_path_factory.mktemp("consistency")
    store = DuckDBStore(path, options=StoreOptions(compact_every_s=3600))
    store.append(compliance.to_batch(compliance.dataset()))
    return Engine(store)


def _points(engine: Engine, q: str) -> dict[tuple[tuple[str, str], ...], dict[int, float]] | None:
    try:
        res = engine.range(q, START, END, STEP)
    except QueryError:
        return None
    return {
        tuple(sorted(s.labels.items())): dict(zip(s.ts_ms.tolist(), s.values.tolist(), strict=True))
        for s in res.matrix
    }


@pytest.mark.parametrize("query", [q for q in compliance.queries() if "@" not in q and "start()" not in q])
def test_range_matches_instant(engine: Engine, query: str) -> None:
    by_series = _points(engine, query)
    for t in range(START, END + 1, STEP):
        try:
            inst = engine.instant(query, t)
        except QueryError:
            assert by_series is None or not any(t in p for p in by_series.values())
            continue
        assert by_series is not None
        if inst.result_type == "scalar":
            assert inst.scalar is not None
            got: dict[tuple[tuple[str, str], ...], float] = {(): inst.scalar[1]}
        else:
            got = {tuple(sorted(s.labels.items())): s.value for s in inst.vector}
        want = {k: p[t] for k, p in by_series.items() if t in p}
        assert set(got) == set(want), (t, query)
        for k, v in got.items():
            assert compliance._close(v, want[k]), (t, query, k, v, want[k])
