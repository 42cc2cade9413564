"""Daily rollups kept for history: one JSON file per UTC day under ``<data>/cost/daily/``.

Each file holds the day's reconciled reports by team, project, model and workload, the cost per 1M
tokens per model, the price sheet it used and whether the day was complete when written
(``partial``). Rewriting a day (a back-filled price sheet, late data) replaces its file atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from sightglass.cost.analysis import CostAnalysis
from sightglass.cost.config import CostConfig
from sightglass.cost.prices import PriceSheet
from sightglass.cost.tokens import model_costs, token_counts

DAY_MS = 86_400_000
_DAY_FILE = "%Y-%m-%d"


def rollup_dir(data_dir: str | Path, config: CostConfig | None = None) -> Path:
    if config is not None and config.rollup_dir:
        return Path(config.rollup_dir)
    return Path(data_dir) / "cost" / "daily"


def day_start(ts_ms: int) -> int:
    return ts_ms - ts_ms % DAY_MS


def parse_day(text: str) -> int:
    try:
        d = dt.datetime.strptime(text, _DAY_FILE).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"a day is YYYY-MM-DD, got {text!r}") from None
    return round(d.timestamp() * 1000)


def day_name(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime(_DAY_FILE)


def compute_day(
    store: Any, day_ms: int, prices: PriceSheet, config: CostConfig, *, newest_ms: int | None = None
) -> dict[str, Any]:
    """The rollup of the UTC day starting at ``day_ms`` (up to ``newest_ms`` when it is not over)."""
    end = day_ms + DAY_MS
    partial = newest_ms is not None and newest_ms < end
    stop = min(end, newest_ms) if partial and newest_ms is not None else end
    if stop <= day_ms:
        raise ValueError(f"no data for {day_name(day_ms)} yet")
    an = CostAnalysis.run(store, day_ms, stop, prices=prices, config=config)
    an.ledger.check()
    tokens = token_counts(store, day_ms, stop)
    return {
        "day": day_name(day_ms),
        "partial": partial,
        "until_ms": stop,
        "price_sheet": prices.source,
        "by": {k: an.report(k)["rows"] for k in ("team", "project", "model", "workload")},
        "totals": an.report("team")["totals"],
        "reconciliation": an.report("team")["reconciliation"],
        "tokens": [m.to_dict() for m in model_costs(an.ledger, tokens, config.output_token_weight)],
    }


def write_day(directory: Path, doc: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['day']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def list_days(directory: Path) -> list[dict[str, Any]]:
    """Summaries of the kept days, oldest first."""
    out: list[dict[str, Any]] = []
    if not directory.exists():
        return out
    for p in sorted(directory.glob("????-??-??.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            out.append({"day": p.stem, "error": f"unreadable rollup: {e}"})
            continue
        out.append(
            {
                "day": doc.get("day", p.stem),
                "partial": doc.get("partial"),
                "fleet_usd": doc.get("totals", {}).get("fleet_usd"),
                "idle_held_usd": doc.get("totals", {}).get("idle_held_usd"),
                "unallocated_usd": doc.get("totals", {}).get("unallocated_usd"),
            }
        )
    return out


def read_day(directory: Path, day: str) -> dict[str, Any]:
    parse_day(day)
    p = directory / f"{day}.json"
    if not p.exists():
        raise FileNotFoundError(f"no rollup for {day} in {directory}")
    doc: dict[str, Any] = json.loads(p.read_text())
    return doc
