"""Reports: roll-ups, formats, and hostile label values (HTML, CSV, terminal)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from sightglass.cost.ledger import Allocation, Gpu, Ledger, Workload, build_ledger
from sightglass.cost.prices import PriceSheet
from sightglass.cost.report import DIMENSIONS, render, report_dict, rollup

T0 = 1_767_225_600_000
HOUR = 3_600_000
SHEET = PriceSheet.from_dict(
    {"version": [{"effective": "2020-01-01", "gpu": {"H100": {"on_demand_usd_per_gpu_hour": "2"}}}]}
)
EVIL = Workload(
    "pod:ns/<script>alert(1)</script>",
    "pod",
    team='=HYPERLINK("http://x")',
    project="<b>p</b>",
    model="m\nodel",
    name="<img src=x onerror=alert(1)>",
)


def _ledger() -> Ledger:
    fleet = [
        Gpu("gpu:0", "node:n<1>", "NVIDIA H100 80GB HBM3"),
        Gpu("gpu:1", "node:n2", "NVIDIA H100 80GB HBM3"),
    ]
    allocs = [
        Allocation(EVIL, "gpu:0", T0, T0 + HOUR),
        Allocation(Workload("job:9", "job", team="ml", project="train"), "gpu:1", T0, T0 + HOUR // 2),
    ]
    return build_ledger(fleet, allocs, SHEET, T0, T0 + HOUR)


def test_every_dimension_reconciles() -> None:
    led = _ledger()
    for by in DIMENSIONS:
        rep = report_dict(led, by)
        assert rep["reconciliation"]["exact"], by
        assert sum(r["cost_micro_usd"] for r in rep["rows"]) == 4_000_000
    rows = {r.key: r.total_micro for r in rollup(led, "job")}
    assert rows == {"job:9": 1_000_000, "(pods)": 2_000_000, "(unallocated)": 1_000_000}
    with pytest.raises(ValueError, match="cannot group by"):
        rollup(led, "colour")
    with pytest.raises(ValueError, match="unknown format"):
        render(report_dict(led, "team"), "xlsx")


def test_hostile_labels_are_escaped() -> None:
    led = _ledger()
    html = render(report_dict(led, "workload"), "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    html = render(report_dict(led, "node"), "html")
    assert "n&lt;1&gt;" in html
    text = render(report_dict(led, "team"), "csv")
    cells = [row[0] for row in csv.reader(io.StringIO(text))]
    assert '\'=HYPERLINK("http://x")' in cells  # no formula for a spreadsheet to run
    js = json.loads(render(report_dict(led, "model"), "json"))
    assert {r["key"] for r in js["rows"]} == {"m\nodel", "(none)", "(unallocated)"}
    table = render(report_dict(led, "project"), "table")
    assert "<b>p</b>" in table and "reconciles exactly" in table


def test_public_names() -> None:
    import sightglass.cost as cost

    assert sorted(cost.__all__) == cost.__all__
    for name in cost.__all__:
        assert getattr(cost, name) is not None


def test_chargeback_recovers_the_fleet_cost_exactly() -> None:
    led = _ledger()
    rep = report_dict(led, "team", mode="chargeback")
    charges = {r["key"]: r["charge_micro_usd"] for r in rep["rows"]}
    # $1 unallocated is billed in proportion to what each team held ($2 and $1)
    assert charges == {'=HYPERLINK("http://x")': 2_666_667, "ml": 1_333_333, "(unallocated)": 0}
    assert sum(charges.values()) == led.fleet_micro and rep["reconciliation"]["exact"]
    assert "CHARGE $" in render(rep, "table") and "charge_usd" in render(rep, "csv").splitlines()[0]
    show = report_dict(led, "team")
    assert all("charge_usd" not in r for r in show["rows"])
    with pytest.raises(ValueError, match="showback or chargeback"):
        report_dict(led, "team", mode="invoice")
