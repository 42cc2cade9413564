"""Load a simulator case folder (``sightglass simulate --cases``) into a store for analysis.

A case holds ``metrics.om`` (OpenMetrics with timestamps), ``events.jsonl``, ``lineage.jsonl``,
``factory.json`` (the inventory: racks, leaf/spine switches) and ``case.json`` (``symptom``, ``at``,
``truth``). The metrics are imported into a DuckDB store in a temporary directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightglass.timeutil import parse_time_ms


class CaseError(Exception):
    """A case folder that cannot be read; the message names the file."""


@dataclass(slots=True)
class Case:
    path: Path
    name: str
    symptom: str
    at_ms: int
    truth: dict[str, Any]
    inventory: dict[str, Any] | None


def read_case(path: str | Path) -> Case:
    p = Path(path)
    cj = p / "case.json"
    if not cj.is_file():
        raise CaseError(f"{p}: no case.json (not a `sightglass simulate --cases` folder)")
    try:
        doc = json.loads(cj.read_text())
        symptom, at, truth = str(doc["symptom"]), doc["at"], doc["truth"]
        at_ms = parse_time_ms(at)
        if not isinstance(truth, dict) or "kind" not in truth or not isinstance(truth.get("match", {}), dict):
            raise ValueError("truth needs kind and match")
    except (ValueError, KeyError, TypeError) as e:
        raise CaseError(f"{cj}: {e}") from None
    if not (p / "metrics.om").is_file():
        raise CaseError(f"{p}: no metrics.om")
    inv = None
    if (p / "factory.json").is_file():
        try:
            inv = json.loads((p / "factory.json").read_text())
        except ValueError as e:
            raise CaseError(f"{p / 'factory.json'}: {e}") from None
    return Case(p, f"{p.parent.name}/{p.name}", symptom, at_ms, truth, inv)


def load_case_store(case: Case, data_dir: Path) -> Any:
    """Import the case's metrics, events and lineage into a fresh store under ``data_dir``."""
    from sightglass.ingest.importer import import_files
    from sightglass.simulate.fast import to_events, to_lineage
    from sightglass.store.duckdb import DuckDBStore, StoreOptions

    store = DuckDBStore(data_dir, options=StoreOptions(compact_every_s=3600))
    try:
        import_files(store, [case.path / "metrics.om"])
        events = _jsonl(case.path / "events.jsonl")
        if events:
            store.append_events(to_events(events))
        lineage = _jsonl(case.path / "lineage.jsonl")
        if lineage:
            store.append_lineage(to_lineage(lineage))
    except Exception:
        store.close()
        raise
    return store


def _jsonl(f: Path) -> list[dict[str, Any]]:
    if not f.is_file():
        return []
    try:
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    except ValueError as e:
        raise CaseError(f"{f}: {e}") from None
