"""The store's write of an ingest batch: known series resolved in one pass, new ones created once."""

from __future__ import annotations

import numpy as np

from sightglass.model import Matcher, SampleBatch, SeriesKey
from sightglass.store.duckdb import DuckDBStore


def _batch(keys: list[SeriesKey], ts: int) -> SampleBatch:
    n = len(keys)
    return SampleBatch(
        series=keys,
        series_index=np.arange(n, dtype=np.int64),
        ts_ms=np.full(n, ts, dtype=np.int64),
        values=np.arange(n, dtype=np.float64),
    )


def _samples(store: DuckDBStore) -> dict[SeriesKey, int]:
    out: dict[SeriesKey, int] = {}
    for s in store.select([Matcher("__name__", "=", "m")], 0, 2**62):
        out[s.key] = out.get(s.key, 0) + len(s)
    return out


def test_known_new_and_repeated_series_in_one_batch(store: DuckDBStore) -> None:
    keys = [SeriesKey("m", (("i", str(i)),)) for i in range(50)]
    assert store.append(_batch(keys[:30], 1_000)).new_series == 30
    ids_before = {k: store.index.ids[k] for k in keys[:30]}
    assert store.append(_batch(keys[:30], 2_000)).new_series == 0  # all known: the one-pass path
    # known, new, and a new key listed twice in the batch: one id for it
    mixed = [*keys[20:40], keys[45], keys[45]]
    batch = _batch(mixed, 3_000)
    batch.ts_ms[-1] = 3_001
    assert store.append(batch).new_series == 11
    assert {k: store.index.ids[k] for k in keys[:30]} == ids_before
    got = _samples(store)
    assert len(got) == 41
    assert got[keys[0]] == 2 and got[keys[25]] == 3 and got[keys[35]] == 1 and got[keys[45]] == 2
