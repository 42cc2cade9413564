"""The ``sightglass`` command line: a thin layer over the library (kubectl/promtool-style)."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

import sightglass
from sightglass.config import Config, ConfigError

console = Console()
err_console = Console(stderr=True)

# Modules that add their own commands with ``register(cli)``; each lands with its issue.
COMMAND_MODULES = [
    "sightglass.ingest.commands",
    "sightglass.simulate.commands",
    "sightglass.promql.commands",
    "sightglass.topology.commands",
    "sightglass.analytics.commands",
    "sightglass.rca.commands",
    "sightglass.cost.commands",
    "sightglass.alerting.commands",
    "sightglass.agent.commands",
    "sightglass.scaleout.commands",
]


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sightglass.__version__, "--version", "-V", prog_name="sightglass")
def cli() -> None:
    """Sightglass: observability for AI factories — GPUs, inference, training, pipelines, cost."""


data_option = click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False),
    envvar="SIGHTGLASS_DATA",
    default=None,
    help="Data directory holding the DuckDB store [default: ./sightglass-data].",
)


@cli.command()
@data_option
@click.option(
    "--listen", default=None, envvar="SIGHTGLASS_LISTEN", help="HOST:PORT [default: 127.0.0.1:9464]."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="SIGHTGLASS_CONFIG",
    help="TOML config file (scrape targets, retention, limits).",
)
@click.option("--retention", default=None, help="Raw data retention, e.g. 15d.")
@click.option(
    "--attach",
    default=None,
    metavar="URL",
    help="Read-only on an existing Prometheus-compatible server (e.g. http://prometheus:9090).",
)
def up(
    data: str | None, listen: str | None, config_file: str | None, retention: str | None, attach: str | None
) -> None:
    """Serve ingest and the APIs over one data directory (or attached to an existing Prometheus)."""
    from sightglass.server import serve

    config = Config.load(config_file, data=data, listen=listen, retention=retention)
    if attach:
        from sightglass.scaleout.commands import attach_config

        config = attach_config(config, attach)
    serve(
        config,
        on_ready=lambda url: err_console.print(
            f"[bold green]Sightglass[/] serving on {url}  (data: {config.data})"
        ),
    )


@cli.command()
@click.argument("expr")
@data_option
@click.option("--time", "at", default=None, help="Evaluation time (RFC 3339, Unix seconds, now, now-1h).")
@click.option("--start", default=None, help="Range start.")
@click.option("--end", default=None, help="Range end [default: now].")
@click.option("--step", default=None, help="Range step, e.g. 15s [default: (end-start)/250].")
@click.option("--json", "as_json", is_flag=True, help="Print the Prometheus HTTP API envelope.")
@click.option("--server", default=None, help="Query a running server at this URL instead of the files.")
def query(
    expr: str,
    data: str | None,
    at: str | None,
    start: str | None,
    end: str | None,
    step: str | None,
    as_json: bool,
    server: str | None,
) -> None:
    """Evaluate a PromQL expression (instant, or a range with --start)."""
    from sightglass.query_cli import run_query

    config = Config.load(None, data=data)
    body = run_query(config, expr, at=at, start=start, end=end, step=step, server=server)
    if as_json:
        click.echo(json.dumps(body))
    else:
        _print_result(body)
    if body.get("status") != "success":
        sys.exit(1)


def _print_result(body: dict[str, Any]) -> None:
    if body.get("status") != "success":
        err_console.print(f"[red]error ({body.get('errorType')}):[/] {body.get('error')}")
        return
    data = body["data"]
    rtype, result = data["resultType"], data["result"]
    if rtype in ("scalar", "string"):
        console.print(result[1])
        return
    if not result:
        err_console.print("[dim]no data[/]")
        return
    table = Table(show_header=True, header_style="bold")
    table.add_column("series")
    table.add_column("value" if rtype == "vector" else "samples", justify="right")
    for item in result:
        m = dict(item["metric"])
        name = m.pop("__name__", "")
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(m.items()))
        series = f"{name}{{{labels}}}" if labels else (name or "{}")
        if rtype == "vector":
            table.add_row(series, item["value"][1])
        else:
            vals = item["values"]
            table.add_row(series, f"{len(vals)} points, last {vals[-1][1]} @ {vals[-1][0]}")
    console.print(table)


def _register_plugins() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # that feature has not landed
                continue
            raise
        mod.register(cli)


_register_plugins()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
