"""The deploy files parse, describe three replicas, and their configuration validates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from sightglass.config import Config
from sightglass.scaleout.config import load_backends

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _validate(text: str) -> None:
    raw = tomllib.loads(
        text.replace("@SIGHTGLASS_PG_DSN@", "postgresql://u@h/db").replace("@POD_NAME@", "pod-0")
    )
    cfg = Config.model_validate(raw)
    b = load_backends(cfg.backends)
    assert b.replicas.enabled and b.catalog.kind == "postgres" and b.metrics is not None


def test_kubernetes_manifests_run_three_replicas() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "sightglass.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ConfigMap", "Secret", "Deployment", "Service"}
    assert kinds["Deployment"]["spec"]["replicas"] == 3
    _validate(kinds["ConfigMap"]["data"]["sightglass.toml"])


def test_systemd_unit_and_shared_config() -> None:
    unit = (DEPLOY / "systemd" / "sightglass@.service").read_text()
    assert "ExecStart=/usr/local/bin/sightglass up" in unit and "%i" in unit
    _validate((DEPLOY / "sightglass.toml").read_text())
