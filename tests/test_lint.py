"""Lint and type checks run as part of the suite, so CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    if shutil.which("ruff") is None and not (REPO / ".venv/bin/ruff").exists():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = _run(sys.executable, "-m", "ruff", "check", "src", "tests", "bench", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean() -> None:
    r = _run(sys.executable, "-m", "mypy", "src/sightglass")
    assert r.returncode == 0, r.stdout + r.stderr
