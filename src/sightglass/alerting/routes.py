"""HTTP API of alerting: Prometheus' ``/api/v1/rules`` and ``/api/v1/alerts`` (Grafana reads them),
incidents with their lifecycle, silences (Alertmanager's shape), SLO status and notification status.

```
GET  /api/v1/rules?type=alert|record&rule_name[]=&rule_group[]=&file[]=&exclude_alerts=true
GET  /api/v1/alerts
GET  /api/v1/incidents?state=open|acknowledged|resolved&limit=
GET  /api/v1/incidents/{id}
POST /api/v1/incidents/{id}/ack        {"by": "alice", "note": "looking"}  (body optional)
POST /api/v1/incidents/{id}/resolve    {"by": "alice", "note": "replaced the cable"}
GET  /api/v1/silences      POST /api/v1/silences      GET|DELETE /api/v1/silences/{id}
GET  /api/v1/slos[?start=&end=&step=]   (now, or the remaining budget over time)
GET  /api/v1/alerting/status
POST /api/v1/alerting/evaluate?time=   (evaluate now, or at a time; for back-filled stores and tests)
GET  /api/v1/diagnostics?incident=&node=     GET /api/v1/diagnostics/{id}   (GPU diagnostic tasks)
GET  /api/v1/agent/tasks?node=HOST           (the agent pulls its node's tasks)
POST /api/v1/agent/tasks/{id}/result         (the agent's dcgmi output; see alerting/diagnostics.py)
```
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sightglass.alerting.evaluator import RuleState, rfc3339
from sightglass.alerting.incidents import STATES, IncidentError
from sightglass.alerting.rules import RuleGroup
from sightglass.alerting.service import AlertingService, get_service
from sightglass.alerting.silences import SilenceError
from sightglass.api.envelope import error, success

MAX_BODY_BYTES = 64 * 1024


async def _json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _Bad(f"request body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit", "too_large")
    if not body.strip():
        if optional:
            return {}
        raise _Bad("a JSON object body is required")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Bad(f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _Bad("body must be a JSON object")
    return doc


class _Bad(Exception):
    def __init__(self, message: str, kind: str = "bad_data") -> None:
        super().__init__(message)
        self.kind = kind


def _rule_api(rs: RuleState, group: RuleGroup, *, exclude_alerts: bool) -> dict[str, Any]:
    r = rs.rule
    d: dict[str, Any] = {
        "name": r.name,
        "query": r.expr,
        "labels": dict(r.labels),
        "health": rs.health,
        "lastError": rs.last_error,
        "evaluationTime": round(rs.eval_seconds, 6),
        "lastEvaluation": rfc3339(rs.last_eval_ms),
        "type": r.kind,
    }
    if r.kind == "alerting":
        alerts = [a for a in rs.active.values() if a.state != "inactive"]
        states = {a.state for a in alerts}
        d.update(
            {
                "state": "firing" if "firing" in states else ("pending" if states else "inactive"),
                "duration": r.for_ms / 1000,
                "keepFiringFor": r.keep_firing_for_ms / 1000,
                "annotations": dict(r.annotations),
            }
        )
        if not exclude_alerts:
            d["alerts"] = [a.to_api() for a in alerts]
    return d


def make_routes(ctx: Any) -> list[BaseRoute]:
    def svc_or_error() -> AlertingService:
        svc = get_service(ctx)
        if svc is None:
            raise _Bad("alerting is switched off ([alerting] enabled = false)", "unavailable")
        return svc

    def handler(fn: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except _Bad as e:
                return error(str(e), e.kind)

        return wrapped

    @handler
    async def rules(request: Request) -> Response:
        svc = svc_or_error()
        q = request.query_params
        typ = q.get("type")
        if typ not in (None, "", "alert", "record"):
            raise _Bad(f'invalid parameter "type": {typ!r} (expected alert or record)')
        names = set(q.getlist("rule_name[]"))
        gnames = set(q.getlist("rule_group[]"))
        files = set(q.getlist("file[]"))
        exclude = q.get("exclude_alerts", "false").lower() == "true"
        out = []
        with svc.lock:
            for gs in svc.evaluator.groups:
                g = gs.group
                if (gnames and g.name not in gnames) or (files and g.file not in files):
                    continue
                rs_list = [
                    _rule_api(rs, g, exclude_alerts=exclude)
                    for rs in gs.rules
                    if (not names or rs.rule.name in names)
                    and (not typ or (typ == "alert") == (rs.rule.kind == "alerting"))
                ]
                if not rs_list and (names or typ):
                    continue
                out.append(
                    {
                        "name": g.name,
                        "file": g.file,
                        "rules": rs_list,
                        "interval": gs.interval_ms / 1000,
                        "limit": g.limit,
                        "evaluationTime": round(gs.eval_seconds, 6),
                        "lastEvaluation": rfc3339(gs.last_eval_ms),
                    }
                )
        return success({"groups": out})

    @handler
    async def alerts(request: Request) -> Response:
        svc = svc_or_error()
        with svc.lock:
            data = [a.to_api() for a in svc.evaluator.alerts()]
        return success({"alerts": data})

    def incidents_or_error(svc: AlertingService) -> Any:
        if svc.incidents is None:
            raise _Bad("incidents are switched off ([alerting] incidents = false)", "unavailable")
        return svc.incidents

    @handler
    async def incidents(request: Request) -> Response:
        svc = svc_or_error()
        mgr = incidents_or_error(svc)
        state = request.query_params.get("state") or None
        if state is not None and state not in STATES:
            raise _Bad(f'invalid parameter "state": {state!r} (expected one of {", ".join(STATES)})')
        try:
            limit = int(request.query_params.get("limit", "500"))
        except ValueError:
            raise _Bad('invalid parameter "limit": not an integer') from None
        if not 1 <= limit <= 10_000:
            raise _Bad('invalid parameter "limit": must be between 1 and 10000')
        with svc.lock:
            rows = [i.to_dict(full=False) for i in mgr.list_incidents(state)][-limit:]
        return success(rows[::-1])

    @handler
    async def incident(request: Request) -> Response:
        svc = svc_or_error()
        mgr = incidents_or_error(svc)
        iid = request.path_params["id"]
        with svc.lock:
            inc = mgr.get(iid)
            if inc is None:
                raise _Bad(f"incident {iid!r} not found", "not_found")
            return success(inc.to_dict())

    @handler
    async def incident_action(request: Request) -> Response:
        svc = svc_or_error()
        mgr = incidents_or_error(svc)
        iid, action = request.path_params["id"], request.path_params["action"]
        if action not in ("ack", "acknowledge", "resolve"):
            raise _Bad(f"unknown action {action!r} (expected ack or resolve)", "not_found")
        body = await _json_body(request, optional=True)
        by, note = body.get("by", ""), body.get("note", "")
        if not isinstance(by, str) or not isinstance(note, str) or len(by) > 256 or len(note) > 4096:
            raise _Bad("by and note must be strings (at most 256 and 4096 characters)")
        with svc.lock:
            at = svc.last_at_ms or svc.clock_ms()
            try:
                inc = (mgr.resolve if action == "resolve" else mgr.acknowledge)(iid, at, by, note)
            except KeyError:
                raise _Bad(f"incident {iid!r} not found", "not_found") from None
            except IncidentError as e:
                return error(str(e), "bad_data", status=409)
            return success(inc.to_dict())

    @handler
    async def silences(request: Request) -> Response:
        svc = svc_or_error()
        at = svc.last_at_ms or svc.clock_ms()
        if request.method == "POST":
            body = await _json_body(request)
            with svc.lock:
                try:
                    s = svc.silences.add(body, at)
                except SilenceError as e:
                    raise _Bad(str(e)) from None
            return success({"silenceID": s.id})
        with svc.lock:
            return success([s.to_dict(at) for s in svc.silences.list_silences()])

    @handler
    async def silence(request: Request) -> Response:
        svc = svc_or_error()
        sid = request.path_params["id"]
        at = svc.last_at_ms or svc.clock_ms()
        with svc.lock:
            s = svc.silences.expire(sid, at) if request.method == "DELETE" else svc.silences.get(sid)
            if s is None:
                raise _Bad(f"silence {sid!r} not found", "not_found")
            return success(s.to_dict(at))

    @handler
    async def slos(request: Request) -> Response:
        """Current error ratios and budget; with ``start``/``end`` (and ``step``), the budget over time."""
        from sightglass.alerting.slo import slo_budget_history
        from sightglass.timeutil import parse_step_ms, parse_time_ms

        svc = svc_or_error()
        at = svc.last_at_ms or svc.clock_ms()
        q = request.query_params
        if q.get("start") or q.get("end"):
            try:
                start = parse_time_ms(q.get("start", ""), now=at)
                end = parse_time_ms(q["end"], now=at) if q.get("end") else at
                step = parse_step_ms(q["step"]) if q.get("step") else max(60_000, (end - start) // 250)
            except (ValueError, KeyError) as e:
                raise _Bad(f"invalid start/end/step: {e}") from None
            if end <= start or (end - start) // step > 11_000:
                raise _Bad("end must be after start, with at most 11,000 steps")
            rows = await asyncio.to_thread(slo_budget_history, svc.engine, svc.slos, start, end, step)
            return success(rows)
        rows = await asyncio.to_thread(svc.slo_status, at)
        return success(rows)

    @handler
    async def status(request: Request) -> Response:
        svc = svc_or_error()
        with svc.lock:
            return success(svc.status())

    @handler
    async def evaluate(request: Request) -> Response:
        svc = svc_or_error()
        t = request.query_params.get("time")
        at: int | None = None
        if t:
            from sightglass.timeutil import parse_time_ms

            try:
                at = parse_time_ms(t)
            except ValueError as e:
                raise _Bad(f'invalid parameter "time": {e}') from None
        out = await asyncio.to_thread(svc.step, at)
        return success(out)

    @handler
    async def diag_tasks(request: Request) -> Response:
        svc = svc_or_error()
        q = request.query_params
        rows = svc.diagnostics.list_tasks(incident=q.get("incident") or None, node=q.get("node") or None)
        return success(rows)

    @handler
    async def diag_task(request: Request) -> Response:
        svc = svc_or_error()
        t = svc.diagnostics.get_task(request.path_params["id"])
        if t is None:
            return error(f"no diagnostic task {request.path_params['id']!r}", "not_found", 404)
        return success(t)

    @handler
    async def agent_tasks(request: Request) -> Response:
        svc = svc_or_error()
        node = request.query_params.get("node", "")
        if not node or len(node) > 253 or any(c.isspace() for c in node):
            raise _Bad('parameter "node" is required: the agent\'s host name (no spaces, at most 253 characters)')
        return success({"tasks": svc.diagnostics.dispatch(node, svc.clock_ms())})

    @handler
    async def agent_result(request: Request) -> Response:
        from sightglass.alerting.diagnostics import MAX_RESULT_BYTES, ResultError
        from sightglass.ingest.limits import IngestError, read_body

        svc = svc_or_error()
        try:
            body = await read_body(request, MAX_RESULT_BYTES + 65536)
        except IngestError as e:
            return error(str(e), "too_large" if e.status == 413 else "bad_data", e.status)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise _Bad(f"body is not valid JSON: {e}") from None
        try:
            out = await asyncio.to_thread(svc.diagnostics.submit_result, request.path_params["id"], doc, svc.clock_ms())
        except ResultError as e:
            kind = {404: "not_found", 409: "conflict", 413: "too_large", 422: "bad_data"}.get(e.status, "bad_data")
            return error(str(e), kind, e.status)
        return success(out)

    return [
        Route("/api/v1/diagnostics", diag_tasks),
        Route("/api/v1/diagnostics/{id}", diag_task),
        Route("/api/v1/agent/tasks", agent_tasks),
        Route("/api/v1/agent/tasks/{id}/result", agent_result, methods=["POST"]),
        Route("/api/v1/rules", rules),
        Route("/api/v1/alerts", alerts),
        Route("/api/v1/incidents", incidents),
        Route("/api/v1/incidents/{id}", incident),
        Route("/api/v1/incidents/{id}/{action}", incident_action, methods=["POST"]),
        Route("/api/v1/silences", silences, methods=["GET", "POST"]),
        Route("/api/v1/silences/{id}", silence, methods=["GET", "DELETE"]),
        Route("/api/v1/slos", slos),
        Route("/api/v1/alerting/status", status),
        Route("/api/v1/alerting/evaluate", evaluate, methods=["POST"]),
    ]
