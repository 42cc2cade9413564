"""``python -m sightglass.rca.external PATH... --format nezha|rcaeval [--json] [--by-fault] [--no-baro] [--cases RE]``."""

from __future__ import annotations

import json
import re
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from sightglass.rca.external.evaluate import FORMATS, evaluate_cases, summarize


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Layout of the cases.")
@click.option("--json", "as_json", is_flag=True, help="Print every case's rankings as JSON.")
@click.option("--by-fault", is_flag=True, help="Also break the figures down by fault type.")
@click.option("--no-baro", is_flag=True, help="Skip the BARO baseline.")
@click.option("--cases", "only", metavar="REGEX", help="Only the cases whose id matches REGEX (re.search).")
def main(paths: tuple[str, ...], fmt: str, as_json: bool, by_fault: bool, no_baro: bool, only: str | None) -> None:
    """Evaluate Sightglass and BARO on external RCA benchmark cases (AC@1, AC@3, Avg@5)."""
    if only is not None:
        try:
            re.compile(only)
        except re.error as exc:
            raise click.BadParameter(f"not a regular expression: {exc}", param_hint="--cases") from exc
    err = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True, disable=as_json) as bar:
        task = bar.add_task("evaluating cases", total=None)
        rows = evaluate_cases(list(paths), fmt, progress=lambda d, t: bar.update(task, completed=d, total=t),
                              with_baro=not no_baro, only=only)
    if not rows:
        raise click.UsageError(f"no case id matches --cases {only!r}" if only else "no cases found")
    errors = [r for r in rows if r.get("error")]
    if as_json:
        click.echo(json.dumps({"cases": rows, "summary": summarize(rows)}, indent=1))
    else:
        _print_table(Console(), "per system", summarize(rows))
        if by_fault:
            for fault in sorted({r["fault"] for r in rows if not r.get("error")}):
                sub = [dict(r, system=f"{r['system']} {fault}") for r in rows if r["fault"] == fault]
                _print_table(Console(), f"fault {fault}", summarize(sub))
        unavailable = {v for r in rows for v in r.get("unavailable", {}).values()}
        for msg in sorted(unavailable)[:3]:
            err.print(f"[yellow]note:[/] {msg}")
    for r in errors:
        click.echo(f"error: {r['error']}", err=True)
    if errors and len(errors) == len(rows):
        sys.exit(1)


def _print_table(console: Console, title: str, summary: list[dict[str, object]]) -> None:
    table = Table(title=title)
    for col in ("system", "method", "cases", "AC@1", "AC@3", "Avg@5", "mean s"):
        table.add_column(col, justify="left" if col in ("system", "method") else "right")
    for s in summary:
        table.add_row(str(s["system"]), str(s["method"]), str(s["cases"]), f"{s['ac1']:.3f}",
                      f"{s['ac3']:.3f}", f"{s['avg5']:.3f}", f"{s['mean_s']:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
