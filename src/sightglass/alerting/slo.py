"""SLOs: a small spec becomes recording rules, multi-window multi-burn-rate alerts and an error budget.

The method is the SRE workbook's ("Alerting on SLOs", table 5-8): page when the error budget burns
14.4x too fast over 1 h *and* over 5 min (2 % of a 30-day budget in an hour) or 6x over 6 h and
30 min (5 % in six hours); open a ticket at 3x over 1 d and 2 h, or 1x over 3 d and 6 h. The short
window makes the alert stop soon after the burn does.

```yaml
slos:
  - name: inference-ttft
    description: 99 % of requests get their first token within 5 s, per model
    objective: 0.99
    window: 30d
    by: [model_name]
    sli:                       # event-based: good and total events, $window is substituted
      good:  sum by (model_name) (rate(vllm:time_to_first_token_seconds_bucket{le="5.0"}[$window]))
      total: sum by (model_name) (rate(vllm:time_to_first_token_seconds_count[$window]))
    labels: {team: inference}
    runbook: What to check first...
  - name: training-goodput
    objective: 0.95
    sli:                       # time-based: the fraction of good time, 0..1, over $window
      good_ratio: avg_over_time(sightglass:training_progress:bool[$window])
```

Generated series (one per SLO and window, label ``slo``): ``slo:sli_error:ratio_rate5m`` ...
``slo:sli_error:ratio_rate3d`` (the 1 d and 3 d ones from the 5-minute ratio, so no rule reads
days of raw buckets), ``slo:objective:ratio``, ``slo:error_budget:remaining_ratio`` (1 = untouched,
0 = spent, negative = overspent, over the SLO window) and the alerts ``SLOErrorBudgetBurn``
(``severity: critical``, page) and ``SLOErrorBudgetBurnSlow`` (``severity: warning``, ticket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.alerting.rules import Rule, RuleError, RuleGroup, format_duration
from sightglass.config import parse_duration_ms

# (long window, short window, burn-rate factor, severity)
BURN_WINDOWS = [
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
]
RAW_WINDOWS = ["5m", "30m", "1h", "2h", "6h"]
DERIVED_WINDOWS = ["1d", "3d"]
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(slots=True)
class SLO:
    name: str
    objective: float
    window: str = "30d"
    description: str = ""
    by: list[str] = field(default_factory=list)
    good: str = ""
    total: str = ""
    bad: str = ""
    good_ratio: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    runbook: str = ""
    runbook_url: str = ""

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    def error_ratio(self, window: str) -> str:
        def w(expr: str) -> str:
            return expr.replace("$window", window)

        if self.good_ratio:
            return f"1 - ({w(self.good_ratio)})"
        if self.bad:
            return f"({w(self.bad)}) / ({w(self.total)})"
        return f"1 - (({w(self.good)}) / ({w(self.total)}))"


def parse_slos(doc: Any, file: str = "<slos>") -> list[SLO]:
    errors: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("slos"), list):
        raise RuleError([f"{file}: expected a mapping with a list 'slos'"])
    out: list[SLO] = []
    seen: set[str] = set()
    allowed = {"name", "objective", "window", "description", "by", "sli", "labels", "runbook", "runbook_url"}
    for i, raw in enumerate(doc["slos"]):
        where = f"{file}: slos[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: expected a mapping")
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            errors.append(f"{where}: name must be letters, digits, '_', '.', '-' (got {name!r})")
            continue
        where = f"{file}: slo {name}"
        if name in seen:
            errors.append(f"{where}: defined twice")
        seen.add(name)
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(unknown)}")
        obj = raw.get("objective")
        if isinstance(obj, bool) or not isinstance(obj, int | float) or not 0 < float(obj) < 1:
            errors.append(
                f"{where}: objective must be a number between 0 and 1 exclusive (e.g. 0.99), got {obj!r}"
            )
            continue
        window = str(raw.get("window", "30d"))
        try:
            if parse_duration_ms(window) < parse_duration_ms("1d"):
                errors.append(f"{where}: window must be at least 1d (got {window})")
        except ValueError as e:
            errors.append(f"{where}: window: {e}")
        by = raw.get("by") or []
        if not isinstance(by, list) or not all(isinstance(b, str) and _LABEL_RE.match(b) for b in by):
            errors.append(f"{where}: by must be a list of label names")
            by = []
        sli = raw.get("sli")
        if not isinstance(sli, dict):
            errors.append(f"{where}: sli must be a mapping with good/total, bad/total or good_ratio")
            continue
        kinds = {k for k in ("good", "bad", "total", "good_ratio") if sli.get(k)}
        extra = sorted(str(k) for k in sli if k not in ("good", "bad", "total", "good_ratio"))
        if extra:
            errors.append(f"{where}: sli: unknown field(s) {', '.join(extra)}")
        if kinds not in ({"good", "total"}, {"bad", "total"}, {"good_ratio"}):
            errors.append(
                f"{where}: sli needs exactly one of: good+total, bad+total, good_ratio (got {sorted(kinds)})"
            )
            continue
        exprs = {k: str(sli[k]) for k in kinds}
        for k, text in exprs.items():
            if "$window" not in text:
                errors.append(f"{where}: sli.{k} must use $window as its range (e.g. rate(x[$window]))")
        labels = raw.get("labels") or {}
        if not isinstance(labels, dict) or not all(_LABEL_RE.match(str(k)) for k in labels):
            errors.append(f"{where}: labels must map label names to strings")
            labels = {}
        out.append(
            SLO(
                name,
                float(obj),
                window,
                str(raw.get("description", "")),
                list(by),
                exprs.get("good", ""),
                exprs.get("total", ""),
                exprs.get("bad", ""),
                exprs.get("good_ratio", ""),
                {str(k): str(v) for k, v in labels.items()},
                str(raw.get("runbook", "")),
                str(raw.get("runbook_url", "")),
            )
        )
    if errors:
        raise RuleError(errors)
    return out


def load_slo_files(paths: list[Any]) -> list[SLO]:
    import yaml

    out: list[SLO] = []
    errors: list[str] = []
    for p in paths:
        try:
            doc = yaml.safe_load(Path(p).read_text(encoding="utf-8"))
            out.extend(parse_slos(doc, str(p)))
        except RuleError as e:
            errors.extend(e.errors)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            errors.append(f"{p}: cannot read SLO spec: {e}")
    if errors:
        raise RuleError(errors)
    return out


def default_slo_path() -> Path:
    return Path(__file__).parent / "slos" / "default.yaml"


def _fmt(v: float) -> str:
    return format(v, ".6g")


def slo_rule_groups(slos: list[SLO], *, interval: str = "1m") -> list[RuleGroup]:
    """One rule group per SLO: the error-ratio recordings, budget, and the burn-rate alerts."""
    groups = []
    for slo in slos:
        sel_labels = {"slo": slo.name, **slo.labels}
        sel = ",".join(f'{k}="{v}"' for k, v in sorted(sel_labels.items()))
        by = ", ".join(slo.by)
        keep = f"sum by ({by}) " if slo.by else "sum "
        rules: list[Rule] = []
        for w in RAW_WINDOWS:
            expr = slo.error_ratio(w) if slo.by else f"{keep}({slo.error_ratio(w)})"
            rules.append(
                Rule(
                    f"slo:sli_error:ratio_rate{w}", expr, "recording", labels={**sel_labels, "slo_window": w}
                )
            )
        for w in DERIVED_WINDOWS:
            rules.append(
                Rule(
                    f"slo:sli_error:ratio_rate{w}",
                    f"avg_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{w}])",
                    "recording",
                    labels={**sel_labels, "slo_window": w},
                )
            )
        rules.append(
            Rule(
                "slo:error_budget:remaining_ratio",
                f"1 - avg_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{slo.window}]) / {_fmt(slo.budget)}",
                "recording",
                labels=dict(sel_labels),
            )
        )
        rules.append(
            Rule(
                "slo:objective:ratio", f"vector({_fmt(slo.objective)})", "recording", labels=dict(sel_labels)
            )
        )
        for severity, alert in (("critical", "SLOErrorBudgetBurn"), ("warning", "SLOErrorBudgetBurnSlow")):
            parts = []
            for long_w, short_w, factor, sev in BURN_WINDOWS:
                if sev != severity:
                    continue
                thr = _fmt(factor * slo.budget)
                parts.append(
                    f"(max without (slo_window) (slo:sli_error:ratio_rate{long_w}{{{sel}}}) > {thr}"
                    f" and max without (slo_window) (slo:sli_error:ratio_rate{short_w}{{{sel}}}) > {thr})"
                )
            expr = " or ".join(parts)
            windows = [f"{lw}/{sw} at {f}x" for lw, sw, f, s in BURN_WINDOWS if s == severity]
            ann = {
                "summary": f"SLO {slo.name}"
                + (" for {{ " + " }}/{{ ".join(f"$labels.{b}" for b in slo.by) + " }}" if slo.by else "")
                + f": error budget burning fast ({', '.join(windows)}); error ratio {{{{ $value | humanizePercentage }}}}",
                "description": slo.description or f"objective {_fmt(slo.objective * 100)}% over {slo.window}",
                "runbook": slo.runbook
                or "Open the SLO's error ratio by window and the incident's root cause.",
                "runbook_url": slo.runbook_url or "docs/alerting.md#slos",
            }
            rules.append(
                Rule(
                    alert,
                    expr,
                    "alerting",
                    for_ms=2 * 60_000 if severity == "critical" else 15 * 60_000,
                    labels={**sel_labels, "severity": severity},
                    annotations=ann,
                )
            )
        groups.append(RuleGroup(f"slo:{slo.name}", "<slo>", rules, parse_duration_ms(interval)))
    return groups


def slo_status(engine: Any, slos: list[SLO], at_ms: int) -> list[dict[str, Any]]:
    """The current error ratios and remaining budget of each SLO (from the recorded series)."""
    out = []
    for slo in slos:
        sel = f'slo="{slo.name}"'
        row: dict[str, Any] = {
            "slo": slo.name,
            "objective": slo.objective,
            "window": slo.window,
            "series": [],
        }
        by_labels: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for w in RAW_WINDOWS + DERIVED_WINDOWS:
            res = engine.instant(f"slo:sli_error:ratio_rate{w}{{{sel}}}", at_ms)
            for s in res.vector:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k in slo.by))
                by_labels.setdefault(key, {"labels": dict(key), "error_ratio": {}})["error_ratio"][w] = (
                    s.value
                )
        res = engine.instant(f"slo:error_budget:remaining_ratio{{{sel}}}", at_ms)
        for s in res.vector:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k in slo.by))
            by_labels.setdefault(key, {"labels": dict(key), "error_ratio": {}})["budget_remaining"] = s.value
        row["series"] = list(by_labels.values())
        out.append(row)
    return out


def slo_budget_history(
    engine: Any, slos: list[SLO], start_ms: int, end_ms: int, step_ms: int
) -> list[dict[str, Any]]:
    """The remaining error budget of each SLO over time (the recorded ``slo:error_budget:remaining_ratio``)."""
    out = []
    for slo in slos:
        res = engine.range(f'slo:error_budget:remaining_ratio{{slo="{slo.name}"}}', start_ms, end_ms, step_ms)
        series = [
            {
                "labels": {k: v for k, v in s.labels.items() if k in slo.by},
                "values": [
                    [int(t) / 1000, float(v)] for t, v in zip(s.ts_ms.tolist(), list(s.values), strict=True)
                ],
            }
            for s in res.matrix
        ]
        out.append({"slo": slo.name, "objective": slo.objective, "window": slo.window, "budget": series})
    return out


__all__ = [
    "SLO", "format_duration", "load_slo_files", "parse_slos", "slo_budget_history", "slo_rule_groups", "slo_status",
]  # fmt: skip
