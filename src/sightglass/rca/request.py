"""Validating RCA requests: ``POST /api/v1/rca`` bodies and Alertmanager webhook (v4) payloads.

An Alertmanager notification becomes a symptom and an instant:

- the symptom is the alert's expression when one is given: an annotation named ``expr``,
  ``expression``, ``query`` or ``promql``, else ``g0.expr`` of its ``generatorURL`` (Prometheus puts
  the rule's expression there); otherwise the alert's labels as a selector (``alertname`` and
  Alertmanager's own labels left out), which names the entities the alert is about;
- the instant is the alert's ``startsAt`` (plus 1 minute, so the symptom has changed), capped at now.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from sightglass.timeutil import now_ms, parse_time_ms

MAX_BODY_BYTES = 1 << 20
MAX_ALERTS = 50
MAX_SYMPTOM_BYTES = 16_384
EXPR_ANNOTATIONS = ("expr", "expression", "query", "promql")
SKIP_LABELS = frozenset({"alertname", "severity", "alertstate", "prometheus", "receiver", "__name__"})
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RequestError(ValueError):
    """A request that cannot be analysed; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class RcaRequest:
    symptom: str
    at_ms: int
    top: int = 5
    window_ms: int | None = None
    alert: str | None = None  # the alert's name, for an Alertmanager notification


def _symptom(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{where}: a non-empty PromQL string is required")
    if len(value.encode()) > MAX_SYMPTOM_BYTES:
        raise RequestError(f"{where}: longer than {MAX_SYMPTOM_BYTES} bytes")
    if "\x00" in value:
        raise RequestError(f"{where}: contains a NUL byte")
    return value.strip()


def _time(value: Any, where: str) -> int:
    if value is None:
        return now_ms()
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RequestError(f"{where}: a time (RFC 3339 or Unix seconds) is required")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"{where}: not a finite number")
    try:
        t = parse_time_ms(value)
    except (ValueError, OverflowError) as e:
        raise RequestError(f"{where}: {e}") from None
    if not 0 <= t < 32_503_680_000_000:  # year 3000
        raise RequestError(f"{where}: out of range")
    return t


def parse_rca_body(body: Any) -> RcaRequest:
    """``{"symptom": "<PromQL>", "at": <time>, "top": 5, "window": "30m"}``."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with 'symptom' and 'at'")
    unknown = set(body) - {"symptom", "at", "time", "top", "window"}
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    symptom = _symptom(body.get("symptom"), "symptom")
    at = _time(body.get("at", body.get("time")), "at")
    top = body.get("top", 5)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 100:
        raise RequestError("top: an integer from 1 to 100 is required")
    window = body.get("window")
    window_ms = None
    if window is not None:
        from sightglass.config import parse_duration_ms

        if not isinstance(window, str):
            raise RequestError("window: a duration such as 30m is required")
        try:
            window_ms = parse_duration_ms(window)
        except ValueError as e:
            raise RequestError(f"window: {e}") from None
        if not 100_000 <= window_ms <= 7 * 86_400_000:
            raise RequestError("window: between 100s and 7d")
    return RcaRequest(symptom, at, top, window_ms)


def _generator_expr(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    except ValueError:
        return None
    vals = q.get("g0.expr")
    return vals[0] if vals else None


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_alertmanager(body: Any) -> list[RcaRequest]:
    """Alertmanager webhook v4: one request per firing alert (at most ``MAX_ALERTS``)."""
    if not isinstance(body, dict):
        raise RequestError("the body must be an Alertmanager webhook JSON object")
    version = body.get("version")
    if version is not None and str(version) != "4":
        raise RequestError(f"unsupported Alertmanager webhook version {version!r} (4 is supported)")
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise RequestError("alerts: a non-empty list is required")
    if len(alerts) > MAX_ALERTS:
        raise RequestError(f"alerts: more than {MAX_ALERTS} alerts in one notification")
    common = body.get("commonLabels") if isinstance(body.get("commonLabels"), dict) else {}
    out: list[RcaRequest] = []
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise RequestError(f"{where}: an object is required")
        if a.get("status", "firing") != "firing":
            continue
        labels = a.get("labels") if a.get("labels") is not None else common
        annotations = a.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            raise RequestError(f"{where}: labels and annotations must be objects")
        for k, v in labels.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise RequestError(f"{where}.labels: names and values must be strings")
        expr = next((annotations[k] for k in EXPR_ANNOTATIONS if isinstance(annotations.get(k), str) and annotations[k].strip()), None)
        expr = expr or _generator_expr(a.get("generatorURL"))
        if expr is None:
            sel = {k: v for k, v in labels.items() if k not in SKIP_LABELS and _LABEL.match(k) and v}
            if not sel:
                raise RequestError(f"{where}: no expression (annotation 'expr' or generatorURL g0.expr) and no labels to select with")
            expr = "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(sel.items())) + "}"
        symptom = _symptom(expr, f"{where} expression")
        starts = a.get("startsAt")
        at = _time(starts, f"{where}.startsAt") + 60_000 if starts else now_ms()
        at = min(at, now_ms())
        name = labels.get("alertname")
        out.append(RcaRequest(symptom, at, 5, None, name if isinstance(name, str) else None))
    if not out:
        raise RequestError("no firing alert in the notification")
    return out
