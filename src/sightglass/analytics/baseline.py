"""Robust, incremental baselines: one location and scale per series, updated per batch.

The location and scale are exponentially weighted M-estimates (a Huber-clipped EWMA): a sample
further than ``clip`` scales from the location moves it no more than one at ``clip`` would, so a
fault does not drag its own baseline along. ``fit`` starts them from the median and MAD of a
history window; ``detect`` scores a block of new rows and folds it in. State is a few numpy arrays,
vectorised over series; nothing is recomputed per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAD_TO_SIGMA = 1.4826
# E[min(z^2, c^2)] for a standard normal and c = 3: keeps the clipped scale update unbiased
_CLIPPED_VAR_3 = 0.9733


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """``alpha``/``beta``: EWMA weights of location and scale per sample (0.02 ≈ a 50-sample
    memory; the scale moves slower, so a lasting fault does not inflate it away); ``clip``: Huber clip in scales; ``warmup``: samples before a (re)started series is
    scored; ``rel_floor``/``abs_floor``: the scale never drops below ``rel_floor·|location| +
    abs_floor`` (flat series such as error counters would otherwise score infinitely)."""

    alpha: float = 0.02
    beta: float = 0.005
    clip: float = 3.0
    warmup: int = 12
    rel_floor: float = 0.02
    abs_floor: float = 1e-6
    # seasonality (opt-in): a time-of-day profile of the residual, ``season_bins`` per period; a bin
    # is applied once it was seen on ``season_min_days`` distinct periods (days)
    seasonal: bool = False
    season_bins: int = 24
    season_period_ms: int = 86_400_000
    season_min_days: int = 2
    season_alpha: float = 0.0005  # ~2,000 samples of a bin: about 5 days of one hour at 10 s

    def __post_init__(self) -> None:
        if self.season_bins < 1 or self.season_period_ms % self.season_bins:
            raise ValueError("season_bins must divide season_period_ms")
        if self.season_min_days < 1:
            raise ValueError("season_min_days must be >= 1")


@dataclass(slots=True)
class BaselineScores:
    """Robust z-scores of a block of rows (``NaN`` where a series had no sample or is warming up)."""

    ts_ms: np.ndarray
    z: np.ndarray  # (rows, series)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts_ms": self.ts_ms.tolist(),
            "z": [[float(x) if np.isfinite(x) else None for x in row] for row in self.z],
        }


@dataclass(slots=True)
class RobustBaseline:
    """Location/scale per series. ``fit(history)`` then ``detect(block)`` as many times as data comes."""

    config: BaselineConfig = field(default_factory=BaselineConfig)
    loc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    min_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # seasonal profile (bins x series): mean residual, samples, distinct days seen, last day seen
    prof: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pcount: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pdays: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    plast: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    @property
    def n_series(self) -> int:
        return int(self.loc.shape[0])

    def fit(self, values: np.ndarray, ts_ms: np.ndarray | None = None) -> RobustBaseline:
        """Start every series from the median/MAD of ``values`` (rows x series). With a seasonal
        config and ``ts_ms``, the history also seeds the time-of-day profile."""
        v = _check(values)
        self._fit_core(v)
        if self.config.seasonal and ts_ms is not None and len(ts_ms) == v.shape[0]:
            self._season_learn(v, np.asarray(ts_ms, dtype=np.int64))
        return self

    def seasonal_offset(self, ts_ms: int) -> np.ndarray:
        """The profile's offset per series at ``ts_ms`` (0 where the bin is not learnt yet)."""
        if not self.config.seasonal or self.prof.shape[1] != self.n_series:
            return np.zeros(self.n_series)
        b = self._bin(int(ts_ms))
        return np.where(self.pdays[b] >= self.config.season_min_days, self.prof[b], 0.0)

    def detect(self, values: np.ndarray, ts_ms: np.ndarray | None = None) -> BaselineScores:
        """Score each row against the baseline as it was before that row, then update it."""
        v = _check(values)
        if v.shape[1] != self.n_series:
            self.grow(v.shape[1])
        ts = ts_ms if ts_ms is not None else np.arange(v.shape[0], dtype=np.int64)
        return BaselineScores(ts, self._detect_core(v, ts if ts_ms is not None else None))

    def grow(self, n: int) -> None:
        """Make room for new series (they start warming up)."""
        extra = n - self.n_series
        if extra <= 0:
            return
        self.loc = np.concatenate([self.loc, np.zeros(extra)])
        self.scale = np.concatenate([self.scale, np.zeros(extra)])
        self.count = np.concatenate([self.count, np.zeros(extra, dtype=np.int64)])
        self.min_scale = np.concatenate([self.min_scale, np.zeros(extra)])
        if self.config.seasonal:
            bins = self.config.season_bins
            pad = np.zeros((bins, extra))
            old = self.prof.shape[1] if self.prof.shape[0] == bins else 0
            if old == 0:
                self.prof, self.pcount = np.zeros((bins, 0)), np.zeros((bins, 0))
                self.pdays = np.zeros((bins, 0), dtype=np.int64)
                self.plast = np.zeros((bins, 0), dtype=np.int64)
            self.prof = np.hstack([self.prof, pad])
            self.pcount = np.hstack([self.pcount, pad])
            self.pdays = np.hstack([self.pdays, np.zeros((bins, extra), dtype=np.int64)])
            self.plast = np.hstack([self.plast, np.full((bins, extra), -1, dtype=np.int64)])

    def reset(self, idx: np.ndarray) -> None:
        """Forget the baseline of these series (a new regime: a job started, a deploy)."""
        self.count[idx] = 0

    # ------------------------------------------------------------------ cores
    def set_min_scale(self, idx: np.ndarray, scale: np.ndarray) -> None:
        """A per-series scale floor (e.g. from its peers, for series flat in the fit window)."""
        self.min_scale[idx] = scale

    def _floor(self, loc: np.ndarray) -> np.ndarray:
        base = self.config.rel_floor * np.abs(loc) + self.config.abs_floor
        return np.maximum(base, self.min_scale) if self.min_scale.shape == loc.shape else base

    def _fit_core(self, v: np.ndarray) -> None:
        n = v.shape[1]
        self.grow(n)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(v, axis=0)
                mad = np.nanmedian(np.abs(v - med), axis=0) * MAD_TO_SIGMA
        seen = np.sum(np.isfinite(v), axis=0)
        ok = seen > 0
        self.loc[:n] = np.where(ok, med, 0.0)
        self.scale[:n] = np.where(ok, np.maximum(np.nan_to_num(mad), self._floor(np.nan_to_num(med))), 0.0)
        self.count[:n] = seen

    def _bin(self, ts_ms: int) -> int:
        c = self.config
        return int((ts_ms % c.season_period_ms) * c.season_bins // c.season_period_ms)

    def _season_learn(self, v: np.ndarray, ts: np.ndarray) -> None:
        """Fold rows into the profile: residual from the level, clipped, per time-of-day bin."""
        c = self.config
        scale = np.maximum(self.scale, self._floor(self.loc))
        for i in range(v.shape[0]):
            x = v[i]
            have = np.isfinite(x)
            if not have.any():
                continue
            b, day = self._bin(int(ts[i])), int(ts[i]) // c.season_period_ms
            p = self.prof[b]
            r = np.clip(np.where(have, x - self.loc, p), p - c.clip * scale, p + c.clip * scale)
            k = self.pcount[b] + have
            w = np.where(have, np.maximum(1.0 / np.maximum(k, 1.0), c.season_alpha), 0.0)
            self.prof[b] = p + w * (r - p)
            self.pcount[b] = k
            new_day = have & (self.plast[b] != day)
            self.pdays[b] = self.pdays[b] + new_day
            self.plast[b] = np.where(have, day, self.plast[b])

    def _detect_core(self, v: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        c = self.config
        out = np.full(v.shape, np.nan)
        seasonal = c.seasonal and ts is not None and self.prof.shape[1] == v.shape[1]
        for i in range(v.shape[0]):
            x = v[i]
            have = np.isfinite(x)
            warm = self.count >= c.warmup
            scale = np.maximum(self.scale, self._floor(self.loc))
            if seasonal:
                assert ts is not None
                raw = x
                off = self.seasonal_offset(int(ts[i]))
                x = x - off  # deseasonalised: the level and scale see what is left
                self._season_learn(np.where(warm, raw, np.nan)[None, :], ts[i : i + 1])
            z = (x - self.loc) / scale
            out[i] = np.where(have & warm, z, np.nan)
            # warming up: plain running mean / mean absolute deviation, fast
            k = self.count + 1.0
            fresh = have & ~warm
            if fresh.any():
                d = np.where(fresh, x - self.loc, 0.0)
                self.loc = np.where(fresh, np.where(self.count == 0, x, self.loc + d / k), self.loc)
                dev = np.abs(np.where(fresh, x - self.loc, 0.0)) * 1.2533  # mean |dev| -> sigma
                self.scale = np.where(
                    fresh, np.where(self.count == 0, 0.0, self.scale + (dev - self.scale) / k), self.scale
                )
            steady = have & warm
            if steady.any():
                zc = np.clip(np.where(steady, z, 0.0), -c.clip, c.clip)
                self.loc = np.where(steady, self.loc + c.alpha * scale * zc, self.loc)
                var = (1 - c.beta) * scale**2 + c.beta * scale**2 * zc**2 / _CLIPPED_VAR_3
                self.scale = np.where(steady, np.sqrt(var), self.scale)
            self.count = self.count + have
        return out


def _check(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"expected rows x series, got shape {v.shape}")
    return v
