"""Running an RCA evaluation with a progress bar, and printing its tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sightglass.rca.evaluation import (
    CaseScore,
    evaluate_sim_case,
    find_cases,
    scores_from_external,
    summarize,
)


def run_eval(paths: list[str], fmt: str, *, with_baro: bool = True, progress: bool = True) -> dict[str, Any]:
    """Evaluate every case; returns ``{"format", "cases": [...], "summary": {...}, "notes": [...]}``."""
    scores: list[CaseScore] = []
    notes: list[str] = []
    console = Console(stderr=True)
    if fmt == "sightglass":
        from sightglass.rca.cases import read_case

        dirs = find_cases(paths)
        if not dirs:
            raise ValueError(f"no case folders (with case.json) under {', '.join(paths)}")
        with Progress(
            TextColumn("[bold]eval rca[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=console, disable=not progress, transient=False,
        ) as bar:
            task = bar.add_task("", total=len(dirs))
            for d in dirs:
                bar.update(task, description=d.name)
                scores.extend(evaluate_sim_case(read_case(d), with_baro=with_baro))
                bar.advance(task)
    else:
        try:
            from sightglass.rca.external import evaluate_cases
        except ImportError as e:
            raise ValueError(f"--format {fmt} needs sightglass.rca.external: {e}") from None
        with Progress(
            TextColumn("[bold]eval rca[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=not progress,
        ) as bar:
            task = bar.add_task("", total=None)

            def step(*_a: Any, **_k: Any) -> None:
                bar.advance(task)

            rows = evaluate_cases(list(paths), fmt, progress=step, with_baro=with_baro)
        scores = scores_from_external(rows)
    baro_errors = sorted({s.error for s in scores if s.method == "baro" and s.error})
    notes.extend(baro_errors[:3])
    if not with_baro:
        notes.append("BARO skipped (--no-baro)")
    return {
        "format": fmt,
        "cases": [s.to_dict() for s in scores],
        "summary": summarize(scores),
        "notes": notes,
    }


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def print_report(report: dict[str, Any]) -> None:
    console = Console(width=150)
    summary = report["summary"]
    for method, s in summary.items():
        t = Table(title=f"{method} ({report['format']} cases)", header_style="bold")
        for col in ("fault", "cases", "AC@1", "AC@3", "Avg@5", "chance AC@1", "chance AC@3", "p50 s", "p95 s", "errors"):
            t.add_column(col, justify="left" if col == "fault" else "right")
        rows = [*s["per_fault"].items(), ("overall", s["overall"])]
        for name, a in rows:
            t.add_row(
                name, _f(a.get("cases")), _f(a.get("AC@1")), _f(a.get("AC@3")), _f(a.get("Avg@5")),
                _f(a.get("chance_AC@1")), _f(a.get("chance_AC@3")),
                _f(a.get("seconds_p50")), _f(a.get("seconds_p95")), _f(a.get("errors")),
                style="bold" if name == "overall" else None,
            )
        console.print(t)
    misses = [c for c in report["cases"] if c["method"] == "sightglass" and c["rank"] != 1]
    if misses:
        t = Table(title="sightglass: cases not at rank 1", header_style="bold")
        for col in ("case", "fault", "rank", "top cause", "error"):
            t.add_column(col)
        for c in misses:
            t.add_row(c["case"], c["fault"], _f(c["rank"]), (c["top"] or ["-"])[0], c["error"] or "")
        console.print(t)
    for n in report.get("notes", []):
        console.print(f"[yellow]note:[/] {n}")
