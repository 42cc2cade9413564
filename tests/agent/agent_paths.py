"""Paths the agent tests read: recorded fixtures, and the shared exporter outputs beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("SIGHTGLASS_SHARED", REPO.parent / "shared"))
EXPOSITION = SHARED / "data" / "exposition"
