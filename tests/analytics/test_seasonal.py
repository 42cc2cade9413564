"""Seasonal baselines: a recurring daily pattern stops being an anomaly once seen on two days,
while a shift at another hour still is."""

from __future__ import annotations

import numpy as np
import pytest

from sightglass.analytics.baseline import BaselineConfig, RobustBaseline

DAY = 86_400_000
STEP = 60_000


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    ts = np.arange(4 * DAY // STEP, dtype=np.int64) * STEP
    hour = (ts % DAY) // 3_600_000
    v = 100.0 + rng.standard_normal((len(ts), 2))
    v[hour == 2] += 30.0  # a nightly batch job: 02:00-03:00 every day, on both series
    noon_day4 = (ts >= 3 * DAY + 12 * 3_600_000) & (ts < 3 * DAY + 13 * 3_600_000)
    v[noon_day4, 1] += 30.0  # a real shift, once, on series 1
    return ts, v


def _flagged(seasonal: bool) -> tuple[int, int]:
    ts, v = _data()
    cfg = BaselineConfig(seasonal=seasonal)
    b = RobustBaseline(cfg).fit(v[:60], ts[:60])
    z = b.detect(v[60:], ts[60:]).z
    t = ts[60:]
    night4 = (t >= 3 * DAY + 2 * 3_600_000) & (t < 3 * DAY + 3 * 3_600_000)
    noon4 = (t >= 3 * DAY + 12 * 3_600_000) & (t < 3 * DAY + 12 * 3_600_000 + 10 * STEP)
    return int(np.sum(np.abs(z[night4]) > 8)), int(np.sum(np.abs(z[noon4, 1]) > 8))


def test_profile_absorbs_the_daily_pattern_not_a_real_shift() -> None:
    night_plain, noon_plain = _flagged(False)
    night_seasonal, noon_seasonal = _flagged(True)
    assert night_plain > 0  # without a profile the nightly job fires every night
    assert night_seasonal == 0  # learnt after two nights
    assert noon_plain > 0 and noon_seasonal > 0  # the one-off shift is still caught


def test_profile_needs_two_days_and_valid_config() -> None:
    ts, v = _data()
    b = RobustBaseline(BaselineConfig(seasonal=True)).fit(v[:60], ts[:60])
    b.detect(v[60 : DAY // STEP], ts[60 : DAY // STEP])  # one day only
    assert np.all(b.seasonal_offset(2 * 3_600_000 + DAY) == 0)  # seen once: not applied yet
    b.detect(v[DAY // STEP : 2 * DAY // STEP + 200], ts[DAY // STEP : 2 * DAY // STEP + 200])
    off = b.seasonal_offset(2 * DAY + 2 * 3_600_000)
    assert np.all(off > 15)  # most of the +30 (the level took part of it on the first night)
    assert np.all(np.abs(b.seasonal_offset(2 * DAY + 8 * 3_600_000)) < 2)
    assert not np.any(RobustBaseline().seasonal_offset(0))  # off by default
    with pytest.raises(ValueError, match="divide"):
        BaselineConfig(season_bins=7)
