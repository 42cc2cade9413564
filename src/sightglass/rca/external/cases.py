"""One labelled case of an external RCA benchmark, and the errors its loaders raise.

A case is a wide table (``time`` in unix seconds, then one column per ``<service>_<metric>``), the
injection time and the ground-truth service. Loaders for each public layout (``rcaeval``, ``nezha``)
produce these; the scorers in this package only ever see a :class:`Case`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


class CaseError(ValueError):
    """A case folder that cannot be evaluated; the message names the file and the problem."""


@dataclass(slots=True)
class Case:
    """One fault injection with its observations and its label."""

    case: str  # stable id, e.g. "adservice_cpu/1" or "nezha_tt_2023-01-29_01"
    system: str  # "OB", "TT", or the RCAEval dataset folder name
    fault: str  # "cpu", "network_delay", ...
    truth: str  # ground-truth service name
    inject_time: float  # unix seconds
    frame: pd.DataFrame  # "time" (unix s) then "<service>_<metric>" numeric columns
    fault_window_s: float | None = None  # how long the fault lasts after inject_time; None = to the end
    extras: dict[str, Any] = field(default_factory=dict)  # per-format side data (call graph, logs, ...)

    @property
    def services(self) -> list[str]:
        return services_of(self.frame)


def split_column(column: str) -> tuple[str, str]:
    """``"ts-order-service_CpuUsageRate(%)"`` → ``("ts-order-service", "CpuUsageRate(%)")``.

    The entity is everything before the first underscore, as in the RCAEval datasets, whose service
    names use hyphens and whose metric names may contain underscores.
    """
    entity, _, metric = column.partition("_")
    return entity, metric


def services_of(frame: pd.DataFrame) -> list[str]:
    seen: dict[str, None] = {}
    for col in frame.columns:
        if col == "time":
            continue
        seen.setdefault(split_column(str(col))[0], None)
    return list(seen)


def numeric_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Keep ``time`` and the numeric metric columns; raise :class:`CaseError` when nothing usable is left.

    Columns that are not numbers (labels, free text) are dropped, not fatal: the RCAEval CSVs carry a
    few. ``time`` must be numeric, increasing seconds.
    """
    if "time" not in frame.columns:
        raise CaseError(f"{source}: no 'time' column (columns: {', '.join(map(str, frame.columns[:5]))}...)")
    t = pd.to_numeric(frame["time"], errors="coerce")
    if t.isna().all():
        raise CaseError(f"{source}: the 'time' column holds no numbers")
    keep = {"time": t}
    for col in frame.columns:
        if col == "time" or str(col).startswith("time."):
            continue
        series = frame[col]
        if not pd.api.types.is_numeric_dtype(series):
            series = pd.to_numeric(series, errors="coerce")
            if series.notna().sum() == 0:
                continue
        keep[str(col)] = series.astype(float)
    out = pd.DataFrame(keep)
    out = out[out["time"].notna()].sort_values("time", kind="stable").reset_index(drop=True)
    if out.shape[1] < 2:
        raise CaseError(f"{source}: no numeric metric columns besides 'time'")
    return out
