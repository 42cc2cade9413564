"""Loader for the RCAEval layout (RE1/RE2/RE3, Pham et al.): ``<service>_<fault>/<rep>/``.

Each repetition folder holds ``data.csv`` (RE2/RE3 call it ``simple_metrics.csv`` or ``metrics.csv``):
a ``time`` column in unix seconds, then one column per ``<service>_<metric>``; and ``inject_time.txt``
with the injection time in unix seconds. The truth is the ``<service>`` of the case folder's name.
A path may be a dataset root (any depth above the case folders), a case folder or a rep folder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from sightglass.rca.external.cases import Case, CaseError, numeric_frame

DATA_FILES = ("data.csv", "simple_metrics.csv", "metrics.csv")
MAX_DEPTH = 4  # dataset root → system → case → rep


def _is_rep(path: Path) -> bool:
    return (path / "inject_time.txt").exists() or any((path / n).is_file() for n in DATA_FILES)


def find_reps(path: Path) -> list[Path]:
    """Every rep folder at or under ``path`` (sorted), without following links out of it."""
    if not path.exists():
        raise CaseError(f"{path}: no such file or directory")
    if path.is_file():
        path = path.parent
    if _is_rep(path):
        return [path]
    found: list[Path] = []
    frontier = [path]
    for _ in range(MAX_DEPTH):
        nxt: list[Path] = []
        for d in frontier:
            for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.is_symlink()):
                (found if _is_rep(child) else nxt).append(child)
        frontier = nxt
    if not found:
        raise CaseError(f"{path}: no RCAEval case folders (<service>_<fault>/<rep>/ with {DATA_FILES[0]})")
    return found


def parse_case_name(name: str) -> tuple[str, str]:
    """``"ts-order-service_cpu"`` → ``("ts-order-service", "cpu")``; the fault is the last ``_`` part."""
    service, sep, fault = name.rpartition("_")
    if not sep or not service or not fault:
        raise CaseError(f"case folder {name!r} is not named <service>_<fault>")
    return service, fault


def read_inject_time(rep: Path) -> float:
    path = rep / "inject_time.txt"
    if not path.is_file():
        raise CaseError(f"{path}: missing (the injection time in unix seconds)")
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        value = float(text.split()[0]) if text else float("nan")
    except ValueError:
        value = float("nan")
    if not value == value or value <= 0 or value > 1e11:
        raise CaseError(f"{path}: expected unix seconds, got {text[:40]!r}")
    return value


def load_rep(rep: Path) -> Case:
    service, fault = parse_case_name(rep.parent.name)
    data = next((rep / n for n in DATA_FILES if (rep / n).is_file()), None)
    if data is None:
        raise CaseError(f"{rep}: none of {', '.join(DATA_FILES)}")
    inject = read_inject_time(rep)
    try:
        raw = pd.read_csv(data, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise CaseError(f"{data}: not a readable CSV ({str(exc).splitlines()[0]})") from exc
    frame = numeric_frame(raw, str(data))
    t = frame["time"]
    if t.max() > 1e11:  # milliseconds
        frame["time"] = t / 1000.0
        t = frame["time"]
    if not (t < inject).any() or not (t >= inject).any():
        raise CaseError(f"{data}: inject time {inject:.0f} is outside the data ({t.min():.0f}..{t.max():.0f})")
    system = rep.parent.parent.name if rep.parent.parent != rep.parent else ""
    return Case(
        case=f"{rep.parent.name}/{rep.name}",
        system=system,
        fault=fault,
        truth=service,
        inject_time=inject,
        frame=frame,
        extras={"path": rep},
    )


def plan_cases(paths: list[Path]) -> list[tuple[str, Callable[[], Case]] | CaseError]:
    """One (case id, loader) per rep folder under ``paths``, or the error that stops a path."""
    out: list[tuple[str, Callable[[], Case]] | CaseError] = []
    seen: set[Path] = set()
    for path in paths:
        try:
            reps = find_reps(path)
        except CaseError as exc:
            out.append(exc)
            continue
        for rep in reps:
            if rep.resolve() in seen:
                continue
            seen.add(rep.resolve())
            out.append((f"{rep.parent.name}/{rep.name}", functools.partial(load_rep, rep)))
    return out


def iter_cases(paths: list[Path]) -> Iterator[Case | CaseError]:
    for item in plan_cases(paths):
        if isinstance(item, CaseError):
            yield item
            continue
        try:
            yield item[1]()
        except CaseError as exc:
            yield exc
