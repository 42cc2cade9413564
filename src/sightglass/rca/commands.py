"""``sightglass rca`` (analyse a symptom) and ``sightglass eval rca`` (measure the analysis)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

FORMATS = ("sightglass", "rcaeval", "nezha")


def run_rca(data: str, symptom: str, at: str | None, *, top: int, window: str | None, server: str | None) -> dict[str, Any]:
    """The Prometheus-style envelope with ``RcaResult.to_dict()``, from the files or a running server."""
    import httpx

    from sightglass.rca.request import RequestError, parse_rca_body
    from sightglass.server import running_server_url

    body: dict[str, Any] = {"symptom": symptom, "top": top}
    if at is not None:
        body["at"] = at
    if window is not None:
        body["window"] = window
    try:
        req = parse_rca_body(body)
    except RequestError as e:
        return {"status": "error", "errorType": "bad_data", "error": str(e)}
    url = server or running_server_url(data)
    if url:
        body["at"] = req.at_ms / 1000
        try:
            r = httpx.post(url.rstrip("/") + "/api/v1/rca", json=body, timeout=120)
            out: dict[str, Any] = r.json()
            return out
        except httpx.HTTPError as e:
            return {"status": "error", "errorType": "unavailable", "error": f"cannot reach server at {url}: {e}"}
        except ValueError:
            return {"status": "error", "errorType": "internal", "error": f"server at {url} answered without JSON"}
    from sightglass.rca.engine import RcaError, analyze
    from sightglass.store.base import StoreError
    from sightglass.store.duckdb import DuckDBStore

    if not Path(data).is_dir():
        return {"status": "error", "errorType": "bad_data", "error": f"no data directory {data}"}
    try:
        with DuckDBStore(data, read_only=True) as store:
            res = analyze(store, req.symptom, req.at_ms, top=req.top, window_ms=req.window_ms)
            return {"status": "success", "data": res.to_dict()}
    except RcaError as e:
        return {"status": "error", "errorType": e.error_type, "error": str(e)}
    except StoreError as e:
        return {"status": "error", "errorType": "execution", "error": str(e)}


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    envvar="SIGHTGLASS_DATA",
    default="./sightglass-data",
    show_default=True,
    help="Data directory (read-only; a running server over it is asked instead).",
)
@click.option("--symptom", required=True, help="PromQL of the symptom, e.g. 'training_step_duration_seconds{slurm_job_id=\"42\"}'.")
@click.option("--at", default=None, help="When (RFC 3339, Unix seconds, now, now-10m) [default: now].")
@click.option("--top", default=5, show_default=True, help="How many causes to rank.")
@click.option("--window", default=None, help="History to read before --at [default: 30m].")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON answer (docs/rca.md).")
@click.option("--server", default=None, help="Ask a running server at this URL.")
def rca(data: str, symptom: str, at: str | None, top: int, window: str | None, as_json: bool, server: str | None) -> None:
    """Find the root cause of a symptom: ranked causes with their evidence and re-check queries."""
    from sightglass.rca.result import render_text

    body = run_rca(data, symptom, at, top=top, window=window, server=server)
    if body.get("status") != "success":
        if as_json:
            click.echo(json.dumps(body))
        else:
            click.echo(f"error ({body.get('errorType')}): {body.get('error')}", err=True)
        sys.exit(1)
    click.echo(json.dumps(body["data"], indent=1) if as_json else render_text(body["data"]))


@click.group(name="eval")
def eval_group() -> None:
    """Measure Sightglass' analyses against ground truth."""


@eval_group.command(name="rca")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="sightglass", show_default=True, help="Case layout.")
@click.option("--json", "as_json", is_flag=True, help="Print per-case and aggregate figures as JSON.")
@click.option("--no-baro", is_flag=True, help="Skip the BARO baseline.")
def eval_rca(paths: tuple[str, ...], fmt: str, as_json: bool, no_baro: bool) -> None:
    """AC@1, AC@3, Avg@5 and time to answer, per case and per fault class, beside BARO and chance."""
    from sightglass.rca.report import run_eval

    try:
        report = run_eval(list(paths), fmt, with_baro=not no_baro, progress=not as_json)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        from sightglass.rca.report import print_report

        print_report(report)


def register(cli: click.Group) -> None:
    cli.add_command(rca)
    existing = cli.commands.get("eval")
    if isinstance(existing, click.Group):
        existing.add_command(eval_rca)
    else:
        cli.add_command(eval_group)
