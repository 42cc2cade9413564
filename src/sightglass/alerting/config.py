"""The ``[alerting]`` config section (``Config.alerting``), validated here.

```toml
[alerting]
rule_files = ["rules/*.yaml"]          # Prometheus rule files, globs allowed
default_rules = true                   # the built-in AI-factory pack (sightglass/alerting/rules)
slo_files = ["slos.yaml"]              # SLO specs; their burn-rate rules are generated
evaluation_interval = "30s"
external_url = "http://sightglass.example:9464"

[[alerting.notifiers]]
type = "alertmanager"                  # POST /api/v2/alerts
url = "http://127.0.0.1:9093"

[[alerting.notifiers]]
type = "webhook"                       # the Alertmanager webhook payload, one per incident
url = "http://hooks.internal/sightglass"

[[alerting.notifiers]]
type = "slack"                         # Slack-compatible incoming webhook ({"text": ...})
url = "https://hooks.slack.com/services/..."
```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sightglass.alerting.diagnostics import DiagnosticsConfig
from sightglass.config import ConfigError, parse_duration_ms


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _dur(v: str) -> str:
    parse_duration_ms(v)
    return v


class NotifierConfig(_Model):
    type: Literal["webhook", "alertmanager", "slack"]
    url: str
    name: str = ""
    timeout: str = "10s"
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff: str = "500ms"  # first retry delay; doubles each attempt
    max_backoff: str = "30s"
    send_resolved: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("timeout", "backoff", "max_backoff")
    @classmethod
    def _duration(cls, v: str) -> str:
        return _dur(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        return v.rstrip("/") if v.count("/") <= 3 else v

    @property
    def label(self) -> str:
        return self.name or f"{self.type}:{self.url}"


class AlertingConfig(_Model):
    enabled: bool = True
    rule_files: list[str] = Field(default_factory=list)
    default_rules: bool = True
    default_slos: bool = True
    slo_files: list[str] = Field(default_factory=list)
    evaluation_interval: str = "30s"
    resend_delay: str = "1m"
    repeat_interval: str = "4h"
    external_url: str = ""
    external_labels: dict[str, str] = Field(default_factory=dict)
    clock: Literal["auto", "wall", "data"] = "auto"
    write_alerts_series: bool = True
    incidents: bool = True
    incident_min_severity: Literal["info", "warning", "critical"] = "warning"
    rca: bool = True
    rca_timeout: str = "20s"
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    @field_validator("evaluation_interval", "resend_delay", "repeat_interval", "rca_timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        return _dur(v)

    @property
    def interval_ms(self) -> int:
        return max(1000, parse_duration_ms(self.evaluation_interval))


def alerting_config(raw: dict[str, Any] | AlertingConfig | None) -> AlertingConfig:
    """Validate ``Config.alerting``; a :class:`ConfigError` names each bad setting."""
    if isinstance(raw, AlertingConfig):
        return raw
    try:
        return AlertingConfig.model_validate(raw or {})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  alerting.{loc}: {err['msg']}")
        raise ConfigError("invalid [alerting] configuration:\n" + "\n".join(lines)) from None
