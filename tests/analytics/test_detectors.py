"""The detectors on synthetic data: baselines, change points, peers."""

from __future__ import annotations

import numpy as np
import pytest

from sightglass.analytics.baseline import BaselineConfig, RobustBaseline
from sightglass.analytics.changepoint import ChangePointConfig, CusumDetector
from sightglass.analytics.peers import peer_zscores


def _noise(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 2.0, size=(rows, cols))


def test_baseline_scores_a_shift_and_ignores_noise() -> None:
    hist = _noise(200, 3)
    b = RobustBaseline().fit(hist)
    assert b.loc == pytest.approx([100, 100, 100], abs=0.6)
    assert b.scale == pytest.approx([2, 2, 2], rel=0.25)
    new = _noise(50, 3, seed=1)
    new[20:, 1] += 40  # a 20-sigma shift on series 1
    z = b.detect(new).z
    assert np.nanmax(np.abs(z[:, [0, 2]])) < 5
    assert np.all(z[20:30, 1] > 10)


def test_baseline_is_robust_to_outliers_in_history_and_incremental() -> None:
    hist = _noise(300, 1)
    hist[::10] += 500  # 10 % garbage
    b = RobustBaseline().fit(hist)
    assert b.loc[0] == pytest.approx(100, abs=1)
    # feeding in two blocks equals feeding in one (state carries over)
    new = _noise(60, 1, seed=2)
    b1 = RobustBaseline().fit(hist)
    whole = b1.detect(new).z
    b2 = RobustBaseline().fit(hist)
    parts = np.concatenate([b2.detect(new[:25]).z, b2.detect(new[25:]).z])
    np.testing.assert_allclose(whole, parts)


def test_baseline_new_series_warm_up_and_reset() -> None:
    b = RobustBaseline(BaselineConfig(warmup=5)).fit(_noise(50, 1))
    z = b.detect(_noise(10, 2, seed=3)).z  # a second series appears
    assert np.isnan(z[:5, 1]).all() and np.isfinite(z[5:, 1]).all()
    b.reset(np.array([0]))
    assert np.isnan(b.detect(_noise(3, 2)).z[:, 0]).all()


def test_baseline_flat_series_uses_floor() -> None:
    b = RobustBaseline().fit(np.zeros((50, 1)))
    z = b.detect(np.array([[0.0], [79.0]])).z
    assert z[0, 0] == 0 and z[1, 0] > 1e6  # an XID on a GPU that never had one
    with pytest.raises(ValueError):
        b.detect(np.zeros((2, 2, 2)))


def test_cusum_onset_before_detection() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0, 1, size=(120, 2))
    z[60:, 0] += 3.0  # a shift of 3 robust sigmas from row 60
    ts = np.arange(120, dtype=np.int64) * 10_000
    cps = CusumDetector(ChangePointConfig()).fit(2).detect(z, ts)
    first = next(c for c in cps if c.series == 0)
    assert first.direction == "up"
    assert 55 * 10_000 <= first.onset_ms <= 61 * 10_000 < first.detected_ms <= 70 * 10_000
    assert first.magnitude > 1.5
    assert not [c for c in cps if c.series == 1]
    assert set(first.to_dict()) == {"series", "onset_ms", "detected_ms", "direction", "magnitude"}


def test_peer_outlier() -> None:
    v = _noise(20, 8)
    v[:, 5] *= 0.5  # one throttled GPU of eight
    pz = peer_zscores(v, [np.arange(8)])
    assert np.all(np.abs(pz[:, 5]) > 10)
    assert np.nanmedian(np.abs(pz[:, [0, 1, 2, 3, 4, 6, 7]])) < 2
    # a group too small has no peer score
    assert np.isnan(peer_zscores(v, [np.arange(2)])).all()
