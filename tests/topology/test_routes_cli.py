"""The topology over HTTP and on the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
from click.testing import CliRunner
from starlette.applications import Starlette
from topo_helpers import simulate_store

from sightglass.store.duckdb import DuckDBStore
from sightglass.topology.commands import topology
from sightglass.topology.routes import make_routes


def test_routes(factory16: tuple[DuckDBStore, Any]) -> None:
    store, sim = factory16
    app = Starlette(routes=make_routes(SimpleNamespace(store=store, extras={})))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await _routes(c, sim)

    asyncio.run(go())


async def _get(client: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    r = await client.get(url)
    assert r.status_code == status, r.text
    return r.json()


async def _routes(client: httpx.AsyncClient, sim: Any) -> None:
    body = await _get(client, "/api/v1/topology/entities?kind=node")
    assert body["status"] == "success" and len(body["data"]) == 16
    svc = sim.services[0]
    mid = quote(f"model:{svc.model_name}", safe="")
    ent = (await _get(client, f"/api/v1/topology/entity/{mid}"))["data"]
    assert ent["kind"] == "model" and ent["owner"] == f"team:{svc.team}"
    nb = (await _get(client, f"/api/v1/topology/entity/{mid}/neighbours"))["data"]
    assert any(r["kind"] == "model-served-by-service" and r["dst"] == f"service:{svc.name}" for r in nb)
    deps = (await _get(client, f"/api/v1/topology/entity/{mid}/depends_on"))["data"]
    host = sim.factory.nodes[svc.nodes[0]].hostname
    assert {"id": f"node:{host}", "kind": "node", "distance": 2} in deps
    up = (await _get(client, f"/api/v1/topology/entity/node:{host}/dependents"))["data"]
    assert any(d["id"] == f"model:{svc.model_name}" for d in up)
    path = (await _get(client, f"/api/v1/topology/path?from={mid}&to=node:{host}"))["data"]
    assert path[0]["from"] == f"model:{svc.model_name}" and path[-1]["to"] == f"node:{host}"
    err = await _get(client, "/api/v1/topology/entity/node:nope", 404)
    assert err["status"] == "error" and err["errorType"] == "not_found"
    await _get(client, "/api/v1/topology/path?from=node:nope", 400)


def test_cli(tmp_path: Path) -> None:
    store, sim = simulate_store(tmp_path / "data", 4, 5)
    host = sim.factory.nodes[0].hostname
    store.close()
    inv = tmp_path / "factory.json"
    import json

    inv.write_text(json.dumps(sim.factory.describe()))
    run = CliRunner().invoke
    data = str(tmp_path / "data")
    r = run(topology, ["import", "--data", data, str(inv)])
    assert r.exit_code == 0, r.output
    r = run(topology, ["entities", "--data", data, "--kind", "rack"])
    assert r.exit_code == 0 and r.stdout.strip() == "rack\track:rack-01", r.output
    r = run(topology, ["deps", "--data", data, f"gpu:{sim.factory.gpu_uuid[0]}"])
    assert r.exit_code == 0 and f"1\tnode:{host}" in r.stdout and "2\track:rack-01" in r.stdout
    r = run(topology, ["show", "--data", data, f"node:{host}"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "node"
    r = run(topology, ["path", "--data", data, f"gpu:{sim.factory.gpu_uuid[0]}", "rack:rack-01"])
    assert r.exit_code == 0 and "--node-in-rack-->" in r.stdout
    r = run(topology, ["show", "--data", data, "node:nope"])
    assert r.exit_code != 0 and "no entity" in r.output
