"""Drive the query API the way Grafana's Prometheus data source does, through the real app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from sightglass.config import Config
from sightglass.model import SampleBatch, SeriesKey
from sightglass.server import build_app
from sightglass.store.duckdb import DuckDBStore

T0 = 1_700_006_400_000
STEP = 10_000
N = 360  # one hour at 10 s


def _load(store: DuckDBStore) -> None:
    keys: list[SeriesKey] = []
    idx: list[np.ndarray] = []
    ts: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    grid = T0 + np.arange(N, dtype=np.int64) * STEP
    rng = np.random.default_rng(1)
    for host in ("n1", "n2"):
        for gpu in ("0", "1"):
            for name, v in (
                ("DCGM_FI_DEV_GPU_UTIL", rng.uniform(0, 100, N).round(1)),
                ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", np.cumsum(rng.uniform(2000, 4000, N))),
            ):
                idx.append(np.full(N, len(keys)))
                keys.append(SeriesKey.of(name, {"Hostname": host, "gpu": gpu}))
                ts.append(grid)
                vals.append(v)
    store.append(SampleBatch(keys, np.concatenate(idx), np.concatenate(ts), np.concatenate(vals)))


def _flow(tmp_path: Path) -> dict[str, Any]:
    store = DuckDBStore(tmp_path / "data")
    try:
        _load(store)
        app, _ = build_app(Config(data=str(tmp_path / "data")), store)

        async def go() -> dict[str, Any]:
            out: dict[str, Any] = {}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sightglass") as c:
                start, end = T0 / 1000, (T0 + (N - 1) * STEP) / 1000
                rng = {"start": str(int(start)), "end": str(int(end))}
                out["buildinfo"] = (await c.get("/api/v1/status/buildinfo")).json()
                out["labels"] = (await c.post("/api/v1/labels", data=rng)).json()
                out["names"] = (await c.get("/api/v1/label/__name__/values", params=rng)).json()
                out["hosts"] = (
                    await c.get(
                        "/api/v1/label/Hostname/values", params={**rng, "match[]": "DCGM_FI_DEV_GPU_UTIL"}
                    )
                ).json()
                out["series"] = (
                    await c.post(
                        "/api/v1/series", data={**rng, "match[]": 'DCGM_FI_DEV_GPU_UTIL{Hostname="n1"}'}
                    )
                ).json()
                # a dashboard panel: Grafana aligns start/end to the step and POSTs a form
                step = 60
                a, b = (int(start) // step) * step, (int(end) // step) * step
                out["panel"] = (
                    await c.post(
                        "/api/v1/query_range",
                        data={
                            "query": "avg by (Hostname) (avg_over_time(DCGM_FI_DEV_GPU_UTIL[1m]))",
                            "start": str(a),
                            "end": str(b),
                            "step": str(step),
                        },
                    )
                ).json()
                out["energy"] = (
                    await c.post(
                        "/api/v1/query_range",
                        data={
                            "query": "sum by (Hostname) (rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1m]))",
                            "start": str(a),
                            "end": str(b),
                            "step": "1m",
                        },
                    )
                ).json()
                out["instant"] = (
                    await c.post(
                        "/api/v1/query",
                        data={"query": "topk(2, DCGM_FI_DEV_GPU_UTIL)", "time": str(int(end))},
                    )
                ).json()
                bad = await c.post("/api/v1/query", data={"query": "sum(", "time": str(int(end))})
                out["bad"] = (bad.status_code, bad.json())
                m2m = await c.post(
                    "/api/v1/query",
                    data={
                        "query": "DCGM_FI_DEV_GPU_UTIL + on(Hostname) DCGM_FI_DEV_GPU_UTIL",
                        "time": str(int(end)),
                    },
                )
                out["m2m"] = (m2m.status_code, m2m.json())
                many = await c.get(
                    "/api/v1/query_range", params={"query": "1", "start": "0", "end": "100000", "step": "1"}
                )
                out["too_many"] = (many.status_code, many.json())
                mat = await c.get("/api/v1/query_range", params={"query": "up[5m]", **rng, "step": "60"})
                out["matrix_range"] = (mat.status_code, mat.json())
            return out

        return asyncio.run(go())
    finally:
        store.close()


def test_grafana_flow(tmp_path: Path) -> None:
    r = _flow(tmp_path)
    assert r["buildinfo"]["status"] == "success" and r["buildinfo"]["data"]["version"]
    assert {"__name__", "Hostname", "gpu"} <= set(r["labels"]["data"])
    assert r["names"]["data"] == ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
    assert r["hosts"]["data"] == ["n1", "n2"]
    assert len(r["series"]["data"]) == 2
    panel = r["panel"]["data"]
    assert panel["resultType"] == "matrix"
    assert [s["metric"] for s in panel["result"]] == [{"Hostname": "n1"}, {"Hostname": "n2"}]
    for s in panel["result"]:
        assert len(s["values"]) >= 59
        ts = [p[0] for p in s["values"]]
        assert all(isinstance(t, int) and t % 60 == 0 for t in ts)
        assert all(0 <= float(p[1]) <= 100 for p in s["values"])
    energy = r["energy"]["data"]["result"]
    assert len(energy) == 2 and all(500 < float(p[1]) < 1000 for s in energy for p in s["values"])
    inst = r["instant"]["data"]
    assert inst["resultType"] == "vector" and len(inst["result"]) == 2
    code, body = r["bad"]
    assert code == 400 and body["status"] == "error" and body["errorType"] == "bad_data"
    code, body = r["m2m"]
    assert code == 422 and body["errorType"] == "execution" and "many-to-many" in body["error"]
    code, body = r["too_many"]
    assert code == 400 and "11,000 points" in body["error"]
    code, body = r["matrix_range"]
    assert code == 400 and "range vector" in body["error"]
