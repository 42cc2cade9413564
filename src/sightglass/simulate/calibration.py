"""The simulator's calibration table: quantiles and profiles reduced from public traces.

``data/calibration.json`` is produced by ``scripts/calibrate.py`` from ``../shared/data/traces``
(Acme utilisation quantiles, Splitwise latency profile, Vidur NCCL timings, Alibaba PAI stragglers,
Azure LLM 2023 / Mooncake arrivals and token lengths, Azure VM disk noise). It ships in the package so
the simulator runs without the traces.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

QUANTILE_POINTS = np.linspace(0.0, 1.0, 101)


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The calibration table (parsed once)."""
    text = resources.files("sightglass.simulate").joinpath("data/calibration.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def shared_dir(repo_root: str | os.PathLike[str] | None = None) -> Path:
    """Where the raw public traces live: ``$SIGHTGLASS_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("SIGHTGLASS_SHARED")
    if env:
        return Path(env)
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[3]
    return root.parent / "shared"


def sample_quantiles(rng: np.random.Generator, q_values: list[float] | np.ndarray, n: int) -> np.ndarray:
    """Inverse-CDF sampling from 101 quantile points (linear between them)."""
    u = rng.random(n)
    return np.interp(u, QUANTILE_POINTS, np.asarray(q_values, dtype=np.float64))


def busy_quantiles(q_values: list[float], floor: float) -> np.ndarray:
    """The quantiles of the part of a distribution above ``floor`` (e.g. non-idle GPUs)."""
    v = np.asarray(q_values, dtype=np.float64)
    above = v[v > floor]
    if len(above) < 2:
        return v
    return np.interp(QUANTILE_POINTS, np.linspace(0, 1, len(above)), above)


def acme(column: str) -> list[float]:
    q: list[float] = table()["acme"]["quantiles"][column]
    return q


class LatencyProfile:
    """TTFT(prompt) at batch 1 and TBT(batch) at prompt 512 from the Splitwise profile (Llama2-70B)."""

    def __init__(self, key: str) -> None:
        p = table()["splitwise"][key]
        self.key = key
        self.prompt = np.log(np.asarray(p["prompt_tokens"], dtype=np.float64))
        self.ttft = np.asarray(p["ttft_ms"], dtype=np.float64) / 1000.0
        self.batch = np.log(np.asarray(p["batch"], dtype=np.float64))
        self.tbt = np.asarray(p["tbt_ms"], dtype=np.float64) / 1000.0

    def ttft_s(self, prompt_tokens: np.ndarray) -> np.ndarray:
        """Prefill time in seconds (log-linear interpolation, linear extrapolation above 8k)."""
        x = np.log(np.maximum(prompt_tokens, 1.0))
        base = np.interp(x, self.prompt, self.ttft)
        top = float(np.exp(self.prompt[-1]))
        over = np.maximum(np.asarray(prompt_tokens, dtype=np.float64) / top, 1.0)
        return np.asarray(base * over)

    def tbt_s(self, batch: np.ndarray | float) -> np.ndarray:
        x = np.log(np.maximum(np.asarray(batch, dtype=np.float64), 1.0))
        slope = (self.tbt[-1] - self.tbt[-2]) / (self.batch[-1] - self.batch[-2])
        extra = np.maximum(x - self.batch[-1], 0.0) * slope
        return np.asarray(np.interp(x, self.batch, self.tbt) + extra)


def latency_profile(gpu: str, tp: int = 8, power_capped: bool = False) -> LatencyProfile:
    hw = "a100-80gb" if gpu == "A100" else ("h100-80gb-pcap" if power_capped else "h100-80gb")
    return LatencyProfile(f"{hw}/tp{tp}")


def all_reduce_s(gpu: str, nbytes: float) -> float:
    """Intra-node 8-GPU NCCL all-reduce latency (Vidur DGX profile), linear beyond 64 MiB."""
    p = table()["vidur_all_reduce"]["a100_dgx" if gpu == "A100" else "h100_dgx"]
    sizes = np.asarray(p["bytes"], dtype=np.float64)
    ms = np.asarray(p["ms"], dtype=np.float64)
    if nbytes <= sizes[-1]:
        return float(np.interp(nbytes, sizes, ms)) / 1000.0
    return float(ms[-1] * nbytes / sizes[-1]) / 1000.0


def inference_trace(name: str) -> dict[str, Any]:
    t: dict[str, Any] = table()["inference_traces"][name]
    return t
