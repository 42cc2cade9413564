"""Twins of the pages that show other features' answers: cost and ROI, incidents (with RCA), drift.

Each twin gathers what the feature's own API says (through :mod:`sightglass.web.features`), so a
server without that feature answers ``{"available": false}`` per part and the page says "not
available on this server" instead of failing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from sightglass.web import features
from sightglass.web.query import Window

# page -> parts: name -> (path, extra params); "time"/"start"/"end" are added from the window
PARTS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "cost": {
        "summary": ("/api/v1/cost/summary", {}),
        "by_team": ("/api/v1/cost/teams", {}),
        "by_model": ("/api/v1/cost/models", {}),
        "idle": ("/api/v1/cost/idle", {}),
    },
    "incidents": {
        "incidents": ("/api/v1/incidents", {}),
        "alerts": ("/api/v1/alerts", {}),
        "anomalies": ("/api/v1/anomalies", {}),
    },
    "drift": {
        "drift": ("/api/v1/drift", {}),
        "predictability": ("/api/v1/predictability", {}),
    },
}


async def gather(request: Request, page: str, w: Window) -> dict[str, Any]:
    times = {"time": str(w.at_ms / 1000), "start": str(w.start_ms / 1000), "end": str(w.at_ms / 1000)}
    out: dict[str, Any] = {"window": w.to_dict()}
    for name, (path, params) in PARTS[page].items():
        out[name] = {"path": path, **await features.get(request, path, {**times, **params})}
    out["available"] = any(v["available"] for k, v in out.items() if k != "window")
    return out


async def rca(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Run the RCA feature on a symptom (POST /api/v1/rca) and hand back its answer as is."""
    return await features.get(request, "/api/v1/rca", method="POST", body=body)
