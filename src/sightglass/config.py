"""Settings: one TOML file, overridden by ``SIGHTGLASS_*`` environment variables, overridden by flags.

Example ``sightglass.toml``::

    data = "/var/lib/sightglass"
    listen = "0.0.0.0:9464"

    [storage]
    retention = "15d"

    [limits]
    max_body_bytes = 20_971_520

    [[scrape_configs]]
    job_name = "dcgm-exporter"
    scrape_interval = "10s"
    static_configs = [{ targets = ["gpu-node-01:9400"], labels = { cluster = "a" } }]
    file_sd_configs = [{ files = ["/etc/sightglass/targets/*.json"] }]
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting and what is wrong."""


def parse_duration_ms(text: str | int | float) -> int:
    """Parse a Prometheus duration (``1h30m``, ``15s``, ``250ms``) or a number of seconds, to ms."""
    if isinstance(text, int | float):
        return int(text * 1000)
    s = text.strip()
    try:
        return int(float(s) * 1000)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 15s, 5m, 1h30m, 15d)")
    return int(total)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaticConfig(_Model):
    targets: list[str]
    labels: dict[str, str] = Field(default_factory=dict)


class FileSDConfig(_Model):
    files: list[str]
    refresh_interval: str = "5m"


class ScrapeConfig(_Model):
    """One scrape job, with Prometheus' field names and defaults."""

    job_name: str
    scrape_interval: str = "15s"
    scrape_timeout: str = "10s"
    metrics_path: str = "/metrics"
    scheme: str = "http"
    honor_labels: bool = False
    honor_timestamps: bool = True
    params: dict[str, list[str]] = Field(default_factory=dict)
    static_configs: list[StaticConfig] = Field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = Field(default_factory=list)
    sample_limit: int = 0

    @field_validator("scrape_interval", "scrape_timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration_ms(v)
        return v

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v not in ("http", "https"):
            raise ValueError("scheme must be http or https")
        return v


class StorageConfig(_Model):
    retention: str = "15d"
    rollup_retention: str = "400d"
    head: str = "1h"
    compact_every: str = "60s"

    @field_validator("retention", "rollup_retention", "head", "compact_every")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration_ms(v)
        return v


class LimitsConfig(_Model):
    max_body_bytes: int = 20 * 1024 * 1024  # OTLP's default
    max_decompressed_bytes: int = 128 * 1024 * 1024
    max_new_series_per_request: int = 200_000
    max_label_value_bytes: int = 16 * 1024
    max_labels_per_series: int = 64


class QueryConfig(_Model):
    max_samples: int = 50_000_000
    timeout: str = "2m"
    lookback_delta: str = "5m"


class AnalyticsConfig(_Model):
    """The incremental "understand" loop the server runs: topology, baselines/anomalies, KPIs."""

    enabled: bool = True
    interval: str = "30s"
    history: str = "15m"
    golden_config: str = ""  # a pinned golden config file for drift (sightglass.analytics.drift)

    @field_validator("interval", "history")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration_ms(v)
        return v


class Config(_Model):
    data: str = "./sightglass-data"
    listen: str = "127.0.0.1:9464"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    scrape_configs: list[ScrapeConfig] = Field(default_factory=list)
    global_scrape_interval: str = "15s"
    log_level: str = "info"
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    # Sections owned by a feature package, validated there (each package's own pydantic model), so
    # this module stays at the bottom of the import graph: [alerting], [cost], [agent], [backends].
    alerting: dict[str, Any] = Field(default_factory=dict)
    cost: dict[str, Any] = Field(default_factory=dict)
    agent: dict[str, Any] = Field(default_factory=dict)
    backends: dict[str, Any] = Field(default_factory=dict)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
        """File, then ``SIGHTGLASS_DATA`` / ``SIGHTGLASS_LISTEN`` / ``SIGHTGLASS_RETENTION``, then overrides."""
        raw: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            try:
                raw = tomllib.loads(p.read_text())
            except FileNotFoundError:
                raise ConfigError(f"config file {p} does not exist") from None
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
        env = os.environ
        if "SIGHTGLASS_DATA" in env:
            raw["data"] = env["SIGHTGLASS_DATA"]
        if "SIGHTGLASS_LISTEN" in env:
            raw["listen"] = env["SIGHTGLASS_LISTEN"]
        if "SIGHTGLASS_RETENTION" in env:
            raw.setdefault("storage", {})["retention"] = env["SIGHTGLASS_RETENTION"]
        for k, v in overrides.items():
            if v is None:
                continue
            if k == "retention":
                raw.setdefault("storage", {})["retention"] = v
            else:
                raw[k] = v
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"])
                lines.append(f"  {loc}: {err['msg']}")
            where = f" in {path}" if path else ""
            raise ConfigError(f"invalid configuration{where}:\n" + "\n".join(lines)) from None


def parse_listen(v: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {v!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
