"""End to end on a real ``sightglass up``: a simulated leaf-switch failure in its store, rules from a
config file, evaluation driven over the API, one incident, one webhook group, a real Alertmanager
accepting the alerts, and the kubectl-style CLI against the server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from sightglass.cli import cli

RULES = """
groups:
  - name: fabric
    interval: 30s
    rules:
      - alert: IbSwitchDown
        expr: ib_switch_up == 0
        for: 1m
        labels: {severity: critical}
        annotations: {summary: 'switch {{ $labels.switch }} down', runbook: r, runbook_url: u}
      - alert: IbPortDown
        expr: node_infiniband_state_id != 4
        for: 1m
        labels: {severity: critical}
        annotations: {summary: 'port {{ $labels.device }} on {{ $labels.instance }}', runbook: r, runbook_url: u}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sightglass_up_alerts_groups_and_notifies(tmp_path: Path, alertmanager: Any) -> None:
    from sightglass.simulate.fast import run_ingest
    from sightglass.simulate.faults import ScriptedFault
    from sightglass.store.duckdb import DuckDBStore
    from sightglass.timeutil import parse_time_ms

    data = tmp_path / "data"
    start = parse_time_ms("2026-11-16T00:00:00Z")
    with DuckDBStore(data) as store:
        _, sim = run_ingest(
            store, nodes=8, duration_s=12 * 60, seed=7, start_ms=start,
            scripted=[ScriptedFault("leaf_switch_failure", 5 * 60_000, 6 * 60_000, {"switch": "leaf-02"})],
        )  # fmt: skip
    inventory = tmp_path / "factory.json"
    inventory.write_text(json.dumps(sim.factory.describe()))
    r = CliRunner().invoke(cli, ["topology", "import", "--data", str(data), str(inventory)])
    assert r.exit_code == 0, r.output
    (tmp_path / "rules.yaml").write_text(RULES)
    hook = alertmanager.webhook
    (tmp_path / "sightglass.toml").write_text(
        "[alerting]\n"
        "default_rules = false\n"
        "default_slos = false\n"
        f"rule_files = ['{tmp_path / 'rules.yaml'}']\n"
        "evaluation_interval = '1h'\n"  # the test drives evaluation itself
        "external_url = 'http://sightglass.test'\n"
        "[[alerting.notifiers]]\n"
        f"type = 'webhook'\nurl = '{hook.url}/incident'\nbackoff = '50ms'\n"
        "[[alerting.notifiers]]\n"
        f"type = 'alertmanager'\nurl = '{alertmanager.url}'\n"
    )
    port = _free_port()
    log = (tmp_path / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sightglass.cli", "up", "--data", str(data), "--listen", f"127.0.0.1:{port}",
         "--config", str(tmp_path / "sightglass.toml")],
        stdout=subprocess.DEVNULL, stderr=log,
        env={k: v for k, v in os.environ.items() if k != "SIGHTGLASS_CONFIG"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "sightglass up did not start"
            time.sleep(0.2)
        for k in range(8, 19):  # 4 min to 9 min of simulated time, every 30 s
            r = httpx.post(
                url + "/api/v1/alerting/evaluate", params={"time": (start + k * 30_000) / 1000}, timeout=60
            )
            assert r.status_code == 200, r.text
        alerts = httpx.get(url + "/api/v1/alerts").json()["data"]["alerts"]
        names = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
        assert names.count("IbSwitchDown") == 1 and names.count("IbPortDown") == 32
        incs = httpx.get(url + "/api/v1/incidents").json()["data"]
        assert len(incs) == 1, [i["title"] for i in incs]
        inc = incs[0]
        assert inc["cause"]["entity"] == "switch:leaf-02" and inc["alerts_total"] == 33
        # the webhook got the incident as one group (sent again only as it changed), never per port
        posts = [p for p in hook.wait(1) if p.path == "/incident"]
        assert posts and {p.body["groupKey"] for p in posts} == {'{}:{incident="' + inc["id"] + '"}'}
        assert len(posts) <= 3
        assert posts[-1].body["commonAnnotations"]["root_cause"].startswith("switch:leaf-02")
        # the real Alertmanager accepted every POST
        status = httpx.get(url + "/api/v1/alerting/status").json()["data"]["notifications"]
        am = [d for d in status["recent"] if d["kind"] == "alertmanager"]
        assert am and all(d["status"] == "ok" and d["http_status"] == 200 for d in am), am
        metrics = httpx.get(url + "/metrics").text
        assert 'sightglass_alerting_incidents{state="open"} 1.0' in metrics
        assert 'sightglass_alerting_notifications_total{status="ok",type="alertmanager"}' in metrics
        assert "sightglass_alerting_evaluation_duration_seconds_count 11.0" in metrics
        # kubectl-style CLI against the running server
        r = CliRunner().invoke(cli, ["incidents", "list", "--server", url, "-o", "json"])
        assert r.exit_code == 0 and json.loads(r.output)[0]["id"] == inc["id"]
        r = CliRunner().invoke(cli, ["incidents", "get", inc["id"], "--server", url])
        assert r.exit_code == 0 and "switch:leaf-02" in r.output and "timeline" in r.output
        r = CliRunner().invoke(cli, ["incidents", "ack", inc["id"], "--server", url, "--by", "ci"])
        assert r.exit_code == 0 and "acknowledged" in r.output
        r = CliRunner().invoke(cli, ["incidents", "ack", inc["id"], "--server", url])
        assert r.exit_code == 1 and "already acknowledged" in r.output
        r = CliRunner().invoke(cli, ["alerts", "list", "--server", url])
        assert r.exit_code == 0 and "IbSwitchDown" in r.output
        r = CliRunner().invoke(cli, ["rules", "list", "--server", url])
        assert r.exit_code == 0 and "IbPortDown" in r.output
        r = CliRunner().invoke(
            cli, ["silences", "add", "alertname=IbPortDown", "--server", url, "--comment", "ci"]
        )
        assert r.exit_code == 0 and r.output.startswith("silence ")
        r = CliRunner().invoke(cli, ["incidents", "resolve", inc["id"], "--server", url])
        assert r.exit_code == 0 and "resolved" in r.output
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # the same span offline, with the store released: `rules replay` finds the same single incident
    r = CliRunner().invoke(
        cli,
        ["rules", "replay", "--data", str(data), "--rules", str(tmp_path / "rules.yaml"), "--inventory", str(inventory),
         "--start", str((start + 4 * 60_000) / 1000), "--end", str((start + 9 * 60_000) / 1000), "-o", "json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert not report["rule_errors"] and len(report["incidents"]) == 1
    assert (
        report["incidents"][0]["anchor"] == "switch:leaf-02" and report["incidents"][0]["alerts_total"] == 33
    )
    r = CliRunner().invoke(cli, ["rules", "replay", "--data", str(data), "--start", "now", "--end", "now-1h"])
    assert r.exit_code == 1 and "--end must be after --start" in r.output


def test_bad_alerting_config_stops_the_server_with_the_setting_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[alerting]\nevaluation_interval = "soon"\n[[alerting.notifiers]]\ntype = "pager"\nurl = "ftp://x"\n'
    )
    r = CliRunner().invoke(
        cli, ["up", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--config", str(bad)]
    )
    assert r.exit_code == 1
    for needle in ("alerting.evaluation_interval", "alerting.notifiers.0.type", "alerting.notifiers.0.url"):
        assert needle in r.output, r.output
    missing = tmp_path / "bad2.toml"
    missing.write_text(f'[alerting]\nrule_files = ["{tmp_path / "nope.yaml"}"]\n')
    r = CliRunner().invoke(
        cli, ["up", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--config", str(missing)]
    )
    assert r.exit_code == 1 and "rules do not load" in r.output and "nope.yaml: cannot read" in r.output
