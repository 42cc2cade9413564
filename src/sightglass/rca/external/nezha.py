"""Loader for the Nezha RCA dataset (FSE'23): Online Boutique and Train Ticket, service level.

Layout and traps are described in ``shared/data/rca/nezha/PROVENANCE.md``. Two matter here:
the injection time is the ``inject_time_utc`` string of ``cases.csv`` (its numeric twin is hours off
for most of 2023-01-29), and one pod's ``TimeStamp`` column is 200 000 000 s too large, so every
metric time comes from the ``Time`` string, read as UTC.

Metrics are one CSV per pod at one-minute steps; pods of a service are merged into
``<service>_<metric>`` columns (service = pod name less its two trailing ``-<hash>`` parts). Host-level
``Node*`` columns are left out: they describe the node a pod shares with others, not the service.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sightglass.rca.external.cases import Case, CaseError

BEFORE_S = 30 * 60  # history given to the methods before the injection
AFTER_S = 10 * 60  # and after it
FAULT_WINDOW_S = 4 * 60  # faults last about 3 min; minute samples aggregate the minute before them

_POD_HASH = re.compile(r"-[a-z0-9]{5,10}-[a-z0-9]{5}$")


def service_of_pod(pod: str) -> str:
    """``ts-contacts-service-866bd68c97-xcqfx`` → ``ts-contacts-service``."""
    parts = pod.rsplit("-", 2)
    return parts[0] if len(parts) == 3 and _POD_HASH.search(pod) else pod


def is_nezha_root(path: Path) -> bool:
    return (path / "cases.csv").is_file() and (path / "rca_data").is_dir()


def find_root(path: Path) -> Path:
    """The dataset root for ``path`` (the root itself, or a folder inside it)."""
    for p in [path, *path.parents]:
        if is_nezha_root(p):
            return p
    raise CaseError(f"{path}: not inside a Nezha dataset (no cases.csv next to rca_data/)")


def read_index(root: Path) -> list[dict[str, str]]:
    need = {"case_id", "system", "day", "inject_time_utc", "root_cause_service", "fault_type"}
    with (root / "cases.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not need <= set(rows[0]):
        missing = sorted(need - set(rows[0])) if rows else sorted(need)
        raise CaseError(f"{root / 'cases.csv'}: missing columns {', '.join(missing)}")
    return rows


def _minute_time(text: pd.Series) -> pd.Series:
    """Unix seconds from ``"2022-08-22 03:51:19.607158889 +0000 UTC m=+0.11"`` (UTC wall clock)."""
    ts = pd.to_datetime(text.str.slice(0, 26), format="%Y-%m-%d %H:%M:%S.%f", utc=True, errors="coerce")
    bad = ts.isna()
    if bad.any():  # a sample without fractional seconds
        ts[bad] = pd.to_datetime(text[bad].str.slice(0, 19), format="%Y-%m-%d %H:%M:%S", utc=True, errors="coerce")
    return (ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()


@lru_cache(maxsize=4)
def load_day_metrics(metric_dir: str) -> pd.DataFrame:
    """All pods of one day as one wide frame, one row per minute."""
    frames: list[pd.DataFrame] = []
    for path in sorted(Path(metric_dir).glob("*_metric.csv")):
        raw = pd.read_csv(path)
        if "Time" not in raw.columns:
            raise CaseError(f"{path}: no 'Time' column")
        t = _minute_time(raw["Time"].astype(str))
        pod = path.name.removesuffix("_metric.csv")
        service = service_of_pod(pod)
        cols = [c for c in raw.columns if c not in ("Time", "TimeStamp", "PodName") and not c.startswith("Node")]
        block = raw[cols].apply(pd.to_numeric, errors="coerce")
        block.columns = [f"{service}_{c}" for c in cols]
        block.insert(0, "t", t.to_numpy())
        block = block[block["t"].notna()]
        block["minute"] = (block["t"] // 60).astype(np.int64)
        frames.append(block.groupby("minute").mean())
    if not frames:
        raise CaseError(f"{metric_dir}: no <pod>_metric.csv files")
    # a service with two pods would repeat columns; average them
    wide = pd.concat(frames, axis=1)
    t_exact = wide["t"].median(axis=1) if isinstance(wide["t"], pd.DataFrame) else wide["t"]
    wide = wide.drop(columns=["t"])
    wide = wide.T.groupby(level=0, sort=False).mean().T
    wide.insert(0, "time", t_exact.to_numpy())
    return wide.sort_index().reset_index(drop=True)


def load_dependency(metric_dir: Path) -> list[tuple[str, str]]:
    path = metric_dir / "dependency.csv"
    if not path.is_file():
        return []
    dep = pd.read_csv(path)
    return [(str(s), str(t)) for s, t in zip(dep["Source"], dep["Target"], strict=True) if s != t]


def plan_cases(paths: list[Path]) -> list[tuple[str, Callable[[], Case]] | CaseError]:
    """One (case id, loader) per case under the given roots (or a day folder inside one)."""
    out: list[tuple[str, Callable[[], Case]] | CaseError] = []
    seen: set[str] = set()
    for path in paths:
        try:
            root = find_root(path)
            rows = read_index(root)
        except (CaseError, OSError) as exc:
            out.append(exc if isinstance(exc, CaseError) else CaseError(f"{path}: {exc}"))
            continue
        day_filter = path.name if path != root and re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.name) else None
        for row in rows:
            if row["case_id"] in seen or (day_filter and row["day"] != day_filter):
                continue
            seen.add(row["case_id"])
            out.append((row["case_id"], functools.partial(_load_row, root, row)))
    return out


def _load_row(root: Path, row: dict[str, str]) -> Case:
    try:
        return _case_from_row(root, row)
    except CaseError as exc:
        raise CaseError(f"{row['case_id']}: {exc}") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise CaseError(f"{row['case_id']}: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=4)
def load_day_edges(metric_dir: str) -> pd.DataFrame | None:
    """Per-edge call latency (p50, seconds) as the caller sees it: ``time`` then ``caller->callee``.

    From ``source_50.csv`` (Online Boutique days only; the Train Ticket days have no edge metrics).
    """
    path = Path(metric_dir) / "source_50.csv"
    if not path.is_file():
        return None
    raw = pd.read_csv(path)
    if "time" not in raw.columns:
        raise CaseError(f"{path}: no 'time' column")
    t = _minute_time(raw["time"].astype(str))
    cols = {}
    for col in raw.columns:
        if col in ("time", "timestamp") or "_" not in col:
            continue
        src, _, dst = col.partition("_")
        cols[f"{src}->{dst}"] = pd.to_numeric(raw[col], errors="coerce")
    out = pd.DataFrame(cols)
    out.insert(0, "time", t.to_numpy())
    return out[out["time"].notna()].sort_values("time").reset_index(drop=True)


def iter_cases(paths: list[Path]) -> Iterator[Case | CaseError]:
    for item in plan_cases(paths):
        if isinstance(item, CaseError):
            yield item
            continue
        try:
            yield item[1]()
        except CaseError as exc:
            yield exc


def _case_from_row(root: Path, row: dict[str, str]) -> Case:
    inject = pd.Timestamp(row["inject_time_utc"], tz="UTC").timestamp()
    metric_dir = root / "rca_data" / row["day"] / "metric"
    day = load_day_metrics(str(metric_dir))
    frame = day[(day["time"] >= inject - BEFORE_S) & (day["time"] < inject + AFTER_S)].reset_index(drop=True)
    if frame.empty:
        raise CaseError(f"no metric samples within -30/+10 min of {row['inject_time_utc']} in {metric_dir}")
    edges = load_day_edges(str(metric_dir))
    if edges is not None:
        edges = edges[(edges["time"] >= inject - BEFORE_S) & (edges["time"] < inject + AFTER_S)]
    return Case(
        case=row["case_id"],
        system=row["system"],
        fault=row["fault_type"],
        truth=row["root_cause_service"],
        inject_time=inject,
        frame=frame,
        fault_window_s=FAULT_WINDOW_S,
        extras={"day_dir": root / "rca_data" / row["day"], "root": root, "day": row["day"],
                "edges": load_dependency(metric_dir),
                "edge_latency": edges},
    )
