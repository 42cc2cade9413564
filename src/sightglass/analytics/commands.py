"""``sightglass analytics {run,status,anomalies,drift,predictability,kpis}``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

_DATA = click.option(
    "--data",
    type=click.Path(file_okay=False),
    envvar="SIGHTGLASS_DATA",
    default="./sightglass-data",
    show_default=True,
    help="Data directory.",
)
_OUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
_TIME = click.option(
    "--time", "at", default=None, help="As of this time (RFC 3339 or Unix s) [default: newest]."
)


@contextmanager
def _store(data: str) -> Iterator[Any]:
    from sightglass.store.duckdb import DuckDBStore

    if not Path(data).exists():
        raise click.ClickException(f"no data directory {data}")
    try:
        store = DuckDBStore(data)
    except Exception as e:  # a lock held by a running server, a damaged file
        raise click.ClickException(f"cannot open the store in {data}: {e}") from None
    try:
        yield store
    finally:
        store.close()


def _time(at: str | None, store: Any) -> int:
    from sightglass.analytics import views
    from sightglass.api.envelope import APIError
    from sightglass.timeutil import parse_time_ms

    if at:
        try:
            return parse_time_ms(at)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--time") from None
    try:
        return views.newest_ms(store)
    except APIError as e:
        raise click.ClickException(str(e)) from None


def _duration(raw: str, name: str) -> int:
    from sightglass.config import parse_duration_ms

    try:
        return parse_duration_ms(raw)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=name) from None


def _golden(path: str | None) -> dict[str, dict[str, str]]:
    from sightglass.analytics.drift import load_golden

    if not path:
        return {}
    try:
        return load_golden(path)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--golden") from None


def _echo(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=1, sort_keys=True, default=str))


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(rows: list[list[Any]], header: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(*header, box=None, pad_edge=False, header_style="bold")
    for r in rows:
        t.add_row(*("-" if v is None else str(v) for v in r))
    Console(width=200).print(t)


@click.group()
def analytics() -> None:
    """Baselines, anomalies, KPIs, predictability and config drift."""


@analytics.command()
@_DATA
@click.option(
    "--history", default="15m", show_default=True, help="Fit the baselines on this much data first."
)
@click.option("--batch", default="5m", show_default=True, help="Fold the rest in batches of this size.")
@click.option(
    "--golden", type=click.Path(dir_okay=False), default=None, help="Pinned golden config (JSON/YAML/TOML)."
)
def run(data: str, history: str, batch: str, golden: str | None) -> None:
    """Analyse a data directory end to end (what the server does every 30 s), writing the KPI
    series and the anomaly / config events back into the store."""
    from rich.progress import Progress

    from sightglass.analytics.service import AnalyticsService

    hist_ms, batch_ms = _duration(history, "--history"), _duration(batch, "--batch")
    if batch_ms <= 0:
        raise click.BadParameter("must be positive", param_hint="--batch")
    gold = _golden(golden)
    with _store(data) as store:
        newest = int(getattr(store, "newest_ms", 0) or 0)
        if newest <= 0:
            raise click.ClickException(f"the store in {data} holds no samples")
        cur = store.cursor()
        try:
            row = cur.execute("SELECT min(first_ms) FROM series").fetchone()
        finally:
            cur.close()
        oldest = int(row[0]) if row and row[0] is not None else newest
        svc = AnalyticsService(store, interval_ms=0, history_ms=hist_ms, golden=gold)
        t = min(newest, oldest + hist_ms)
        steps = [t]
        while t < newest:
            t = min(t + batch_ms, newest)
            steps.append(t)
        with Progress(transient=True) as bar:
            task = bar.add_task("analysing", total=len(steps))
            for until in steps:
                svc.step_until(until)
                bar.advance(task)
        status = svc.status()
    click.echo(
        f"analysed {_iso(oldest)} .. {_iso(newest)} in {len(steps)} steps: "
        f"{status['anomalies_reported']} anomalies, {status['drift']['changes_seen']} config changes, "
        f"{status['drift']['open_drifts']} open drifts, {status['workload_kpi_samples']} workload KPI samples",
        err=True,
    )
    for part, err in status["part_errors"].items():
        click.echo(f"warning: {part} failed: {err}", err=True)


@analytics.command()
@_DATA
@_OUT
def status(data: str, output: str) -> None:
    """What analytics has written into a data directory: events, KPI series, last analysed time."""
    from sightglass.analytics import views
    from sightglass.model import Matcher

    with _store(data) as store:
        cur = store.cursor()
        try:
            ev = dict(
                cur.execute(
                    "SELECT kind, count(*) FROM events WHERE kind LIKE 'anomaly.%' OR kind LIKE 'config.%' GROUP BY kind"
                ).fetchall()
            )
        finally:
            cur.close()
        kp = views.kpis(store, int(getattr(store, "newest_ms", 0) or 0))["kpis"] if store.newest_ms else []
        last = 0
        for sd in store.select(
            [Matcher("__name__", "=", "sightglass_gpu_sm_active_ratio")],
            store.newest_ms - 3_600_000,
            store.newest_ms,
        ):
            if len(sd.ts_ms):
                last = max(last, int(sd.ts_ms[-1]))
        doc: dict[str, Any] = {
            "newest_sample_ms": store.newest_ms or None,
            "analysed_until_ms": last or None,
            "events": ev,
            "kpis": {k["name"]: k["series"] for k in kp},
        }
    if output == "json":
        _echo(doc)
        return
    click.echo(f"newest sample:   {_iso(doc['newest_sample_ms'])}")
    click.echo(
        f"analysed until:  {_iso(doc['analysed_until_ms'])}"
        + ("" if last else "  (run `sightglass analytics run`)")
    )
    for k in (
        "anomaly.entity",
        "anomaly.changepoint",
        "config.change",
        "config.drift",
        "config.drift.resolved",
    ):
        click.echo(f"{k + ' events:':<30} {ev.get(k, 0)}")
    _table([[n, c] for n, c in doc["kpis"].items()], ["KPI", "SERIES"])


@analytics.command()
@_DATA
@_OUT
@_TIME
@click.option("--since", default="1h", show_default=True, help="How far back from --time.")
@click.option("--entity", default=None, help="Only this entity (e.g. gpu:GPU-..., node:node-03).")
def anomalies(data: str, output: str, at: str | None, since: str, entity: str | None) -> None:
    """Entity anomalies (and change points) in a window."""
    from sightglass.analytics import views

    with _store(data) as store:
        end = _time(at, store)
        doc = views.anomalies(store, end - _duration(since, "--since"), end, entity=entity)
    if output == "json":
        _echo(doc)
        return
    rows = [
        [
            _iso(a["ts_ms"]),
            a["entity"].get("entity"),
            a["attributes"].get("scope"),
            a["attributes"].get("score"),
            ",".join(a["attributes"].get("signals", [])[:3]),
        ]
        for a in doc["anomalies"]
    ]
    _table(rows, ["ONSET", "ENTITY", "SCOPE", "SCORE", "SIGNALS"])
    click.echo(
        f"{doc['total']['anomalies']} anomalies, {doc['total']['changepoints']} change points", err=True
    )


@analytics.command()
@_DATA
@_OUT
@click.option(
    "--golden", type=click.Path(dir_okay=False), default=None, help="Pinned golden config (JSON/YAML/TOML)."
)
@click.option("--entity", default=None, help="Show this entity's configuration too.")
def drift(data: str, output: str, golden: str | None, entity: str | None) -> None:
    """Config drift now (recomputed from the data: labels, setting gauges, stored snapshots)."""
    from sightglass.analytics.drift import ConfigTracker, DriftConfig

    gold = _golden(golden)
    with _store(data) as store:
        newest = _time(None, store)
        tr = ConfigTracker(DriftConfig(golden=gold), write_events=False)
        report = tr.step(store, newest)
        drifts = [d.to_dict() for d in tr.drifts()]
        changes = [
            {"ts_ms": e.ts_ms, "entity": e.entity.get("entity"), **dict(e.attributes)} for e in report.changes
        ]
        snap = tr.snapshot(entity) if entity else None
    if entity:
        drifts = [d for d in drifts if d["entity"] == entity]
        changes = [c for c in changes if c["entity"] == entity]
    doc: dict[str, Any] = {"drifts": drifts, "changes": changes}
    if snap is not None:
        doc["config"] = snap
    if output == "json":
        _echo(doc)
        return
    if snap is not None:
        _table(
            [[k, v["value"], _iso(v["since_ms"]), v["source"]] for k, v in snap.items()],
            ["KEY", "VALUE", "SINCE", "SOURCE"],
        )
    _table(
        [[d["entity"], d["key"], d["value"], d["expected"], d["reason"], d["group"]] for d in drifts],
        ["ENTITY", "KEY", "VALUE", "EXPECTED", "REASON", "PEER GROUP"],
    )
    click.echo(f"{len(drifts)} drifts; {len(changes)} changes in the data:", err=True)
    _table(
        [[_iso(c["ts_ms"]), c["entity"], c["key"], c["from"], c["to"]] for c in changes[-50:]],
        ["TIME", "ENTITY", "KEY", "FROM", "TO"],
    )


@analytics.command()
@_DATA
@_OUT
@_TIME
@click.option("--kind", type=click.Choice(["training", "inference"]), default=None)
def predictability(data: str, output: str, at: str | None, kind: str | None) -> None:
    """Per-workload predictability scores and the fleet's share of highly predictable ones."""
    from sightglass.analytics import views

    with _store(data) as store:
        doc = views.predictability(store, _time(at, store), kind=kind)
    if output == "json":
        _echo(doc)
        return
    if not doc["workloads"]:
        click.echo(
            "no predictability scores in this data: run `sightglass analytics run` (or the server) first",
            err=True,
        )
        return
    _table(
        [
            [w["workload"], w["kind"], f"{w['score']:.2f}", "yes" if w["highly_predictable"] else "no"]
            for w in doc["workloads"]
        ],
        ["WORKLOAD", "KIND", "SCORE", "HIGHLY PREDICTABLE"],
    )
    f = doc["fleet"]
    click.echo(
        f"fleet: {'-' if f is None else f'{f:.0%}'} of {doc['scored_workloads']} workloads highly predictable"
    )


@analytics.command()
@_DATA
@_OUT
@_TIME
@click.argument("name", required=False)
def kpis(data: str, output: str, at: str | None, name: str | None) -> None:
    """The KPI series (or, with NAME, their latest values)."""
    from sightglass.analytics import views

    if name is not None and name not in views.KPI_HELP:
        raise click.BadParameter(f"unknown KPI {name!r}; run without NAME to list them", param_hint="NAME")
    with _store(data) as store:
        doc = views.kpis(store, _time(at, store), name=name)
    if output == "json":
        _echo(doc)
        return
    if name is None:
        _table([[k["name"], k["series"], k["help"]] for k in doc["kpis"]], ["KPI", "SERIES", "MEANING"])
        return
    _table(
        [
            [
                ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())),
                f"{s['value']:.6g}",
                _iso(s["ts_ms"]),
            ]
            for s in doc["series"]
        ],
        ["LABELS", "VALUE", "AT"],
    )


def register(cli: click.Group) -> None:
    cli.add_command(analytics)
