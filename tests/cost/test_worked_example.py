"""The worked example of docs/cost.md, read from the page and checked number by number."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from sightglass.cost.ledger import Allocation, Gpu, Workload, build_ledger
from sightglass.cost.prices import PriceSheet
from sightglass.cost.report import _usd
from sightglass.timeutil import parse_time_ms

DOC = Path(__file__).resolve().parents[2] / "docs" / "cost.md"
DAY = "2026-01-01T"


def _section() -> str:
    text = DOC.read_text()
    start = text.index("### Worked example")
    return text[start : text.index("\n## ", start)]


def _table(section: str, header: str) -> list[dict[str, str]]:
    lines = section.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header))
    cols = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for ln in lines[i + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append(dict(zip(cols, [c.strip() for c in ln.strip("|").split("|")], strict=True)))
    return rows


def _t(hhmm: str) -> int:
    return parse_time_ms(f"{DAY}{hhmm}:00Z")


def test_worked_example_matches_the_docs() -> None:
    sec = _section()
    toml = re.search(r"```toml\n(.*?)```", sec, re.S)
    assert toml
    sheet = PriceSheet.from_toml(toml.group(1), "docs/cost.md")
    model = "NVIDIA H100 80GB HBM3"
    fleet = [Gpu(f"gpu:{g}", "node:n1", model) for g in "ABC"]
    allocs = []
    for r in _table(sec, "| gpu | holder |"):
        kind = r["holder"].split(":", 1)[0]
        share = Fraction(r["share"]) if r["share"] else None
        src = "mig-profile" if share is not None else "exclusive"
        w = Workload(r["holder"], kind)
        allocs.append(Allocation(w, f"gpu:{r['gpu']}", _t(r["from"]), _t(r["to"]), share, src))
    idle = {"gpu:A": [(_t("11:30"), _t("12:30"))]}

    def energy(gpu: str, a: int, b: int) -> Fraction | None:
        return Fraction(400 * (b - a), 1000) if gpu == "gpu:A" else None  # 400 W, in joules

    led = build_ledger(fleet, allocs, sheet, _t("10:00"), _t("14:00"), idle=idle, energy=energy)
    led.check()
    want = _table(sec, "| holder | gpu | category |")
    fleet_row = next(r for r in want if r["holder"] == "fleet")
    got = {}
    for ln in led.lines:
        holder = ln.workload.id if ln.workload else "(unallocated)"
        got[(holder, ln.gpu.removeprefix("gpu:"), ln.category)] = ln
    rows = [r for r in want if r["holder"] != "fleet"]
    assert len(got) == len(rows)
    for r in rows:
        ln = got[(r["holder"], r["gpu"], r["category"])]
        assert _usd(ln.micro) == r["cost $"], r
        assert abs(float(ln.energy_j) / 3.6e6 - float(r["kWh"])) < 1e-12, r
        assert abs(float(ln.co2e_g) / 1000 - float(r["CO2e kg"])) < 1e-9, r
    assert _usd(led.fleet_micro) == fleet_row["cost $"]
    assert abs(sum(float(ln.energy_j) for ln in led.lines) / 3.6e6 - float(fleet_row["kWh"])) < 1e-12
    cats = led.category_micro()
    assert (_usd(cats["used"]), _usd(cats["idle_held"]), _usd(cats["unallocated"])) == (
        "17.285714",
        "2.500000",
        "10.214286",
    )
    # time-slicing without shares is an equal split marked low-confidence
    assert {got[("pod:ml/a", "B", "used")].confidence, got[("pod:ml/b", "B", "used")].confidence} == {"low"}
