"""Time parsing shared by the API and the CLI: RFC 3339, Unix seconds, durations, ``now``."""

from __future__ import annotations

import datetime as dt
import math
import time

from sightglass.config import parse_duration_ms


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time_ms(text: str | float | int, *, now: int | None = None) -> int:
    """Parse ``1700000000.5``, ``2026-11-24T12:00:00Z``, ``now`` or ``now-1h`` to Unix milliseconds."""
    if isinstance(text, int | float):
        if not math.isfinite(text):
            raise ValueError(f"invalid time {text!r}")
        return round(text * 1000)
    s = text.strip()
    if not s:
        raise ValueError("empty time")
    base = now if now is not None else now_ms()
    if s == "now":
        return base
    if s.startswith("now-"):
        return base - parse_duration_ms(s[4:])
    try:
        f = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(f):
            raise ValueError(f"invalid time {text!r}")
        return round(f * 1000)
    try:
        d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot parse {text!r} as a time (RFC 3339 or Unix seconds)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return round(d.timestamp() * 1000)


def parse_step_ms(text: str | float) -> int:
    """A query step: a duration (``15s``) or a number of seconds (``15``, ``0.5``)."""
    if isinstance(text, int | float):
        ms = round(text * 1000)
    else:
        ms = parse_duration_ms(text)
    if ms <= 0:
        raise ValueError(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
        )
    return ms


def format_ts(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")
