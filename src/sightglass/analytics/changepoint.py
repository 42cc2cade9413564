"""Change points with onset times: a two-sided CUSUM on robust z-scores, per series.

``S+ = max(0, S+ + z - k)`` and ``S- = max(0, S- - z - k)``; an alarm when either passes ``h``. The
onset is the last row at which the alarming sum was zero: when the shift began, not when it was
noticed. After an alarm the sums restart, so a lasting shift is reported once per episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class ChangePointConfig:
    """``drift`` (k): the z a change must exceed on average; ``threshold`` (h): evidence needed;
    ``cap``: one sample contributes at most this much (a single spike is not a change)."""

    drift: float = 1.0
    threshold: float = 12.0
    cap: float = 6.0


@dataclass(frozen=True, slots=True)
class ChangePoint:
    series: int
    onset_ms: int
    detected_ms: int
    direction: str  # up | down
    magnitude: float  # mean z from onset to detection

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "onset_ms": self.onset_ms,
            "detected_ms": self.detected_ms,
            "direction": self.direction,
            "magnitude": round(self.magnitude, 3),
        }


@dataclass(slots=True)
class CusumDetector:
    config: ChangePointConfig = field(default_factory=ChangePointConfig)
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0))
    neg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pos_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    neg_start: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pos_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    neg_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pos_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    neg_n: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, n_series: int) -> CusumDetector:
        """Start clean sums for ``n_series`` series."""
        self._grow(n_series)
        return self

    def detect(self, z: np.ndarray, ts_ms: np.ndarray) -> list[ChangePoint]:
        """Feed a block of z-scores (rows x series, NaN = no evidence); the changes it completes."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != ts_ms.shape[0]:
            raise ValueError("z must be rows x series with one timestamp per row")
        self._grow(z.shape[1])
        return self._detect_core(z, ts_ms)

    def _grow(self, n: int) -> None:
        extra = n - self.pos.shape[0]
        if extra <= 0:
            return
        for name in ("pos", "neg", "pos_sum", "neg_sum", "pos_n", "neg_n"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))
        for name in ("pos_start", "neg_start"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, dtype=np.int64)]))

    def _detect_core(self, z: np.ndarray, ts_ms: np.ndarray) -> list[ChangePoint]:
        c = self.config
        out: list[ChangePoint] = []
        for i in range(z.shape[0]):
            zi = np.clip(np.nan_to_num(z[i], nan=0.0), -c.cap, c.cap)
            t = int(ts_ms[i])
            for sign, acc, start, tot, cnt in (
                (1.0, "pos", "pos_start", "pos_sum", "pos_n"),
                (-1.0, "neg", "neg_start", "neg_sum", "neg_n"),
            ):
                s = getattr(self, acc)
                was_zero = s <= 0
                st = getattr(self, start)
                st[was_zero] = t
                s = np.maximum(0.0, s + sign * zi - c.drift)
                sm, n = getattr(self, tot), getattr(self, cnt)
                sm = np.where(was_zero, 0.0, sm) + np.where(s > 0, sign * zi, 0.0)
                n = np.where(was_zero, 0.0, n) + (s > 0)
                fired = np.flatnonzero(s > c.threshold)
                for j in fired:
                    out.append(
                        ChangePoint(
                            int(j),
                            int(st[j]),
                            t,
                            "up" if sign > 0 else "down",
                            float(sign * sm[j] / max(n[j], 1.0)),
                        )
                    )
                s[fired] = 0.0
                setattr(self, acc, s)
                setattr(self, tot, sm)
                setattr(self, cnt, n)
        return out
