"""``QueryResult.to_json()`` writes exactly the bytes ``json.dumps(to_api())`` would (compact, as the
HTTP API sends them), for every result type and for values and labels that need care."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sightglass.api.envelope import success, success_json
from sightglass.model import SampleBatchBuilder, SeriesKey
from sightglass.promql import result as result_mod
from sightglass.promql.engine import Engine
from sightglass.promql.result import InstantSample, QueryResult, RangeSeries, format_value, format_values
from sightglass.store.duckdb import DuckDBStore

T0 = 1_700_000_000_000

ODD = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.1, 1e-4, 1e-5, -2.5e-7, 123.456, 1e15, 1e16, 1.5e16, 9.999999999999998e15,
     2.0**60, 1e300, 5e-324, math.nan, math.inf, -math.inf, 1 / 3, 97.0, 61.2]
)  # fmt: skip


@pytest.fixture(params=["repr", "orjson"], autouse=True)
def float_writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the plain ``repr`` writer and, where installed, with orjson's."""
    if request.param == "repr":
        monkeypatch.setattr(result_mod, "_orjson", None)
    else:
        monkeypatch.setattr(result_mod, "_orjson", pytest.importorskip("orjson"))
    return str(request.param)


def _old(res: QueryResult) -> str:
    return json.dumps(res.to_api(), ensure_ascii=False, separators=(",", ":"))


def _matrix(series: list[tuple[dict[str, str], list[int], list[float]]]) -> QueryResult:
    return QueryResult(
        "matrix",
        matrix=[
            RangeSeries(lab, np.array(t, dtype=np.int64), np.array(v, dtype=float)) for lab, t, v in series
        ],
    )


@pytest.mark.parametrize(
    "res",
    [
        _matrix([]),
        _matrix([({}, [], [])]),
        _matrix([({"a": "1"}, [T0], [1.0])]),
        _matrix(
            [
                (
                    {"__name__": "x", "job": 'q"uo\\te\n', "ü": "日本"},
                    [T0 + 1000 * k for k in range(len(ODD))],
                    list(ODD),
                )
            ]
        ),
        # sub-second timestamps (an unaligned step), series on different grids, one point each
        _matrix(
            [({"i": "a"}, [T0 + 1, T0 + 1000, T0 + 2500], [1.0, 2.0, 3.5]), ({"i": "b"}, [T0 + 1000], [7.0])]
        ),
        _matrix(
            [
                (
                    {"i": str(k)},
                    [T0 + 60_000 * j for j in range(k, 50, k + 1)],
                    [k / 7.0] * len(range(k, 50, k + 1)),
                )
                for k in range(6)
            ]
        ),
        QueryResult(
            "vector", vector=[InstantSample({"a": "b"}, T0 + 5, math.nan), InstantSample({}, T0, 2.0)]
        ),
        QueryResult("vector"),
        QueryResult("scalar", scalar=(T0, -0.0)),
        QueryResult("string", string=(T0 + 1, 'a "string"')),
    ],
)
def test_to_json_is_json_dumps_of_to_api(res: QueryResult) -> None:
    assert res.to_json() == _old(res)
    assert json.loads(res.to_json()) == json.loads(_old(res))


def test_random_values_and_grids() -> None:
    rng = np.random.default_rng(7)
    series = []
    for k in range(40):
        n = int(rng.integers(0, 300))
        ts = np.sort(rng.choice(np.arange(T0, T0 + 10**7, 250), n, replace=False))
        kind = k % 4
        v = [rng.normal(0, 10 ** float(rng.integers(-8, 20))) for _ in range(n)]
        if kind == 1:
            v = list(np.round(np.array(v), 1))
        elif kind == 2:
            v = list(rng.integers(-5, 5, n).astype(float))
        series.append(({"i": str(k)}, ts.tolist(), v))
    res = _matrix(series)
    assert res.to_json() == _old(res)


def test_success_json_is_the_same_response(tmp_path: object) -> None:
    res = _matrix([({"i": "a"}, [T0, T0 + 1000], [1.0, 0.5])])
    for warnings in (None, [], ["a warning", "ü"]):
        old, new = success(res.to_api(), warnings), success_json(res.to_json(), warnings)
        assert new.body == old.body
        assert new.status_code == old.status_code
        assert new.headers["content-type"] == old.headers["content-type"]


def test_engine_results_encode_the_same(store: DuckDBStore) -> None:
    b = SampleBatchBuilder()
    for i in range(5):
        for j in range(200):
            if (i + j) % 7:  # gaps, so series have different point sets
                b.add(
                    SeriesKey.of("c_total", {"i": str(i)}), T0 + j * 15_000 + i, float(j * (i + 1) % 97) / 3
                )
    store.append(b.build())
    eng = Engine(store)
    for q in ("c_total", "rate(c_total[1m])", "sum(c_total)", "c_total > 10", "vector(1)", "time()"):
        for step in (15_000, 37_000):
            res = eng.range(q, T0, T0 + 200 * 15_000, step)
            assert res.to_json() == _old(res), q
        res = eng.instant(q, T0 + 100 * 15_000)
        assert res.to_json() == _old(res), q
    res = eng.instant("c_total[2m]", T0 + 100 * 15_000)
    assert res.result_type == "matrix" and res.to_json() == _old(res)


def _doubles(n: int, seed: int) -> np.ndarray:
    """Random bit patterns (every exponent), short decimals, integers and each decade's values."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64).view(np.float64)
    dec = np.round(rng.uniform(-1e6, 1e6, n // 4) * 10.0 ** (k := rng.integers(0, 8, n // 4))) / 10.0**k
    ints = rng.integers(-(10**15), 10**15, n // 8).astype(float)
    decades = rng.uniform(1, 10, n // 4) * 10.0 ** rng.integers(-6, 18, n // 4)
    edges = np.nextafter(np.repeat([1e-4, 1e16, 1.0, 0.1, 2.0**53], 2), np.tile([0.0, np.inf], 5))
    return np.concatenate([bits, dec, ints, decades, ODD, -ODD, edges])


def test_format_values_matches_format_value(float_writer: str) -> None:
    v = _doubles(200_000, 11)
    assert format_values(v) == [format_value(x) for x in v.tolist()]


def test_orjson_writes_repr_digits_in_the_plain_range() -> None:
    # the claim _shortest rests on: within [1e-4, 1e16) orjson's text is repr's, for millions of doubles
    orjson = pytest.importorskip("orjson")
    for seed in range(4):
        v = _doubles(1_000_000, seed)
        v = v[np.isfinite(v) & (np.abs(v) >= 1e-4) & (np.abs(v) < 1e16)]
        text = orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")
        assert text == list(map(repr, v.tolist()))
