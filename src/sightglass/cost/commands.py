"""``sightglass cost {report,tokens,training,idle,prices,rollup,daily}``: cost from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from sightglass.cost.report import DIMENSIONS, FORMATS

_DATA = click.option(
    "--data",
    type=click.Path(file_okay=False),
    envvar="SIGHTGLASS_DATA",
    default="./sightglass-data",
    show_default=True,
    help="Data directory.",
)
_START = click.option("--start", required=True, help="Window start (RFC 3339, Unix s, now-1d).")
_END = click.option("--end", default="now", show_default=True, help="Window end (exclusive).")
_PRICES = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Price sheet TOML [default: [cost] price_sheet, else the built-in defaults].",
)
_CONFIG = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None, help="sightglass.toml."
)


def _window(start: str, end: str) -> tuple[int, int]:
    from sightglass.timeutil import parse_time_ms

    try:
        a = parse_time_ms(start)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--start") from None
    try:
        b = parse_time_ms(end)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--end") from None
    if b <= a:
        raise click.BadParameter("must be after --start", param_hint="--end")
    return a, b


@contextmanager
def _analysis(
    data: str, start: str, end: str, prices_path: str | None, config_path: str | None
) -> Iterator[Any]:
    from sightglass.config import Config, ConfigError
    from sightglass.cost.analysis import CostAnalysis
    from sightglass.cost.config import cost_config
    from sightglass.cost.prices import PriceSheet, PriceSheetError
    from sightglass.store.base import StoreError
    from sightglass.store.duckdb import DuckDBStore

    a, b = _window(start, end)
    try:
        cfg = cost_config(Config.load(config_path).cost if config_path else {})
        sheet = (
            PriceSheet.load(prices_path)
            if prices_path
            else cfg.load_prices(Path(config_path).parent if config_path else None)
        )
    except (PriceSheetError, ConfigError) as e:
        raise click.ClickException(str(e)) from None
    if not Path(data).exists():
        raise click.ClickException(f"no data directory {data}")
    try:
        store = DuckDBStore(data)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    try:
        from rich.console import Console

        with Console(stderr=True).status("reading GPU usage, allocations and prices…"):
            analysis = CostAnalysis.run(store, a, b, prices=sheet, config=cfg)
        yield analysis
    finally:
        store.close()


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text.rstrip("\n"))


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed((_DATA, _START, _END, _PRICES, _CONFIG)):
        fn = opt(fn)
    return fn


@click.group()
def cost() -> None:
    """GPU cost: reconciled reports, cost per token, idle spend, price sheets."""


@cost.command()
@_common
@click.option("--by", type=click.Choice(DIMENSIONS), default="team", show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--chargeback", is_flag=True, help="Bill each group for what it held (default: showback).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
def report(
    data: str,
    start: str,
    end: str,
    prices_path: str | None,
    config_path: str | None,
    by: str,
    fmt: str,
    chargeback: bool,
    output: str | None,
) -> None:
    """Cost by team, project, model, job or node; reconciles to the fleet cost exactly."""
    from sightglass.cost.report import render

    with _analysis(data, start, end, prices_path, config_path) as an:
        rep = an.report(by, mode="chargeback" if chargeback else "showback")
    for w in rep["warnings"]:
        click.echo(f"warning: {w}", err=True)
    _emit(render(rep, fmt), output)
    if not rep["reconciliation"]["exact"]:
        sys.exit(1)


def register(cli: click.Group) -> None:
    cli.add_command(cost)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1, sort_keys=True))
