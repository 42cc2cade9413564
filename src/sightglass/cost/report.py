"""Roll the ledger up by team, project, model, job (workload) or node; render table/csv/json/html.

Every report carries its reconciliation: Σ rows (used + idle-held) + unallocated = fleet cost, in
integer micro-dollars. Chargeback charges a group for what it held (used + idle-held); showback
shows the same figures without the bill. Unallocated capacity is its own row, never spread.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sightglass.cost.ledger import CONFIDENCE, IDLE_HELD, UNALLOCATED, USED, Ledger, Line
from sightglass.cost.prices import MS_PER_HOUR
from sightglass.timeutil import format_ts

DIMENSIONS = ("team", "project", "model", "service", "job", "workload", "node", "gpu_model")
FORMATS = ("table", "csv", "json", "html")
UNALLOCATED_KEY = "(unallocated)"
NONE_KEY = "(none)"


@dataclass(slots=True)
class Row:
    key: str
    used_micro: int = 0
    idle_held_micro: int = 0
    unallocated_micro: int = 0
    gpu_ms: Fraction = Fraction(0)
    used_gpu_ms: Fraction = Fraction(0)
    idle_gpu_ms: Fraction = Fraction(0)
    energy_j: Fraction = Fraction(0)
    co2e_g: Fraction = Fraction(0)
    confidence: str = "high"
    low_confidence_micro: int = 0
    workloads: set[str] = field(default_factory=set)

    @property
    def total_micro(self) -> int:
        return self.used_micro + self.idle_held_micro + self.unallocated_micro

    def add(self, ln: Line) -> None:
        if ln.category == USED:
            self.used_micro += ln.micro
            self.used_gpu_ms += ln.gpu_ms
        elif ln.category == IDLE_HELD:
            self.idle_held_micro += ln.micro
            self.idle_gpu_ms += ln.gpu_ms
        else:
            self.unallocated_micro += ln.micro
        self.gpu_ms += ln.gpu_ms
        self.energy_j += ln.energy_j
        self.co2e_g += ln.co2e_g
        if CONFIDENCE.index(ln.confidence) > CONFIDENCE.index(self.confidence):
            self.confidence = ln.confidence
        if ln.confidence == "low":
            self.low_confidence_micro += ln.micro
        if ln.workload:
            self.workloads.add(ln.workload.id)

    def to_dict(self) -> dict[str, Any]:
        kwh = float(self.energy_j) / 3.6e6
        return {
            "key": self.key,
            "cost_usd": _usd(self.total_micro),
            "used_usd": _usd(self.used_micro),
            "idle_held_usd": _usd(self.idle_held_micro),
            "unallocated_usd": _usd(self.unallocated_micro),
            "cost_micro_usd": self.total_micro,
            "gpu_hours": round(float(self.gpu_ms) / MS_PER_HOUR, 6),
            "idle_held_gpu_hours": round(float(self.idle_gpu_ms) / MS_PER_HOUR, 6),
            "energy_kwh": round(kwh, 6),
            "co2e_kg": round(float(self.co2e_g) / 1000, 6),
            "confidence": self.confidence,
            "low_confidence_usd": _usd(self.low_confidence_micro),
            "workloads": len(self.workloads),
        }


def _usd(micro: int) -> str:
    """Exact dollars as text with 6 decimals (JSON floats would lose the micro-dollars)."""
    sign = "-" if micro < 0 else ""
    m = abs(micro)
    return f"{sign}{m // 1_000_000}.{m % 1_000_000:06d}"


def key_of(ln: Line, by: str) -> str:
    if ln.category == UNALLOCATED and by not in ("node", "gpu_model"):
        return UNALLOCATED_KEY
    w = ln.workload
    if by == "node":
        return ln.node.removeprefix("node:") or NONE_KEY
    if by == "gpu_model":
        return ln.gpu_key or NONE_KEY
    assert w is not None
    if by in ("job", "workload"):
        return w.id
    value = {"team": w.team, "project": w.project, "model": w.model, "service": w.service}[by]
    return value or NONE_KEY


def rollup(ledger: Ledger, by: str) -> list[Row]:
    if by not in DIMENSIONS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(DIMENSIONS)}")
    rows: dict[str, Row] = {}
    for ln in ledger.lines:
        if by == "job" and ln.workload is not None and ln.workload.kind != "job":
            k = {"pod": "(pods)", "process": "(processes)"}.get(ln.workload.kind, f"({ln.workload.kind})")
        else:
            k = key_of(ln, by)
        r = rows.get(k)
        if r is None:
            r = rows[k] = Row(k)
        r.add(ln)
    return sorted(rows.values(), key=lambda r: (r.key == UNALLOCATED_KEY, -r.total_micro, r.key))


def report_dict(
    ledger: Ledger, by: str, *, prices_source: str = "", mode: str = "showback"
) -> dict[str, Any]:
    """The report as JSON-able data (the API returns it as is).

    ``chargeback`` adds each row's bill, ``charge_usd``: what it held (used + idle-held) plus its share
    of the unallocated capacity, in proportion to what it held (largest remainder, so the bills add up
    to the fleet cost exactly). ``showback`` leaves unallocated capacity as its own row."""
    if mode not in ("showback", "chargeback"):
        raise ValueError(f"mode is showback or chargeback, not {mode!r}")
    rows = rollup(ledger, by)
    cats = ledger.category_micro()
    fleet = ledger.fleet_micro
    total_rows = sum(r.total_micro for r in rows)
    fleet_hours = sum(float(ln.gpu_ms) for ln in ledger.lines) / MS_PER_HOUR
    out_rows = [r.to_dict() for r in rows]
    if mode == "chargeback":
        _charge(out_rows)
    return {
        "window": {"start": format_ts(ledger.start_ms), "end": format_ts(ledger.end_ms)},
        "by": by,
        "mode": mode,
        "price_sheet": prices_source,
        "rows": out_rows,
        "totals": {
            "fleet_usd": _usd(fleet),
            "fleet_micro_usd": fleet,
            "used_usd": _usd(cats[USED]),
            "idle_held_usd": _usd(cats[IDLE_HELD]),
            "unallocated_usd": _usd(cats[UNALLOCATED]),
            "gpus": len(ledger.gpu_totals),
            "gpu_hours": round(fleet_hours, 6),
            "energy_kwh": round(sum(float(ln.energy_j) for ln in ledger.lines) / 3.6e6, 6),
            "co2e_kg": round(sum(float(ln.co2e_g) for ln in ledger.lines) / 1000, 6),
        },
        "reconciliation": {
            "rows_micro_usd": total_rows,
            "used_plus_idle_plus_unallocated_micro_usd": cats[USED] + cats[IDLE_HELD] + cats[UNALLOCATED],
            "fleet_micro_usd": fleet,
            "exact": total_rows == fleet == cats[USED] + cats[IDLE_HELD] + cats[UNALLOCATED]
            and (mode != "chargeback" or sum(r["charge_micro_usd"] for r in out_rows) == fleet),
        },
        "warnings": list(ledger.warnings),
    }


def _charge(rows: list[dict[str, Any]]) -> None:
    pool = sum(r["cost_micro_usd"] for r in rows if r["key"] == UNALLOCATED_KEY)
    held = [r for r in rows if r["key"] != UNALLOCATED_KEY]
    base = sum(r["cost_micro_usd"] for r in held)
    shares = [Fraction(pool * r["cost_micro_usd"], base) if base else Fraction(0) for r in held]
    floors = [int(x) for x in shares]
    left = (pool - sum(floors)) if base else 0
    order = sorted(range(len(held)), key=lambda i: (-(shares[i] - floors[i]), i))
    for k, i in enumerate(order):
        extra = floors[i] + (1 if k < left else 0)
        held[i]["charge_micro_usd"] = held[i]["cost_micro_usd"] + extra
        held[i]["charge_usd"] = _usd(held[i]["charge_micro_usd"])
    for r in rows:
        if r["key"] == UNALLOCATED_KEY:
            r["charge_micro_usd"] = 0 if base else r["cost_micro_usd"]
            r["charge_usd"] = _usd(r["charge_micro_usd"])


_COLUMNS = (
    ("key", "KEY"),
    ("cost_usd", "COST $"),
    ("used_usd", "USED $"),
    ("idle_held_usd", "IDLE-HELD $"),
    ("unallocated_usd", "UNALLOC $"),
    ("gpu_hours", "GPU-H"),
    ("energy_kwh", "kWh"),
    ("co2e_kg", "CO2e kg"),
    ("confidence", "CONF"),
)


def _cols(report: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return _COLUMNS + ((("charge_usd", "CHARGE $"),) if report.get("mode") == "chargeback" else ())


def _money(s: str) -> str:
    whole, _, frac = s.partition(".")
    if not frac:
        return s
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{abs(int(whole)):,}.{frac[:2]}"


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(report, indent=1, sort_keys=True)
    cols = [c for c, _ in _cols(report)]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([report["by"], *cols[1:], "cost_micro_usd"])
        for r in report["rows"]:
            w.writerow([_cell(r[c]) for c in cols] + [r["cost_micro_usd"]])
        t = report["totals"]
        fleet_row = [
            "(fleet)",
            t["fleet_usd"],
            t["used_usd"],
            t["idle_held_usd"],
            t["unallocated_usd"],
            t["gpu_hours"],
            t["energy_kwh"],
            t["co2e_kg"],
            "",
        ]
        if report["mode"] == "chargeback":
            fleet_row.append(t["fleet_usd"])
        w.writerow([*fleet_row, t["fleet_micro_usd"]])
        return buf.getvalue()
    if fmt == "html":
        return _html(report)
    return _table(report)


def _cell(v: Any) -> Any:
    """A label value cannot become a spreadsheet formula (CSV injection): prefix ``= + - @`` text."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(v):
        return "'" + v
    return v


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _table(report: dict[str, Any]) -> str:
    from rich.console import Console
    from rich.table import Table

    w = report["window"]
    rec = report["reconciliation"]
    title = f"GPU cost by {report['by']}, {w['start']} → {w['end']}"
    table = Table(title=title, caption=_caption(report, rec))
    cols = _cols(report)
    for c, head in cols:
        table.add_column(
            head if c != "key" else report["by"].upper(),
            justify="left" if c in ("key", "confidence") else "right",
        )
    for r in report["rows"]:
        table.add_row(*[_money(r[c]) if c.endswith("_usd") else str(r[c]) for c, _ in cols])
    t = report["totals"]
    table.add_section()
    table.add_row(
        "fleet",
        _money(t["fleet_usd"]),
        _money(t["used_usd"]),
        _money(t["idle_held_usd"]),
        _money(t["unallocated_usd"]),
        str(t["gpu_hours"]),
        str(t["energy_kwh"]),
        str(t["co2e_kg"]),
        "",
        *([_money(t["fleet_usd"])] if len(cols) > len(_COLUMNS) else []),
    )
    buf = io.StringIO()
    Console(file=buf, width=160, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()


def _caption(report: dict[str, Any], rec: dict[str, Any]) -> str:
    ok = "reconciles exactly" if rec["exact"] else "DOES NOT RECONCILE"
    warn = f"; {len(report['warnings'])} warning(s)" if report["warnings"] else ""
    roi = report.get("roi")
    extra = ""
    if roi and not roi["gpu_models_without_benchmark"]:
        extra = (
            f"\nused GPU-hours at the benchmark cloud price: ${_money(roi['benchmark_for_used_gpu_hours_usd'])}"
            f" (savings ${_money(roi['savings_vs_benchmark_usd'])})"
        )
    return f"Σ rows = fleet ${report['totals']['fleet_usd']} ({ok}, micro-dollars){warn}{extra}"


def _html(report: dict[str, Any]) -> str:
    e = html.escape
    w = report["window"]
    cols = _cols(report)
    head = "".join(f"<th>{e(h)}</th>" for _, h in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(str(r[c]))}</td>" for c, _ in cols) + "</tr>" for r in report["rows"]
    )
    t = report["totals"]
    foot = (
        f"<tr><th>fleet</th><th>{e(t['fleet_usd'])}</th><th>{e(t['used_usd'])}</th>"
        f"<th>{e(t['idle_held_usd'])}</th><th>{e(t['unallocated_usd'])}</th><th>{t['gpu_hours']}</th>"
        f"<th>{t['energy_kwh']}</th><th>{t['co2e_kg']}</th><th></th></tr>"
    )
    warn = "".join(f"<li>{e(x)}</li>" for x in report["warnings"])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sightglass cost report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}td:first-child{text-align:left}</style></head><body>"
        f"<h1>GPU cost by {e(report['by'])}</h1><p>{e(w['start'])} → {e(w['end'])}; price sheet "
        f"{e(report['price_sheet'])}</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"<tfoot>{foot}</tfoot></table><p>{e(_caption(report, report['reconciliation']))}</p>"
        f"<ul>{warn}</ul></body></html>\n"
    )
