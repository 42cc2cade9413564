"""Twins of the pages that show other features' answers: cost and ROI, incidents (with RCA), drift.

Each twin gathers what the feature's own API says (through :mod:`sightglass.web.features`), so a
server without that feature answers ``{"available": false}`` per part and the page says "not
available on this server" instead of failing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from sightglass.web import features
from sightglass.web.query import Window

# page -> parts: name -> (path, extra params); "time"/"start"/"end" are added from the window
PARTS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "cost": {
        "report": ("/api/v1/cost/report", {"by": "team"}),
        "tokens": ("/api/v1/cost/tokens", {}),
        "training": ("/api/v1/cost/training", {}),
        "idle": ("/api/v1/cost/idle", {"top": "10"}),
    },
    "incidents": {
        "incidents": ("/api/v1/incidents", {}),
        "alerts": ("/api/v1/alerts", {}),
        "anomalies": ("/api/v1/anomalies", {"limit": "200"}),
        "slos": ("/api/v1/slos", {}),
    },
    "drift": {
        "drift": ("/api/v1/drift", {"limit": "500"}),
        "predictability": ("/api/v1/predictability", {}),
    },
}
# parts that answer "now" only (a start/end would ask them for history instead)
NO_WINDOW = {"/api/v1/slos"}
# what a page may pass through to its parts (validated by the feature itself)
PASS_THROUGH = {"cost": {"report": ("by", "mode")}}


async def gather(request: Request, page: str, w: Window) -> dict[str, Any]:
    times = {"time": str(w.at_ms / 1000), "start": str(w.start_ms / 1000), "end": str(w.at_ms / 1000)}
    names = list(PARTS[page])

    async def one(name: str) -> dict[str, Any]:
        path, params = PARTS[page][name]
        extra = {
            k: request.query_params[k]
            for k in PASS_THROUGH.get(page, {}).get(name, ())
            if request.query_params.get(k)
        }
        window = {} if path in NO_WINDOW else times
        return {"path": path, **await features.get(request, path, {**window, **params, **extra})}

    results = await asyncio.gather(*(one(n) for n in names))
    out: dict[str, Any] = {"window": w.to_dict(), **dict(zip(names, results, strict=True))}
    out["available"] = any(r["available"] for r in results)
    return out


async def rca(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Run the RCA feature on a symptom (POST /api/v1/rca) and hand back its answer as is."""
    return await features.get(request, "/api/v1/rca", method="POST", body=body)
