"""``sightglass simulate`` and ``sightglass demo``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sightglass.config import parse_duration_ms


def _duration_s(text: str) -> float:
    try:
        return parse_duration_ms(text) / 1000.0
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command()
@click.option("--nodes", default=8, show_default=True, help="8-GPU nodes in the factory (4 to 1,000+).")
@click.option("--duration", default="1h", show_default=True, help="Simulated time, e.g. 30m, 1h.")
@click.option("--seed", default=1, show_default=True, help="Same seed (and --start) → same bytes.")
@click.option("--start", default=None, help="Start time (RFC 3339) [default: 2026-11-16T00:00:00Z].")
@click.option("--step", "step", default="10s", show_default=True, help="Resolution (tick).")
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML/JSON file of scripted faults.",
)
@click.option(
    "--fault-every",
    default=None,
    help="Random faults from the catalogue, one per this on average "
    "(e.g. 10m) [default: none with --scenario, else 15m].",
)
@click.option(
    "--cases", type=int, default=None, help="Write a labelled RCA suite of this many cases instead."
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (fast mode).")
@click.option(
    "--ingest",
    "ingest_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write straight into the DuckDB store in this data directory instead of files.",
)
def simulate(
    nodes: int,
    duration: str,
    seed: int,
    start: str | None,
    step: str,
    scenario: str | None,
    fault_every: str | None,
    cases: int | None,
    out: str | None,
    ingest_dir: str | None,
) -> None:
    """Simulate an AI factory faster than real time into files, an RCA suite, or a store."""
    from sightglass.simulate.fast import DEFAULT_START, run_cases, run_fast, run_ingest
    from sightglass.simulate.faults import load_scenario
    from sightglass.timeutil import parse_time_ms

    start_ms = parse_time_ms(start or DEFAULT_START)
    dur_s, dt_s = _duration_s(duration), _duration_s(step)
    scripted = load_scenario(scenario) if scenario else None
    every = _duration_s(fault_every) if fault_every else (None if scenario else 900.0)
    if not out and not ingest_dir:
        raise click.UsageError("give --out DIR (files) or --ingest DIR (a store)")
    if cases:
        index = run_cases(
            cases=cases,
            nodes=nodes,
            duration_s=dur_s,
            seed=seed,
            start_ms=start_ms,
            out=Path(out or "."),
            dt_s=dt_s,
        )
        click.echo(f"wrote {len(index)} cases to {out}", err=True)
        return
    if ingest_dir:
        from sightglass.store.duckdb import DuckDBStore

        with DuckDBStore(ingest_dir) as store:
            stats, _ = run_ingest(
                store,
                nodes=nodes,
                duration_s=dur_s,
                seed=seed,
                start_ms=start_ms,
                dt_s=dt_s,
                scripted=scripted,
                fault_every_s=every,
            )
    else:
        stats = run_fast(
            nodes=nodes,
            duration_s=dur_s,
            seed=seed,
            start_ms=start_ms,
            out=Path(str(out)),
            dt_s=dt_s,
            scripted=scripted,
            fault_every_s=every,
        )
    click.echo(json.dumps(stats.to_dict()))


@click.command()
@click.option("--listen", default="127.0.0.1:9464", show_default=True, help="HOST:PORT of the server.")
@click.option("--nodes", default=4, show_default=True, help="8-GPU nodes in the simulated factory.")
@click.option("--seed", default=1, show_default=True)
@click.option("--fault-every", default="3m", show_default=True, help="Mean time between injected faults.")
@click.option("--tick", default="5s", show_default=True, help="Simulation tick = scrape interval.")
@click.option("--duration", default=None, help="Stop after this long (e.g. 30s; for tests).")
@click.option(
    "--push/--scrape",
    default=None,
    help="Push samples into the store instead of scraping [default: scrape when the scraper is installed].",
)
def demo(
    listen: str, nodes: int, seed: int, fault_every: str, tick: str, duration: str | None, push: bool | None
) -> None:
    """Start Sightglass on a temporary store next to a live simulated AI factory."""
    from sightglass.simulate.live import run_demo

    def ready(url: str) -> None:
        click.echo(
            f"Sightglass demo: {url}  ({nodes} simulated nodes, a fault every ~{fault_every})", err=True
        )

    run_demo(
        listen=listen,
        nodes=nodes,
        seed=seed,
        duration_s=_duration_s(duration) if duration else None,
        fault_every_s=_duration_s(fault_every),
        tick_s=_duration_s(tick),
        push=push,
        on_ready=ready,
    )


def register(cli: click.Group) -> None:
    cli.add_command(simulate)
    cli.add_command(demo)
