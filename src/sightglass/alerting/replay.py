"""Offline evaluation: run rules over a stored span (``sightglass rules replay``), with incidents.

Recording rules are written into the store as they are evaluated (as ``promtool tsdb
create-blocks-from rules`` back-fills them), so the store must not be held by a running server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sightglass.alerting.catalog import MemoryCatalog
from sightglass.alerting.config import AlertingConfig
from sightglass.alerting.service import AlertingService, load_groups


def replay_store(
    data: str | None,
    rule_files: list[str],
    start: str,
    end: str,
    inventory: str | None = None,
    *,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from sightglass.config import Config
    from sightglass.promql.engine import Engine
    from sightglass.store.duckdb import DuckDBStore
    from sightglass.timeutil import parse_time_ms
    from sightglass.topology import TopologyBuilder

    cfg = Config.load(None, data=data)
    store = DuckDBStore(cfg.data)
    try:
        now = int(store.newest_ms or time.time() * 1000)
        s, e = parse_time_ms(start, now=now), parse_time_ms(end, now=now)
        if e <= s:
            raise ValueError("--end must be after --start")
        acfg = AlertingConfig.model_validate({**(config or {}), "rca": False, "notifiers": []})
        if rule_files:
            acfg = acfg.model_copy(
                update={"rule_files": rule_files, "default_rules": False, "default_slos": False}
            )
        builder = TopologyBuilder()
        if inventory:
            builder.add_inventory(json.loads(Path(inventory).read_text()))
        svc = AlertingService(
            store,
            Engine(store),
            acfg,
            groups=load_groups(acfg),
            topology=lambda: builder.update(store),
            rca=False,
            catalog=MemoryCatalog(),
        )
        t0 = time.perf_counter()
        r = svc.replay(s, e)
        secs = time.perf_counter() - t0
        assert svc.incidents is not None
        errors = [
            {"rule": rs.rule.name, "error": rs.last_error}
            for rs in svc.evaluator.rules()
            if rs.health == "err"
        ]
        out = {
            "steps": r["steps"],
            "seconds": secs,
            "groups": [g.name for g in svc.groups],
            "rule_errors": errors,
            "alerts": [a.to_dict() for a in svc.evaluator.alerts(include_inactive=True)],
            "incidents": [i.to_dict(full=False) for i in svc.incidents.list_incidents()],
        }
        svc.close()
        return out
    finally:
        store.close()
