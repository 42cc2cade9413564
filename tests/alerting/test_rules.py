"""Rule files: what loads, what is refused (with the place named), the default pack, templates, SLOs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from sightglass.alerting.rules import (
    MAX_RULE_FILE_BYTES,
    RuleError,
    default_rule_paths,
    dump_rules,
    load_rule_file,
    load_rule_text,
)
from sightglass.alerting.slo import default_slo_path, load_slo_files, parse_slos, slo_rule_groups
from sightglass.alerting.template import TemplateData, expand, go_float, humanize, parse_template
from sightglass.cli import cli

GOOD = """
groups:
  - name: gpu
    interval: 30s
    labels: {team: infra}
    rules:
      - record: node:gpu_power_watts:sum
        expr: sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)
      - alert: GpuTooHot
        expr: DCGM_FI_DEV_GPU_TEMP > 85
        for: 5m
        keep_firing_for: 1m
        labels: {severity: warning}
        annotations:
          summary: "GPU {{ $labels.gpu }} at {{ $value }} °C"
"""


def test_good_file_loads_with_group_labels_and_durations() -> None:
    (g,) = load_rule_text(GOOD, "good.yaml")
    assert g.name == "gpu" and g.interval_ms == 30_000
    rec, alert = g.rules
    assert rec.kind == "recording" and rec.labels == {"team": "infra"}
    assert alert.kind == "alerting" and alert.for_ms == 300_000 and alert.keep_firing_for_ms == 60_000
    assert alert.labels == {"team": "infra", "severity": "warning"}
    # round trip through our own dump
    (g2,) = load_rule_text(dump_rules([g]))
    assert [r.to_yaml_dict() for r in g2.rules] == [r.to_yaml_dict() for r in g.rules]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("groups: [{name: a, rules: [{alert: X}]}]", "'expr' is required"),
        (
            "groups: [{name: a, rules: [{alert: X, record: y, expr: up}]}]",
            "exactly one of 'record' or 'alert'",
        ),
        ("groups: [{name: a, rules: [{alert: X, expr: 'sum(up'}]}]", "expr:"),
        ("groups: [{name: a, rules: [{record: 'bad name', expr: up}]}]", "invalid recording rule name"),
        ("groups: [{name: a, rules: [{record: x, expr: up, for: 5m}]}]", "invalid field 'for'"),
        ("groups: [{name: a, rules: [{alert: X, expr: up, for: soon}]}]", "invalid duration"),
        ("groups: [{name: a, rules: [{alert: X, expr: up, labels: {'1bad': x}}]}]", "invalid label name"),
        ("groups: [{name: a, rules: [{alert: X, expr: up, labels: {__x: y}}]}]", "reserved"),
        (
            "groups: [{name: a, rules: [{alert: X, expr: up, annotations: {s: '{{ if x }}'}}]}]",
            "not supported",
        ),
        (
            "groups: [{name: a, rules: [{alert: X, expr: up, annotations: {s: '{{ $nope }}'}}]}]",
            "undefined variable",
        ),
        (
            "groups: [{name: a, rules: [{alert: X, expr: up, annotations: {s: '{{ $labels.x'}}]}]",
            "unclosed action",
        ),
        ("groups: [{name: a, rules: [{alert: X, expr: up, severity: page}]}]", "unknown field(s) severity"),
        ("groups: [{name: a}, {name: a}]", "repeated in the same file"),
        ("groups: [{rules: []}]", "group name must be a non-empty string"),
        ("groups: {a: 1}", "'groups' must be a list"),
        ("rules: []", "unknown field(s) rules"),
        ("- just\n- a list", "expected a mapping with 'groups'"),
        ("groups: [{name: a, rules: [{alert: X, expr: up, labels: {a: [1]}}]}]", "expected a string value"),
        ("groups: [{name: a, limit: -1, rules: []}]", "limit must be a non-negative integer"),
        ("groups: [\n  {name: a", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_place(text: str, needle: str) -> None:
    with pytest.raises(RuleError) as e:
        load_rule_text(text, "bad.yaml")
    assert any(needle in line for line in e.value.errors), e.value.errors
    assert all(line.startswith("bad.yaml") for line in e.value.errors)


def test_every_problem_is_reported_at_once() -> None:
    text = (
        "groups: [{name: a, rules: [{alert: X}, {record: 'bad name', expr: up}, {alert: Y, expr: 'up +'}]}]"
    )
    with pytest.raises(RuleError) as e:
        load_rule_text(text, "f.yaml")
    assert len(e.value.errors) == 3
    assert "rule 1" in e.value.errors[0] and "rule 3" in e.value.errors[2]


def test_oversized_and_binary_files(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_RULE_FILE_BYTES + 1))
    with pytest.raises(RuleError, match="limit"):
        load_rule_file(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00groups")
    with pytest.raises(RuleError, match="cannot read"):
        load_rule_file(binary)
    with pytest.raises(RuleError, match="cannot read"):
        load_rule_file(tmp_path / "missing.yaml")


def test_default_pack_loads_and_every_alert_has_a_runbook() -> None:
    paths = default_rule_paths()
    assert paths, "the default rule pack is missing"
    groups = [g for p in paths for g in load_rule_file(p)]
    alerts = [r for g in groups for r in g.rules if r.kind == "alerting"]
    names = {r.name for r in alerts}
    for needed in (
        "GpuCriticalXid", "GpuFellOffBus", "GpuThermalThrottling", "GpuPowerThrottling", "GpuRowRemapFailure",
        "NvlinkErrors", "IbPortDown", "IbLinkFlapping", "IbPortErrors", "GpuIdleHeld", "DataPipelineStale",
        "TrainingStraggler", "TrainingJobHang", "CollectorDown",
    ):  # fmt: skip
        assert needed in names
    for r in alerts:
        assert r.annotations.get("runbook") and r.annotations.get("runbook_url"), r.name
        assert r.labels.get("severity") in ("info", "warning", "critical"), r.name


def test_default_pack_uses_metric_names_the_simulator_emits(leaf_factory: Any) -> None:
    """Every metric the pack reads is one the simulated exporters wrote into the store (or one of
    our KPIs/recordings, or the scraper's ``up``)."""
    import promql_parser

    emitted = set(leaf_factory.store.label_values("__name__"))
    ours = {
        "sightglass_gpu_idle_held",
        "up",
        "sightglass:training_progress:bool",
        "sightglass:training_step_ok:bool",
    }

    def selectors(node: object, out: set[str]) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            out.add(node.name)  # type: ignore[attr-defined]
            return
        for attr in ("expr", "lhs", "rhs", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None and type(child).__name__ not in ("str", "int", "float", "NoneType"):
                selectors(child, out)
        for a in getattr(node, "args", None) or []:
            selectors(a, out)

    used: set[str] = set()
    for p in default_rule_paths():
        for g in load_rule_file(p):
            for r in g.rules:
                selectors(promql_parser.parse(r.expr), used)
    missing = sorted(m for m in used if m not in emitted and m not in ours)
    assert not missing, f"rules read metrics nothing emits: {missing}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_promtool_accepts_default_pack_and_generated_slo_rules(tmp_path: Path) -> None:
    gen = tmp_path / "slo-rules.yaml"
    gen.write_text(dump_rules(slo_rule_groups(load_slo_files([default_slo_path()]))))
    out = subprocess.run(
        ["promtool", "check", "rules", *map(str, default_rule_paths()), str(gen)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_check_cli(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text("groups: [{name: a, rules: [{alert: X, expr: 'sum(up'}]}]")
    r = CliRunner().invoke(cli, ["rules", "check", str(good)])
    assert r.exit_code == 0 and "SUCCESS: 2 rules found" in r.output
    r = CliRunner().invoke(cli, ["rules", "check", str(good), str(bad)])
    assert r.exit_code == 1
    assert "FAILED" in r.output and "bad.yaml" in r.output


# ---------------------------------------------------------------------- templates
def test_templates_render_like_prometheus() -> None:
    d = TemplateData({"gpu": "3", "Hostname": "n1"}, 1234567.0, {"cluster": "c1"})
    assert expand("{{ $labels.gpu }}/{{ .Labels.Hostname }}", d) == "3/n1"
    assert expand("{{ $value }}", d) == "1.234567e+06"  # Go's %v
    assert expand("{{ $value | humanize }}", d) == "1.235M"
    assert expand('{{ printf "%.1f" $value }}', d) == "1234567.0"
    assert expand("{{ $labels.missing }}", d) == "<no value>"
    assert expand('{{ index $labels "gpu" }} {{ $externalLabels.cluster }}', d) == "3 c1"
    assert expand("a {{- ` b` -}} c", d) == "a bc"
    assert expand("{{/* a comment */}}x", d) == "x"
    assert expand("{{ 0.25 | humanizePercentage }}", d) == "25%"
    assert expand("{{ 3725 | humanizeDuration }}", d) == "1h 2m 5s"
    assert go_float(88.0) == "88" and go_float(0.5) == "0.5" and go_float(1e-5) == "1e-05"
    assert humanize(0.0042) == "4.2m"


@pytest.mark.parametrize(
    "bad", ["{{ range $x }}", "{{ nosuchfn $value }}", "{{ $value | $labels }}", "{{ | }}"]
)
def test_bad_templates_fail_to_parse(bad: str) -> None:
    from sightglass.alerting.template import TemplateError

    with pytest.raises(TemplateError):
        parse_template(bad)


# ---------------------------------------------------------------------- SLOs
def test_slo_spec_generates_workbook_burn_rate_rules() -> None:
    slos = load_slo_files([default_slo_path()])
    assert {s.name for s in slos} >= {"inference-ttft", "inference-itl", "inference-availability",
                                      "training-goodput", "training-step-time"}  # fmt: skip
    groups = slo_rule_groups(slos)
    ttft = next(g for g in groups if g.name == "slo:inference-ttft")
    names = [r.name for r in ttft.rules]
    for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"slo:sli_error:ratio_rate{w}" in names
    assert "slo:error_budget:remaining_ratio" in names
    page = next(r for r in ttft.rules if r.name == "SLOErrorBudgetBurn")
    # 14.4x over 1h and 5m, or 6x over 6h and 30m, of a 1 % budget
    assert "ratio_rate1h" in page.expr and "ratio_rate5m" in page.expr and "> 0.144" in page.expr
    assert "ratio_rate6h" in page.expr and "ratio_rate30m" in page.expr and "> 0.06" in page.expr
    assert page.labels["severity"] == "critical" and page.labels["slo"] == "inference-ttft"
    ticket = next(r for r in ttft.rules if r.name == "SLOErrorBudgetBurnSlow")
    assert "> 0.03" in ticket.expr and "> 0.01" in ticket.expr and ticket.labels["severity"] == "warning"
    # the generated rules are themselves valid rule files
    load_rule_text(dump_rules(groups))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"slos": [{"name": "a", "objective": 1.5, "sli": {"good_ratio": "x[$window]"}}]}, "objective"),
        ({"slos": [{"name": "a", "objective": 0.9, "sli": {"good": "x[$window]"}}]}, "exactly one of"),
        ({"slos": [{"name": "a", "objective": 0.9, "sli": {"good_ratio": "x[5m]"}}]}, "$window"),
        (
            {"slos": [{"name": "a", "objective": 0.9, "window": "1h", "sli": {"good_ratio": "x[$window]"}}]},
            "at least 1d",
        ),
        ({"slos": [{"name": "a b", "objective": 0.9}]}, "name must be"),
        (
            {"slos": [{"name": "a", "objective": 0.9, "sli": {"good_ratio": "x[$window]"}, "x": 1}]},
            "unknown field",
        ),
        ({"nope": []}, "expected a mapping with a list 'slos'"),
    ],
)
def test_bad_slo_specs(spec: dict[str, object], needle: str) -> None:
    with pytest.raises(RuleError) as e:
        parse_slos(yaml.safe_load(yaml.safe_dump(spec)), "s.yaml")
    assert any(needle in x for x in e.value.errors), e.value.errors


def test_rules_slo_cli_prints_loadable_rules() -> None:
    r = CliRunner().invoke(cli, ["rules", "slo"])
    assert r.exit_code == 0
    groups = load_rule_text(r.output)
    assert any(g.name == "slo:training-goodput" for g in groups)
