"""Silences, as Alertmanager defines them: label matchers and a time window that mute notifications.

A silence is ``{matchers: [{name, value, isRegex, isEqual}], startsAt, endsAt, createdBy, comment}``
(Alertmanager API v2 ``postableSilence``); an alert is muted while a silence is active and every one
of its matchers matches the alert's labels (a missing label matches as the empty string). Muted
alerts still fire and still join incidents; only their notifications are held back.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sightglass.alerting.evaluator import rfc3339
from sightglass.timeutil import parse_time_ms

MAX_MATCHERS = 64
MAX_VALUE_CHARS = 4096


class SilenceError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True
    _re: re.Pattern[str] | None = field(default=None, compare=False)

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.is_regex:
            assert self._re is not None
            ok = self._re.fullmatch(v) is not None
        else:
            ok = v == self.value
        return ok if self.is_equal else not ok

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


def _matcher(raw: Any, i: int) -> LabelMatcher:
    if not isinstance(raw, dict):
        raise SilenceError(f"matchers[{i}]: expected an object with name and value")
    name, value = raw.get("name"), raw.get("value")
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise SilenceError(f"matchers[{i}]: invalid label name {name!r}")
    if not isinstance(value, str):
        raise SilenceError(f"matchers[{i}]: value must be a string")
    if len(value) > MAX_VALUE_CHARS:
        raise SilenceError(f"matchers[{i}]: value is over {MAX_VALUE_CHARS} characters")
    is_regex = raw.get("isRegex", False)
    is_equal = raw.get("isEqual", True)
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise SilenceError(f"matchers[{i}]: isRegex and isEqual must be booleans")
    pat = None
    if is_regex:
        try:
            pat = re.compile(value)
        except re.error as e:
            raise SilenceError(f"matchers[{i}]: invalid regular expression {value!r}: {e}") from None
    return LabelMatcher(name, value, is_regex, is_equal, pat)


@dataclass(slots=True)
class Silence:
    id: str
    matchers: list[LabelMatcher]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    updated_ms: int

    def state(self, now_ms: int) -> str:
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"

    def mutes(self, labels: dict[str, str], now_ms: int) -> bool:
        return self.state(now_ms) == "active" and all(m.matches(labels) for m in self.matchers)

    def to_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "matchers": [m.to_dict() for m in self.matchers],
            "startsAt": rfc3339(self.starts_ms),
            "endsAt": rfc3339(self.ends_ms),
            "updatedAt": rfc3339(self.updated_ms),
            "createdBy": self.created_by,
            "comment": self.comment,
            "starts_ms": self.starts_ms,
            "ends_ms": self.ends_ms,
        }
        if now_ms is not None:
            d["status"] = {"state": self.state(now_ms)}
        return d


def parse_silence(raw: Any, now_ms: int) -> Silence:
    """Validate a posted silence (Alertmanager's shape); raises :class:`SilenceError` naming the field."""
    if not isinstance(raw, dict):
        raise SilenceError("a silence must be a JSON object")
    matchers = raw.get("matchers")
    if not isinstance(matchers, list) or not matchers:
        raise SilenceError("matchers: at least one matcher is required")
    if len(matchers) > MAX_MATCHERS:
        raise SilenceError(f"matchers: at most {MAX_MATCHERS} matchers")
    ms = [_matcher(m, i) for i, m in enumerate(matchers)]
    if all(m.matches({}) for m in ms):
        raise SilenceError(
            "matchers: at least one matcher must not match the empty string (it would mute everything)"
        )
    try:
        starts = parse_time_ms(raw["startsAt"], now=now_ms) if raw.get("startsAt") else now_ms
        ends = parse_time_ms(raw["endsAt"], now=now_ms) if raw.get("endsAt") else None
    except (ValueError, TypeError) as e:
        raise SilenceError(f"startsAt/endsAt: {e}") from None
    if ends is None:
        raise SilenceError("endsAt: required (RFC 3339 or Unix seconds)")
    if ends <= starts:
        raise SilenceError("endsAt must be after startsAt")
    created_by = str(raw.get("createdBy") or "")
    comment = str(raw.get("comment") or "")
    if len(created_by) > 256 or len(comment) > 4096:
        raise SilenceError("createdBy/comment too long")
    sid = raw.get("id") or str(uuid.uuid4())
    if not isinstance(sid, str) or len(sid) > 64:
        raise SilenceError("id: must be a string of at most 64 characters")
    return Silence(sid, ms, starts, ends, created_by, comment, now_ms)


def silence_from_dict(d: dict[str, Any]) -> Silence:
    ms = [_matcher(m, i) for i, m in enumerate(d["matchers"])]
    return Silence(
        d["id"],
        ms,
        int(d["starts_ms"]),
        int(d["ends_ms"]),
        d.get("createdBy", ""),
        d.get("comment", ""),
        int(d.get("updated_ms", d["starts_ms"])),
    )


class Silences:
    def __init__(self, catalog: Any = None) -> None:
        self.catalog = catalog
        self._by_id: dict[str, Silence] = {}
        if catalog is not None:
            for d in catalog.load_silences():
                try:
                    s = silence_from_dict(d)
                except (KeyError, ValueError, TypeError):
                    continue
                self._by_id[s.id] = s

    def add(self, raw: Any, now_ms: int) -> Silence:
        s = parse_silence(raw, now_ms)
        if s.id in self._by_id and self._by_id[s.id].state(now_ms) == "expired":
            raise SilenceError(f"silence {s.id} has expired; create a new one")
        self._by_id[s.id] = s
        self._save(s)
        return s

    def expire(self, sid: str, now_ms: int) -> Silence | None:
        s = self._by_id.get(sid)
        if s is None:
            return None
        if s.state(now_ms) != "expired":
            s.starts_ms = min(s.starts_ms, now_ms)
            s.ends_ms = now_ms
            s.updated_ms = now_ms
            self._save(s)
        return s

    def get(self, sid: str) -> Silence | None:
        return self._by_id.get(sid)

    def list_silences(self) -> list[Silence]:
        return sorted(self._by_id.values(), key=lambda s: s.starts_ms)

    def muted_by(self, labels: dict[str, str], now_ms: int) -> list[str]:
        return [s.id for s in self._by_id.values() if s.mutes(labels, now_ms)]

    def _save(self, s: Silence) -> None:
        if self.catalog is not None:
            d = s.to_dict()
            d["updated_ms"] = s.updated_ms
            self.catalog.save_silence(d)
