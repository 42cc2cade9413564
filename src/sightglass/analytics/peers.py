"""Peer comparison: the outlier among things that should behave alike.

The GPUs of a node, the GPUs (ranks) of a job, the replicas of a service and the nodes of a rack
share load and configuration; a member far from its peers' median (in peer MADs) is the suspect,
even when the whole fleet moved together.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sightglass.analytics.baseline import MAD_TO_SIGMA


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """A group needs ``min_size`` members with data; the peer scale floor mirrors the baseline's."""

    min_size: int = 3
    rel_floor: float = 0.02
    abs_floor: float = 1e-6


def peer_zscores(
    values: np.ndarray, groups: Sequence[np.ndarray], config: PeerConfig | None = None
) -> np.ndarray:
    """Peer z of every member (rows x series); NaN outside groups of ``min_size`` members.

    ``groups`` are column indexes of ``values`` holding the *same signal* of peer entities.
    """
    cfg = config or PeerConfig()
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g in groups:
            if len(g) < cfg.min_size:
                continue
            block = v[:, g]
            med = np.nanmedian(block, axis=1, keepdims=True)
            mad = np.nanmedian(np.abs(block - med), axis=1, keepdims=True) * MAD_TO_SIGMA
            scale = np.maximum(mad, cfg.rel_floor * np.abs(med) + cfg.abs_floor)
            z = (block - med) / scale
            enough = np.sum(np.isfinite(block), axis=1, keepdims=True) >= cfg.min_size
            out[:, g] = np.where(enough, z, np.nan)
    return out
