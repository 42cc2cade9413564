"""Shared by the cost tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sightglass.timeutil import parse_time_ms

SIM_START = parse_time_ms("2026-11-16T00:00:00Z")
SIM_MINUTES = 45


@dataclass
class SimFactory:
    data: Path
    sim: Any
    start_ms: int
    end_ms: int
