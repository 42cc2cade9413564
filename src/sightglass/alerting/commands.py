"""``sightglass rules``, ``sightglass alerts``, ``sightglass incidents``, ``sightglass silences``.

``rules check`` works on files alone (like ``promtool check rules``); ``rules replay`` evaluates rules
over a stored span offline; the rest talk to the running server (``--server URL``, or the one that
holds ``--data``), kubectl-style: ``incidents list``, ``incidents get ID``, ``incidents ack ID``,
``incidents resolve ID``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)

data_option = click.option(
    "--data", type=click.Path(file_okay=False), envvar="SIGHTGLASS_DATA", default=None, help="Data directory."
)
server_option = click.option(
    "--server", default=None, help="URL of a running Sightglass [default: the one on --data]."
)
output_option = click.option(
    "-o", "--output", type=click.Choice(["table", "json", "wide"]), default="table", show_default=True
)


def _server(data: str | None, server: str | None) -> str:
    from sightglass.config import Config
    from sightglass.server import running_server_url

    if server:
        return server.rstrip("/")
    cfg = Config.load(None, data=data)
    url = running_server_url(cfg.data)
    if not url:
        raise click.ClickException(
            f"no running Sightglass server holds {cfg.data}; start one with `sightglass up` or pass --server URL"
        )
    return url.rstrip("/")


def _call(method: str, url: str, **kw: Any) -> Any:
    try:
        r = httpx.request(method, url, timeout=60, **kw)
    except httpx.HTTPError as e:
        raise click.ClickException(f"cannot reach {url}: {e}") from None
    try:
        body = r.json()
    except ValueError:
        raise click.ClickException(f"{url} answered HTTP {r.status_code} without JSON") from None
    if body.get("status") != "success":
        raise click.ClickException(f"{body.get('errorType', 'error')}: {body.get('error', r.text[:200])}")
    return body["data"]


# ---------------------------------------------------------------------- rules
@click.group()
def rules() -> None:
    """Check, generate and replay Prometheus rule files."""


@rules.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def rules_check(files: tuple[str, ...]) -> None:
    """Validate rule files (syntax, PromQL, templates, durations), like promtool check rules."""
    from sightglass.alerting.rules import RuleError, load_rule_file

    failed = False
    for f in files:
        click.echo(f"Checking {f}")
        try:
            groups = load_rule_file(f)
        except RuleError as e:
            failed = True
            click.echo(f"  FAILED: {len(e.errors)} problem(s):", err=True)
            for line in e.errors:
                click.echo(f"    {line}", err=True)
            continue
        n = sum(len(g.rules) for g in groups)
        click.echo(f"  SUCCESS: {n} rules found")
    if failed:
        sys.exit(1)


@rules.command("slo")
@click.argument("spec", required=False, type=click.Path(dir_okay=False, exists=True))
def rules_slo(spec: str | None) -> None:
    """Print the rules generated from an SLO spec (the built-in SLOs without SPEC)."""
    from sightglass.alerting.rules import RuleError, dump_rules
    from sightglass.alerting.slo import default_slo_path, load_slo_files, slo_rule_groups

    try:
        slos = load_slo_files([spec or default_slo_path()])
    except RuleError as e:
        raise click.ClickException("\n".join(e.errors)) from None
    click.echo(dump_rules(slo_rule_groups(slos)), nl=False)


@rules.command("default")
def rules_default() -> None:
    """Print the paths of the built-in AI-factory rule pack and SLO spec."""
    from sightglass.alerting.rules import default_rule_paths
    from sightglass.alerting.slo import default_slo_path

    for p in [*default_rule_paths(), default_slo_path()]:
        click.echo(str(p))


@rules.command("list")
@data_option
@server_option
@output_option
def rules_list(data: str | None, server: str | None, output: str) -> None:
    """The server's rules with their health and state (GET /api/v1/rules)."""
    d = _call("GET", _server(data, server) + "/api/v1/rules", params={"exclude_alerts": "true"})
    if output == "json":
        click.echo(json.dumps(d, indent=1))
        return
    t = Table("GROUP", "RULE", "TYPE", "STATE", "HEALTH", "LAST ERROR", header_style="bold")
    for g in d["groups"]:
        for r in g["rules"]:
            t.add_row(
                g["name"], r["name"], r["type"], r.get("state", "-"), r["health"], r.get("lastError", "")
            )
    console.print(t)


@rules.command("replay")
@data_option
@click.option("--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Rule files [default: the built-in pack and SLOs].")  # fmt: skip
@click.option("--start", required=True, help="Start (RFC 3339, Unix seconds, now-1h).")
@click.option("--end", default="now", show_default=True, help="End.")
@click.option("--inventory", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Topology inventory (the simulator's factory.json) for incident grouping.")  # fmt: skip
@output_option
def rules_replay(
    data: str | None, rule_files: tuple[str, ...], start: str, end: str, inventory: str | None, output: str
) -> None:
    """Evaluate rules over a stored span offline and show the alerts and incidents they give."""
    from sightglass.alerting.replay import replay_store

    try:
        report = replay_store(data, list(rule_files), start, end, inventory)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if output == "json":
        click.echo(json.dumps(report, indent=1, default=str))
        return
    err.print(
        f"{report['steps']} evaluation steps over {len(report['groups'])} groups in {report['seconds']:.2f} s"
    )
    _incident_table(report["incidents"], wide=output == "wide")


# ---------------------------------------------------------------------- alerts
@click.group()
def alerts() -> None:
    """Alerts of a running server."""


@alerts.command("list")
@data_option
@server_option
@output_option
def alerts_list(data: str | None, server: str | None, output: str) -> None:
    """Pending and firing alerts (GET /api/v1/alerts)."""
    d = _call("GET", _server(data, server) + "/api/v1/alerts")
    if output == "json":
        click.echo(json.dumps(d, indent=1))
        return
    t = Table("ALERT", "STATE", "SEVERITY", "ACTIVE SINCE", "VALUE", "SUMMARY", header_style="bold")
    for a in d["alerts"]:
        lab = a["labels"]
        t.add_row(lab.get("alertname", ""), a["state"], lab.get("severity", ""), a["activeAt"], a["value"],
                  a["annotations"].get("summary", ""))  # fmt: skip
    console.print(t)


# ---------------------------------------------------------------------- incidents
def _incident_table(rows: list[dict[str, Any]], *, wide: bool = False) -> None:
    if not rows:
        err.print("[dim]no incidents[/]")
        return
    t = Table("ID", "STATE", "SEVERITY", "OPENED", "ALERTS", "CAUSE", "TITLE", header_style="bold")
    for r in rows:
        cause = r.get("cause") or {}
        c = str(cause.get("entity") or "-") + (f" ({cause['fault']})" if cause.get("fault") else "")
        title = r["title"] if wide or len(r["title"]) < 70 else r["title"][:67] + "..."
        t.add_row(
            r["id"],
            r["state"],
            r["severity"],
            r["opened"],
            f"{r['alerts_firing']}/{r['alerts_total']}",
            c,
            title,
        )
    console.print(t)


@click.group()
def incidents() -> None:
    """Incidents: alerts grouped by cause, with the RCA attached (list, get, ack, resolve)."""


@incidents.command("list")
@data_option
@server_option
@click.option("--state", type=click.Choice(["open", "acknowledged", "resolved"]), default=None)
@output_option
def incidents_list(data: str | None, server: str | None, state: str | None, output: str) -> None:
    """List incidents, newest first."""
    params = {"state": state} if state else {}
    rows = _call("GET", _server(data, server) + "/api/v1/incidents", params=params)
    if output == "json":
        click.echo(json.dumps(rows, indent=1))
    else:
        _incident_table(rows, wide=output == "wide")


@incidents.command("get")
@click.argument("incident_id")
@data_option
@server_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def incidents_get(incident_id: str, data: str | None, server: str | None, output: str) -> None:
    """Show one incident: cause, RCA, alerts and timeline."""
    d = _call("GET", _server(data, server) + f"/api/v1/incidents/{incident_id}")
    if output == "json":
        click.echo(json.dumps(d, indent=1))
        return
    console.print(f"[bold]{d['id']}[/]  {d['title']}")
    console.print(f"state {d['state']}  severity {d['severity']}  opened {d['opened']}")
    cause = d.get("cause") or {}
    if cause:
        console.print(
            f"cause {cause.get('entity')} ({cause.get('source')}){' - ' + cause['fault'] if cause.get('fault') else ''}"
        )
        if cause.get("action"):
            console.print(f"action {cause['action']}")
    if d.get("rca_note"):
        console.print(f"[yellow]{d['rca_note']}[/]")
    t = Table("ALERT", "STATE", "ENTITY", "GROUPED BY", header_style="bold")
    for a in d["alerts"]:
        t.add_row(a["alertname"], a["state"], str(a.get("entity")), a.get("grouped_by", ""))
    console.print(t)
    console.print("[bold]timeline[/]")
    for ev in d["timeline"]:
        console.print(f"  {ev['ts']}  {ev['event']:<16} {ev['detail']}")


def _action(action: str, incident_id: str, data: str | None, server: str | None, by: str, note: str) -> None:
    d = _call(
        "POST",
        _server(data, server) + f"/api/v1/incidents/{incident_id}/{action}",
        json={"by": by, "note": note},
    )
    click.echo(f"incident {d['id']} {d['state']}")


@incidents.command("ack")
@click.argument("incident_id")
@data_option
@server_option
@click.option("--by", default="", help="Who acknowledges it.")
@click.option("--note", default="", help="A note for the timeline.")
def incidents_ack(incident_id: str, data: str | None, server: str | None, by: str, note: str) -> None:
    """Acknowledge an incident (open → acknowledged)."""
    _action("ack", incident_id, data, server, by, note)


@incidents.command("resolve")
@click.argument("incident_id")
@data_option
@server_option
@click.option("--by", default="", help="Who resolves it.")
@click.option("--note", default="", help="A note for the timeline.")
def incidents_resolve(incident_id: str, data: str | None, server: str | None, by: str, note: str) -> None:
    """Resolve an incident by hand."""
    _action("resolve", incident_id, data, server, by, note)


# ---------------------------------------------------------------------- silences
@click.group()
def silences() -> None:
    """Silences (Alertmanager's): mute notifications of matching alerts for a while."""


@silences.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default="2h", show_default=True)
@click.option("--by", "created_by", default="", help="Author.")
@click.option("--comment", default="", help="Why.")
@data_option
@server_option
def silences_add(
    matchers: tuple[str, ...],
    duration: str,
    created_by: str,
    comment: str,
    data: str | None,
    server: str | None,
) -> None:
    """Add a silence: MATCHERS like alertname=GpuIdleHeld Hostname=~"node-0[1-4]"."""
    import re

    ms = []
    for m in matchers:
        mm = re.fullmatch(r"([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)", m)
        if not mm:
            raise click.BadParameter(f"{m!r} is not NAME=VALUE, NAME!=VALUE, NAME=~RE or NAME!~RE")
        name, op, value = mm.groups()
        ms.append(
            {"name": name, "value": value.strip('"'), "isRegex": "~" in op, "isEqual": not op.startswith("!")}
        )
    body = {"matchers": ms, "endsAt": _ends(duration), "createdBy": created_by, "comment": comment}
    d = _call("POST", _server(data, server) + "/api/v1/silences", json=body)
    click.echo(f"silence {d['silenceID']}")


def _ends(duration: str) -> float:
    import time

    from sightglass.config import parse_duration_ms

    try:
        return time.time() + parse_duration_ms(duration) / 1000
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@silences.command("list")
@data_option
@server_option
def silences_list(data: str | None, server: str | None) -> None:
    """List silences."""
    rows = _call("GET", _server(data, server) + "/api/v1/silences")
    t = Table("ID", "STATE", "MATCHERS", "ENDS", "BY", "COMMENT", header_style="bold")
    for s in rows:
        ms = " ".join(
            f"{m['name']}{'=' if m['isEqual'] else '!'}{'~' if m['isRegex'] else ''}{m['value']}"
            for m in s["matchers"]
        )
        t.add_row(s["id"], s["status"]["state"], ms, s["endsAt"], s["createdBy"], s["comment"])
    console.print(t)


@silences.command("expire")
@click.argument("silence_id")
@data_option
@server_option
def silences_expire(silence_id: str, data: str | None, server: str | None) -> None:
    """Expire a silence now."""
    _call("DELETE", _server(data, server) + f"/api/v1/silences/{silence_id}")
    click.echo(f"silence {silence_id} expired")


# ---------------------------------------------------------------------- diagnostics
@click.group()
def diagnostics() -> None:
    """GPU diagnostic tasks incidents asked the agents for (replay, dcgmi diag), and their results."""


def _task_line(t: dict[str, Any]) -> tuple[str, str]:
    res = t.get("results") or {}
    failed = sorted(int(g) for g, r in res.items() if r.get("status") in ("fail", "mismatch"))
    word = "differed" if t.get("kind") == "replay" else "failed"
    if t["state"] in ("done",) and res:
        if failed:
            summary = f"{len(failed)} {word} (GPU {', '.join(map(str, failed))})"
        elif t.get("kind") == "replay":
            sts = sorted({str(r.get("status")) for r in res.values()})
            summary = f"{len(res)} {'matched' if sts == ['match'] else '/'.join(sts)}"
        else:
            summary = f"{len(res)} passed"
    else:
        summary = t.get("error") or "-"
    return summary, ",".join(str(g["index"]) for g in t["gpus"])


@diagnostics.command("list")
@data_option
@server_option
@click.option("--incident", default=None, help="Only this incident's tasks.")
@click.option("--node", default=None, help="Only this node's tasks.")
@output_option
def diagnostics_list(data: str | None, server: str | None, incident: str | None, node: str | None, output: str) -> None:
    """List diagnostic tasks, oldest first."""
    params = {k: v for k, v in {"incident": incident, "node": node}.items() if v}
    rows = _call("GET", _server(data, server) + "/api/v1/diagnostics", params=params)
    if output == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("No diagnostic tasks.")
        return
    from sightglass.alerting.evaluator import rfc3339

    t = Table(box=None, header_style="bold")
    for c in ["ID", "INCIDENT", "NODE", "KIND", "STATE", "GPUS", "RESULT", *(["REQUESTED", "FINISHED"] if output == "wide" else [])]:
        t.add_column(c)
    for r in rows:
        summary, gpus = _task_line(r)
        extra = [rfc3339(r["requested_ms"]), rfc3339(r["finished_ms"]) if r.get("finished_ms") else "-"] if output == "wide" else []
        kind = "replay" if r.get("kind") == "replay" else f"-r {r['level']}"  # dcgmi diag's run level
        t.add_row(r["id"], r["incident"], r["node"], kind, r["state"], gpus, summary, *extra)
    console.print(t)


@diagnostics.command("get")
@click.argument("task_id")
@data_option
@server_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def diagnostics_get(task_id: str, data: str | None, server: str | None, output: str) -> None:
    """Show one diagnostic task: its GPUs and each GPU's result."""
    d = _call("GET", _server(data, server) + f"/api/v1/diagnostics/{task_id}")
    if output == "json":
        click.echo(json.dumps(d, indent=1))
        return
    summary, _ = _task_line(d)
    what = f"replay (seed {d.get('seed')})" if d.get("kind") == "replay" else f"dcgmi diag -r {d['level']}"
    click.echo(f"{d['id']}  incident {d['incident']}  node {d['node']}  {what}  {d['state']}: {summary}")
    for g in d["gpus"]:
        r = (d.get("results") or {}).get(str(g["index"]), {})
        failed = f" failed: {', '.join(r['failed'])}" if r.get("failed") else ""
        if r.get("checksum"):
            failed = f" checksum {r['checksum'][:16]}"
        click.echo(f"  GPU {g['index']} {g['uuid']}: {r.get('status', 'pending')}{failed}")


def register(cli: click.Group) -> None:
    cli.add_command(diagnostics)
    cli.add_command(rules)
    cli.add_command(alerts)
    cli.add_command(incidents)
    cli.add_command(silences)
