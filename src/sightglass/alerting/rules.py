"""Prometheus rule files: parse, validate (what ``promtool check rules`` checks), and hold.

The format is Prometheus' own (``docs/configuration/recording_rules.md``)::

    groups:
      - name: gpu
        interval: 30s            # optional, else the global evaluation_interval
        labels: {team: infra}    # optional, added to every rule of the group
        rules:
          - record: node:gpu_power_watts:sum
            expr: sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)
          - alert: GpuTooHot
            expr: DCGM_FI_DEV_GPU_TEMP > 85
            for: 5m
            keep_firing_for: 1m
            labels: {severity: warning}
            annotations:
              summary: "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} at {{ $value }} °C"
              runbook_url: https://...

Every problem is reported with its place (``file: group "g": rule 3 (alert X): ...``), and all of
them at once, as promtool does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sightglass.alerting.template import TemplateError, parse_template
from sightglass.config import parse_duration_ms

MAX_RULE_FILE_BYTES = 8 * 1024 * 1024

_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = {"name", "interval", "limit", "labels", "rules", "query_offset"}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


class RuleError(ValueError):
    """A rule file is invalid; ``errors`` lists every problem found, each naming its place."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(slots=True)
class Rule:
    """One recording (``record``) or alerting (``alert``) rule."""

    name: str
    expr: str
    kind: str  # "recording" | "alerting"
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def to_yaml_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            ("record" if self.kind == "recording" else "alert"): self.name,
            "expr": self.expr,
        }
        if self.for_ms:
            d["for"] = format_duration(self.for_ms)
        if self.keep_firing_for_ms:
            d["keep_firing_for"] = format_duration(self.keep_firing_for_ms)
        if self.labels:
            d["labels"] = dict(self.labels)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


@dataclass(slots=True)
class RuleGroup:
    name: str
    file: str
    rules: list[Rule]
    interval_ms: int | None = None  # None: the global evaluation interval
    limit: int = 0
    query_offset_ms: int = 0

    def to_yaml_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.interval_ms:
            d["interval"] = format_duration(self.interval_ms)
        if self.limit:
            d["limit"] = self.limit
        d["rules"] = [r.to_yaml_dict() for r in self.rules]
        return d


def format_duration(ms: int) -> str:
    """Milliseconds as a Prometheus duration (``1h30m``, ``90s``, ``250ms``)."""
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


def _duration(value: Any, where: str, errors: list[str]) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, str | int):
        errors.append(f"{where}: expected a duration such as 5m, got {value!r}")
        return 0
    try:
        ms = parse_duration_ms(str(value))
    except ValueError as e:
        errors.append(f"{where}: {e}")
        return 0
    if ms < 0:
        errors.append(f"{where}: duration must not be negative")
        return 0
    return ms


def _str_map(value: Any, where: str, errors: list[str], *, label_names: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a mapping, got {type(value).__name__}")
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        k = str(k)
        if label_names and not _LABEL_NAME_RE.match(k):
            errors.append(f"{where}: invalid label name {k!r}")
            continue
        if label_names and k.startswith("__"):
            errors.append(f"{where}: label name {k!r} is reserved (starts with __)")
            continue
        if isinstance(v, dict | list) or v is None:
            errors.append(f"{where}: {k}: expected a string value, got {type(v).__name__}")
            continue
        out[k] = v if isinstance(v, str) else (str(v).lower() if isinstance(v, bool) else str(v))
    return out


def _check_expr(expr: str, where: str, errors: list[str]) -> None:
    from sightglass.promql.engine import parse
    from sightglass.promql.result import QueryError

    try:
        parse(expr)
    except QueryError as e:
        msg = str(e).removeprefix('invalid parameter "query": ')
        errors.append(f"{where}: expr: {msg}")


def _check_templates(values: dict[str, str], where: str, errors: list[str]) -> None:
    for k, v in values.items():
        try:
            parse_template(v)
        except TemplateError as e:
            errors.append(f"{where}: {k}: template: {e}")


def _parse_rule(raw: Any, where: str, errors: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: a rule must be a mapping, got {type(raw).__name__}")
        return None
    unknown = sorted(str(k) for k in raw if k not in _RULE_KEYS)
    if unknown:
        errors.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    record, alert = raw.get("record"), raw.get("alert")
    if (record is None) == (alert is None):
        errors.append(f"{where}: exactly one of 'record' or 'alert' must be set")
        return None
    name = str(record if record is not None else alert)
    kind = "recording" if record is not None else "alerting"
    where = f"{where} ({'record' if kind == 'recording' else 'alert'} {name})"
    before = len(errors)
    if not name.strip():
        errors.append(f"{where}: the rule name must not be empty")
    if kind == "recording" and not _METRIC_NAME_RE.match(name):
        errors.append(f"{where}: invalid recording rule name {name!r} (must be a valid metric name)")
    expr = raw.get("expr")
    if not isinstance(expr, str | int | float) or isinstance(expr, bool) or not str(expr).strip():
        errors.append(f"{where}: 'expr' is required and must be a PromQL string")
        expr = ""
    else:
        expr = str(expr)
        _check_expr(expr, where, errors)
    labels = _str_map(raw.get("labels"), f"{where}: labels", errors, label_names=True)
    annotations = _str_map(raw.get("annotations"), f"{where}: annotations", errors, label_names=True)
    if kind == "recording":
        for key in ("for", "keep_firing_for", "annotations"):
            if key in raw:
                errors.append(f"{where}: invalid field {key!r} in a recording rule")
    else:
        _check_templates(labels, f"{where}: labels", errors)
        _check_templates(annotations, f"{where}: annotations", errors)
    for_ms = _duration(raw.get("for"), f"{where}: for", errors)
    keep_ms = _duration(raw.get("keep_firing_for"), f"{where}: keep_firing_for", errors)
    if len(errors) > before:
        return None
    return Rule(name, expr, kind, for_ms, keep_ms, labels, annotations)


def parse_rules(doc: Any, file: str = "<rules>") -> list[RuleGroup]:
    """Rule groups from a parsed YAML document; raises :class:`RuleError` listing every problem."""
    errors: list[str] = []
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise RuleError([f"{file}: expected a mapping with 'groups', got {type(doc).__name__}"])
    unknown = sorted(str(k) for k in doc if k != "groups")
    if unknown:
        errors.append(f"{file}: unknown field(s) {', '.join(unknown)} (expected 'groups')")
    raw_groups = doc.get("groups") or []
    if not isinstance(raw_groups, list):
        raise RuleError([f"{file}: 'groups' must be a list"])
    groups: list[RuleGroup] = []
    seen: set[str] = set()
    for gi, g in enumerate(raw_groups):
        gwhere = f"{file}: groups[{gi}]"
        if not isinstance(g, dict):
            errors.append(f"{gwhere}: a group must be a mapping")
            continue
        name = g.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append(f"{gwhere}: group name must be a non-empty string")
            continue
        gwhere = f'{file}: group "{name}"'
        if name in seen:
            errors.append(f"{gwhere}: repeated in the same file")
        seen.add(name)
        unknown = sorted(str(k) for k in g if k not in _GROUP_KEYS)
        if unknown:
            errors.append(f"{gwhere}: unknown field(s) {', '.join(unknown)}")
        interval = _duration(g.get("interval"), f"{gwhere}: interval", errors) or None
        offset = _duration(g.get("query_offset"), f"{gwhere}: query_offset", errors)
        limit = g.get("limit", 0)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            errors.append(f"{gwhere}: limit must be a non-negative integer")
            limit = 0
        glabels = _str_map(g.get("labels"), f"{gwhere}: labels", errors, label_names=True)
        raw_rules = g.get("rules") or []
        if not isinstance(raw_rules, list):
            errors.append(f"{gwhere}: 'rules' must be a list")
            continue
        rules = []
        for ri, r in enumerate(raw_rules):
            rule = _parse_rule(r, f"{gwhere}: rule {ri + 1}", errors)
            if rule is not None:
                rule.labels = {**glabels, **rule.labels}
                rules.append(rule)
        groups.append(RuleGroup(name, file, rules, interval, limit, offset))
    if errors:
        raise RuleError(errors)
    return groups


def load_rule_text(text: str, file: str = "<rules>") -> list[RuleGroup]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RuleError([f"{file}: not valid YAML: {e}"]) from None
    return parse_rules(doc, file)


def load_rule_file(path: str | Path) -> list[RuleGroup]:
    """Read and validate one rule file."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise RuleError([f"{p}: cannot read: {e.strerror or e}"]) from None
    if size > MAX_RULE_FILE_BYTES:
        raise RuleError([f"{p}: {size} bytes is over the {MAX_RULE_FILE_BYTES}-byte limit for a rule file"])
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuleError([f"{p}: cannot read: {e}"]) from None
    return load_rule_text(text, str(p))


def load_rule_files(paths: list[str | Path]) -> list[RuleGroup]:
    """Every group of every file (globs expanded, as Prometheus' ``rule_files``); all errors at once."""
    import glob

    errors: list[str] = []
    groups: list[RuleGroup] = []
    for pattern in paths:
        matches = sorted(glob.glob(str(pattern))) if any(c in str(pattern) for c in "*?[") else [str(pattern)]
        for path in matches:
            try:
                groups.extend(load_rule_file(path))
            except RuleError as e:
                errors.extend(e.errors)
    if errors:
        raise RuleError(errors)
    return groups


def default_rule_paths() -> list[Path]:
    """The rule files of the built-in AI-factory pack (``sightglass/alerting/rules/*.yaml``)."""
    return sorted((Path(__file__).parent / "rules").glob("*.yaml"))


def dump_rules(groups: list[RuleGroup]) -> str:
    import yaml

    return str(
        yaml.safe_dump({"groups": [g.to_yaml_dict() for g in groups]}, sort_keys=False, allow_unicode=True)
    )
