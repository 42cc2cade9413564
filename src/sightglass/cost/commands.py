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


def _server(data: str, prices_path: str | None) -> str | None:
    """The running ``sightglass up`` over ``data`` (its DuckDB file is then locked), if any."""
    from sightglass.server import running_server_url

    url = running_server_url(data) if Path(data).exists() else None
    if url and prices_path:
        raise click.ClickException(
            f"a server ({url}) holds {data} and prices with its own [cost] price_sheet: "
            "drop --prices, or stop the server to use another sheet"
        )
    return url


def _remote(url: str, path: str, params: dict[str, Any]) -> Any:
    """One cost endpoint of the running server; its errors become CLI errors."""
    import httpx

    from sightglass.timeutil import format_ts

    a, b = _window(params.pop("start"), params.pop("end"))
    q = {"start": format_ts(a), "end": format_ts(b), **params}
    try:
        r = httpx.get(url.rstrip("/") + path, params=q, timeout=600)
        body = r.json()
    except (httpx.HTTPError, ValueError) as e:
        raise click.ClickException(f"cannot ask the server at {url}: {e}") from None
    if body.get("status") != "success":
        raise click.ClickException(str(body.get("error", body)))
    return body["data"]


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

    mode = "chargeback" if chargeback else "showback"
    url = _server(data, prices_path)
    if url:
        rep = _remote(url, "/api/v1/cost/report", {"start": start, "end": end, "by": by, "mode": mode})
    else:
        with _analysis(data, start, end, prices_path, config_path) as an:
            rep = an.report(by, mode=mode)
    for w in rep["warnings"]:
        click.echo(f"warning: {w}", err=True)
    _emit(render(rep, fmt), output)
    if not rep["reconciliation"]["exact"]:
        sys.exit(1)


_TABLE_OR_JSON = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _rich_table(title: str, cols: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console(width=160).print(t)


@cost.command()
@_common
@_TABLE_OR_JSON
@click.option("--by", type=click.Choice(["model", "service"]), default="model", show_default=True)
def tokens(
    data: str, start: str, end: str, prices_path: str | None, config_path: str | None, fmt: str, by: str
) -> None:
    """Self-hosted cost per 1M input/output tokens per model (or service), and tokens per kWh."""
    from sightglass.cost.tokens import model_costs, service_costs, token_counts

    url = _server(data, prices_path)
    if url:
        rows = _remote(url, "/api/v1/cost/tokens", {"start": start, "end": end, "by": by})
    else:
        with _analysis(data, start, end, prices_path, config_path) as an:
            a, b = an.ledger.start_ms, an.ledger.end_ms
            counts = token_counts(an.inputs_store, a, b, by_host=by == "service")
            fn = service_costs if by == "service" else model_costs
            rows = [m.to_dict() for m in fn(an.ledger, counts, an.config.output_token_weight)]
    if fmt == "json":
        _echo_json(rows)
        return
    cols = [
        "model",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "cost_per_1m_input_tokens_usd",
        "cost_per_1m_output_tokens_usd",
        "cost_per_1m_tokens_usd",
        "tokens_per_kwh",
        "replicas",
    ]
    _rich_table(
        "Cost per 1M tokens (self-hosted: GPU cost of the replicas / token counters)",
        cols,
        [[r[c] for c in cols] for r in rows],
    )


@cost.command()
@_common
@_TABLE_OR_JSON
def training(
    data: str, start: str, end: str, prices_path: str | None, config_path: str | None, fmt: str
) -> None:
    """Cost per training step and per run, with what failures and stalls wasted."""
    from sightglass.cost.training import job_costs, run_costs

    url = _server(data, prices_path)
    if url:
        out = _remote(url, "/api/v1/cost/training", {"start": start, "end": end})
    else:
        with _analysis(data, start, end, prices_path, config_path) as an:
            jobs = job_costs(
                an.ledger,
                an.inputs_store,
                an.inputs.allocations,
                an.inputs.topology,
                checkpoint_interval_ms=an.config.ms("checkpoint_interval"),
            )
        out = {"jobs": [j.to_dict() for j in jobs], "runs": run_costs(jobs)}
    if fmt == "json":
        _echo_json(out)
        return
    cols = [
        "job",
        "job_name",
        "team",
        "state",
        "cost_usd",
        "steps",
        "cost_per_step_usd",
        "goodput_cost_per_step_usd",
        "wasted_usd",
        "goodput_ratio",
    ]
    _rich_table("Training cost", cols, [[r[c] for c in cols] for r in out["jobs"]])


@cost.command()
@_common
@_TABLE_OR_JSON
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
def idle(
    data: str, start: str, end: str, prices_path: str | None, config_path: str | None, fmt: str, top: int
) -> None:
    """Top idle-held spenders with the action to take, and the GPUs consolidation would free."""
    from sightglass.cost.insights import idle_insights

    url = _server(data, prices_path)
    if url:
        out = _remote(url, "/api/v1/cost/idle", {"start": start, "end": end, "top": top})
    else:
        with _analysis(data, start, end, prices_path, config_path) as an:
            out = idle_insights(an.ledger, an.inputs, top=top)
    if fmt == "json":
        _echo_json(out)
        return
    rows = [
        [
            r["workload"]["id"],
            r["workload"]["team"],
            r["idle_held_usd"],
            r["idle_held_gpu_hours"],
            r["idle_usd_per_day"],
            r["action"],
        ]
        for r in out["top_idle_spenders"]
    ]
    _rich_table(
        "Top idle-held spenders", ["workload", "team", "idle $", "idle GPU-h", "$/day", "action"], rows
    )
    c = out["consolidation"]
    click.echo(
        f"consolidation: {c['gpus_freed_by_releasing_idle_held']} GPU(s) freed by releasing idle-held "
        f"allocations, {c['gpus_freed_by_packing_underused']} more by packing under-used workloads "
        f"(SM < {c['pack_below_sm_active']:.0%} → {c['target_sm_active']:.0%}); "
        f"idle-held spend ${c['idle_held_usd_per_day']}/day"
    )


@cost.group()
def prices() -> None:
    """Price sheets: show the one in force, check a file, print the defaults."""


@prices.command("default")
@click.option("--on-prem", is_flag=True, help="The on-prem amortisation example instead.")
def prices_default(on_prem: bool) -> None:
    """Print the built-in price sheet (TOML) to start your own from."""
    from sightglass.cost.prices import DEFAULT_SHEET_TOML, ON_PREM_EXAMPLE_TOML

    click.echo((ON_PREM_EXAMPLE_TOML if on_prem else DEFAULT_SHEET_TOML).rstrip("\n"))


@prices.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def prices_check(path: str) -> None:
    """Validate a price sheet; print its versions and $/GPU-hour per model."""
    from sightglass.cost.prices import PriceSheet, PriceSheetError

    try:
        sheet = PriceSheet.load(path)
    except PriceSheetError as e:
        raise click.ClickException(str(e)) from None
    for v in sheet.to_dict()["version"]:
        rates = ", ".join(f"{k} ${r}/h" for k, r in sorted(v["gpu_usd_per_hour"].items()))
        click.echo(f"{v['effective']}: {rates}")
    click.echo(f"{path}: OK, {len(sheet.versions)} version(s)")


@prices.command("show")
@_CONFIG
@click.option("--format", "fmt", type=click.Choice(["json", "toml-defaults"]), default="json")
def prices_show(config_path: str | None, fmt: str) -> None:
    """The price sheet in force ([cost] price_sheet, else the defaults), as JSON."""
    from sightglass.config import Config, ConfigError
    from sightglass.cost.config import cost_config
    from sightglass.cost.prices import PriceSheetError

    try:
        cfg = cost_config(Config.load(config_path).cost if config_path else {})
        sheet = cfg.load_prices(Path(config_path).parent if config_path else None)
    except (PriceSheetError, ConfigError) as e:
        raise click.ClickException(str(e)) from None
    _echo_json(sheet.to_dict())


@cost.command()
@_common
@click.option("--step", default="5m", show_default=True, help="KPI resolution.")
def kpis(
    data: str, start: str, end: str, prices_path: str | None, config_path: str | None, step: str
) -> None:
    """Back-fill the cost KPI series (sightglass_gpu_cost_dollars_total, ...) and the daily rollups."""
    from rich.progress import Progress

    from sightglass.config import Config, ConfigError, parse_duration_ms
    from sightglass.cost.config import cost_config
    from sightglass.cost.kpis import CostKpiWriter
    from sightglass.cost.prices import PriceSheet, PriceSheetError
    from sightglass.cost.rollup import DAY_MS, compute_day, day_start, rollup_dir, write_day
    from sightglass.store.duckdb import DuckDBStore

    a, b = _window(start, end)
    try:
        step_ms = parse_duration_ms(step)
        cfg = cost_config(Config.load(config_path).cost if config_path else {})
        sheet = PriceSheet.load(prices_path) if prices_path else cfg.load_prices()
    except (PriceSheetError, ConfigError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if step_ms < 10_000:
        raise click.BadParameter("at least 10s", param_hint="--step")
    if not Path(data).exists():
        raise click.ClickException(f"no data directory {data}")
    writer = CostKpiWriter(sheet, cfg)
    n = 0
    with DuckDBStore(data) as store, Progress(transient=True) as bar:
        task = bar.add_task("costing", total=b - a)
        t = a
        while t < b:
            nxt = min(b, t + step_ms)
            n += writer.step(store, nxt, start_ms=t)
            bar.update(task, completed=nxt - a)
            t = nxt
        days = sorted({day_start(x) for x in range(day_start(a), b, DAY_MS)})
        directory = rollup_dir(data, cfg)
        for d in days:
            write_day(directory, compute_day(store, d, sheet, cfg, newest_ms=b))
    click.echo(f"wrote {n} KPI samples and {len(days)} daily rollup(s) to {directory}", err=True)


@cost.command()
@_DATA
@click.option("--day", default=None, help="One day (YYYY-MM-DD) in full, as JSON.")
def daily(data: str, day: str | None) -> None:
    """The daily rollups kept for history."""
    from sightglass.cost.rollup import list_days, read_day, rollup_dir

    directory = rollup_dir(data)
    if day:
        try:
            _echo_json(read_day(directory, day))
        except (ValueError, FileNotFoundError) as e:
            raise click.ClickException(str(e)) from None
        return
    _echo_json(list_days(directory))


def register(cli: click.Group) -> None:
    cli.add_command(cost)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1, sort_keys=True))
