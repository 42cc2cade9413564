"""The ``[agent]`` section of ``sightglass.toml``, validated here (``Config.agent`` is a free dict).

Example::

    [agent]
    server = "http://sightglass.example:9464"
    interval = "10s"
    spool_dir = "/var/lib/sightglass-agent/spool"
    spool_max_bytes = 268435456
    expected_gpus = 8
"""

from __future__ import annotations

import socket
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sightglass.config import ConfigError, parse_duration_ms, parse_listen

ALL_COLLECTORS = ("kubernetes", "host", "gpu", "slurm", "infiniband", "nfs", "lustre")


class DiagnosticsConfig(BaseModel):
    """``[agent.diagnostics]``: run the DCGM diagnostics the server asks for (docs/agent.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Pull diagnostic tasks from the server (push mode only)."""
    dcgmi: str = "dcgmi"
    """The dcgmi binary (a name on PATH or an absolute path)."""
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3])
    """Run levels the server may ask for; 4 (an hour or more per GPU) only when listed."""
    timeout: str = "45m"
    poll_interval: str = "30s"
    replay_command: list[str] = Field(default_factory=list)
    """The replay hook (argv, no shell): re-runs a fixed computation on the GPUs ``{gpus}`` and prints
    per-GPU checksums as JSON (docs/agent.md), e.g. ``["python3", "-m", "sightglass.agent.replay_gemm",
    "--gpus", "{gpus}", "--seed", "{seed}"]``. Empty: replay tasks are refused with that reason."""
    replay_timeout: str = "10m"

    @field_validator("replay_command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if v and (not all(isinstance(a, str) and a and len(a) <= 4096 for a in v) or len(v) > 64):
            raise ValueError("replay_command must be a list of 1 to 64 non-empty strings (argv, not a shell line)")
        return v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        bad = [x for x in v if x not in (1, 2, 3, 4)]
        if bad or not v:
            raise ValueError(f"levels must be a non-empty list of 1, 2, 3, 4 (got {v})")
        return v

    @field_validator("timeout", "poll_interval", "replay_timeout")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration_ms(v) <= 0:
            raise ValueError("must be a positive duration")
        return v


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: str | None = None
    """Push to this Sightglass server (remote-write + catalog)."""
    listen: str | None = None
    """Or serve ``/metrics`` on HOST:PORT for a Prometheus (or Sightglass) scrape."""
    interval: str = "10s"
    hostname: str = Field(default_factory=socket.gethostname)
    hostname_label: Literal["Hostname", "hostname"] = "Hostname"
    """dcgm-exporter's host label: ``Hostname`` up to 4.5.x, ``hostname`` on its main branch."""
    job: str = "sightglass-agent"
    spool_dir: str = "./sightglass-agent-spool"
    spool_max_bytes: int = 256 * 1024 * 1024
    max_backoff: str = "30s"
    expected_gpus: int | None = None
    """GPUs this node should have; fewer present raises ``gpu.missing`` (a GPU fell off the bus)."""
    collectors: list[str] = Field(default_factory=lambda: list(ALL_COLLECTORS))
    procfs: str = "/proc"
    sysfs: str = "/sys"
    kubelet_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    slurm_bin: str = ""
    """Directory of squeue/scontrol/sacct; empty = search PATH."""
    config_every: str = "5m"
    """How often to send a config snapshot even when nothing changed."""
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    @field_validator("interval", "max_backoff", "config_every")
    @classmethod
    def _duration(cls, v: str) -> str:
        if parse_duration_ms(v) <= 0:
            raise ValueError("must be a positive duration")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_listen(v)
        return v

    @field_validator("server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"server must be an http:// or https:// URL, got {v!r}")
        return v

    @field_validator("collectors")
    @classmethod
    def _collectors(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in ALL_COLLECTORS]
        if bad:
            raise ValueError(f"unknown collector(s) {', '.join(bad)} (known: {', '.join(ALL_COLLECTORS)})")
        return v

    @field_validator("spool_max_bytes")
    @classmethod
    def _spool(cls, v: int) -> int:
        if v < 64 * 1024:
            raise ValueError("must be at least 65536 bytes")
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> AgentConfig:
        if self.server and self.listen:
            raise ValueError("set either server (push) or listen (serve /metrics), not both")
        return self

    @property
    def interval_s(self) -> float:
        return parse_duration_ms(self.interval) / 1000


def load_agent_config(section: dict[str, Any], **overrides: Any) -> AgentConfig:
    """Validate ``[agent]`` plus command-line overrides; errors name the setting."""
    raw = dict(section)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "agent"
            lines.append(f"  agent.{loc}: {err['msg']}" if loc != "agent" else f"  agent: {err['msg']}")
        raise ConfigError("invalid [agent] configuration:\n" + "\n".join(lines)) from None
