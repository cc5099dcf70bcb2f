"""timer1.forecast.calibrate and .band: the scale each outcome needs, by hand; the pooled factor hits
its coverage; per-level factors widen each level by its own and cover each level held out."""

from pathlib import Path

import numpy as np
import pytest

from timer1.core.slow_think import SlowThinkResult
from timer1.forecast.band import BAND_LEVELS, BandCalibration, widen_result
from timer1.forecast.calibrate import COVERAGES, band_scale, calibrate, needed_scale


def test_needed_scale_by_hand():
    median = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    low = np.array([8.0, 8.0, 10.0, 8.0, 8.0])
    high = np.array([11.0, 11.0, 11.0, 10.0, 11.0])
    outcome = np.array([13.0, 7.0, 9.0, 12.0, 10.0])
    # above: (13-10)/(11-10) = 3; below: (10-7)/(10-8) = 1.5; empty low side -> inf; empty high -> inf; on the median -> 0
    np.testing.assert_array_equal(needed_scale(median, low, high, outcome), [3.0, 1.5, np.inf, np.inf, 0.0])


def test_band_scale_reaches_the_level():
    rng = np.random.default_rng(0)
    medians, lows, highs, outcomes = [], [], [], []
    for _ in range(200):  # a band of +-1 around the truth's centre, outcomes with std 2: far too narrow
        centre = rng.normal(size=12)
        medians.append(centre)
        lows.append(centre - 1.0)
        highs.append(centre + 1.0)
        outcomes.append(centre + 2.0 * rng.normal(size=12))
    c = band_scale(medians, lows, highs, outcomes, level=0.8)
    assert c == pytest.approx(2.0 * 1.2816, rel=0.08)  # 80% of N(0, 2^2) lies within +-2.563
    covered = [np.mean((y >= m + c * (lo - m)) & (y <= m + c * (hi - m)))
               for m, lo, hi, y in zip(medians, lows, highs, outcomes)]
    assert np.mean(covered) == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError, match="level"):
        band_scale(medians, lows, highs, outcomes, level=1.0)


def drafts_result(samples: np.ndarray) -> SlowThinkResult:
    return SlowThinkResult(np.median(samples, axis=0), {0.1: None}, samples, [], [], len(samples), 0, 1)


def test_each_level_is_widened_by_the_factor_of_its_own_coverage():
    drafts = np.linspace(-1.0, 1.0, 101)[:, None] + np.array([0.0, 5.0])   # (101, 2): level l sits at 2l - 1
    calibration = BandCalibration((0.5, 0.9), (1.0, 3.0))
    wide = widen_result(drafts_result(drafts), calibration).samples
    assert wide.shape == (len(BAND_LEVELS), 2)
    # coverage 0.9 (level 0.05): x3; 0.5 (0.25): x1; 0.7 (0.15): halfway, x2; 0.98 (0.01): beyond the table, x3
    for level, value in ((0.05, -0.9 * 3), (0.25, -0.5), (0.15, -0.7 * 2), (0.01, -0.98 * 3), (0.5, 0.0),
                         (0.95, 0.9 * 3), (0.85, 0.7 * 2)):
        np.testing.assert_allclose(np.quantile(wide, level, axis=0), [value, 5 + value], atol=1e-12)
    same = drafts_result(drafts)
    assert widen_result(same, BandCalibration()) is same       # uncalibrated: the drafts themselves
    one = drafts_result(drafts[:1])
    assert widen_result(one, calibration) is one                # one draft: no band to widen


def test_calibrated_levels_cover_their_share_of_new_outcomes():
    """A fake model whose drafts spread uniformly over +-1 while outcomes have std 2: each coverage's
    factor is 2 z / c by hand (z the normal quantile), and the widened band covers every level on fresh
    outcomes, the levels between the calibrated ones too."""
    from types import SimpleNamespace

    rng = np.random.default_rng(1)
    horizon, n = 8, 400
    windows = [SimpleNamespace(horizon=horizon, target=2.0 * rng.normal(size=horizon)) for _ in range(n)]

    def forecast_windows(group, mode, quantiles, hints):
        assert mode == "slow" and len(hints.seeds) == len(group)
        return SimpleNamespace(point=np.zeros((len(group), horizon)),
                               quantiles={q: np.full((len(group), horizon), 2 * q - 1) for q in quantiles})

    found = calibrate(SimpleNamespace(forecast_windows=forecast_windows), windows)
    z = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.9600}
    for c in COVERAGES:
        assert found.scales[c] == pytest.approx(2 * z[c] / c, rel=0.08)
        assert found.raw_coverage[c] == pytest.approx(np.mean(np.abs(2.0 * rng.normal(size=20000)) <= c), abs=0.03)
    calibration = BandCalibration(tuple(found.scales), tuple(found.scales.values()))
    wide = widen_result(drafts_result(np.linspace(-1.0, 1.0, 201)[:, None]), calibration).samples[:, 0]
    fresh = 2.0 * rng.normal(size=200000)
    for c in (0.5, 0.7, 0.8, 0.9, 0.95):   # 0.7: between calibrated coverages
        low, high = np.quantile(wide, [(1 - c) / 2, (1 + c) / 2])
        assert np.mean((fresh >= low) & (fresh <= high)) == pytest.approx(c, abs=0.04)


def test_a_band_with_no_width_cannot_be_calibrated():
    flat = [np.zeros(4)] * 3
    with pytest.raises(ValueError, match="no width"):
        band_scale(flat, flat, flat, [np.ones(4)] * 3)


def test_a_models_calibration_widens_its_band_and_nothing_else(tmp_path):
    """The same model with and without a calibration file: same median, the band twice as wide."""
    import json
    import shutil

    from timer1 import Forecaster
    from timer1.forecast.band import CALIBRATION_FILE, read_band_calibration

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "timer1" / "checkpoints" / "timer1-tiny", model)
    (model / CALIBRATION_FILE).unlink(missing_ok=True)          # the shipped model's own scale: off
    history = 50 + 10 * np.sin(np.arange(120) * 2 * np.pi / 24)
    plain = Forecaster.from_pretrained(model).predict(history, 24, seed=3, mode="slow")   # the drafts' band
    assert (plain.quantiles[0.9] > plain.quantiles[0.1]).any()  # a real band to widen
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scale": 2.0}))
    wide = Forecaster.from_pretrained(model).predict(history, 24, seed=3, mode="slow")
    np.testing.assert_allclose(wide.point, plain.point)
    for q in (0.1, 0.9):
        np.testing.assert_allclose(wide.quantiles[q] - wide.point, 2.0 * (plain.quantiles[q] - plain.point), atol=1e-9)
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scale": -1}))
    with pytest.raises(ValueError, match="positive"):
        read_band_calibration(model)
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scales": {"0.5": 1.5, "0.9": 3.0}}))
    assert read_band_calibration(model) == BandCalibration((0.5, 0.9), (1.5, 3.0))
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scales": [2.0]}))
    with pytest.raises(ValueError, match="not a calibration file"):
        read_band_calibration(model)


def test_cli_bad_model_is_one_line(tmp_path, capsys):
    from timer1.forecast.calibrate import main

    assert main([str(tmp_path / "no_model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_model" in err[0]
