"""timer1.forecast.calibrate: the scale each outcome needs, by hand; the pooled factor hits its coverage."""

from pathlib import Path

import numpy as np
import pytest

from timer1.forecast.band import widen
from timer1.forecast.calibrate import band_scale, needed_scale


def test_needed_scale_by_hand():
    median = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    low = np.array([8.0, 8.0, 10.0, 8.0, 8.0])
    high = np.array([11.0, 11.0, 11.0, 10.0, 11.0])
    outcome = np.array([13.0, 7.0, 9.0, 12.0, 10.0])
    # above: (13-10)/(11-10) = 3; below: (10-7)/(10-8) = 1.5; empty low side -> inf; empty high -> inf; on the median -> 0
    np.testing.assert_array_equal(needed_scale(median, low, high, outcome), [3.0, 1.5, np.inf, np.inf, 0.0])


def test_band_scale_reaches_the_level_and_widen_applies_it():
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
    wide = {q: widen(medians[0], v, c) for q, v in {0.1: lows[0], 0.5: medians[0], 0.9: highs[0]}.items()}
    np.testing.assert_allclose(wide[0.9] - medians[0], c)
    np.testing.assert_array_equal(wide[0.5], medians[0])
    with pytest.raises(ValueError, match="level"):
        band_scale(medians, lows, highs, outcomes, level=1.0)


def test_a_band_with_no_width_cannot_be_calibrated():
    flat = [np.zeros(4)] * 3
    with pytest.raises(ValueError, match="no width"):
        band_scale(flat, flat, flat, [np.ones(4)] * 3)


def test_a_models_calibration_widens_its_band_and_nothing_else(tmp_path):
    """The same model with and without a calibration file: same median, the band twice as wide."""
    import json
    import shutil

    from timer1 import Forecaster
    from timer1.forecast.band import CALIBRATION_FILE, read_band_scale

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[1] / "checkpoints" / "timer1-tiny", model)
    (model / CALIBRATION_FILE).unlink(missing_ok=True)          # the shipped model's own scale: off
    history = 50 + 10 * np.sin(np.arange(120) * 2 * np.pi / 24)
    plain = Forecaster.from_pretrained(model).predict(history, 24, seed=3)
    assert (plain.quantiles[0.9] > plain.quantiles[0.1]).any()  # a real band to widen
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scale": 2.0}))
    wide = Forecaster.from_pretrained(model).predict(history, 24, seed=3)
    np.testing.assert_allclose(wide.point, plain.point)
    for q in (0.1, 0.9):
        np.testing.assert_allclose(wide.quantiles[q] - wide.point, 2.0 * (plain.quantiles[q] - plain.point), atol=1e-9)
    (model / CALIBRATION_FILE).write_text(json.dumps({"band_scale": -1}))
    with pytest.raises(ValueError, match="positive"):
        read_band_scale(model)


def test_cli_bad_model_is_one_line(tmp_path, capsys):
    from timer1.forecast.calibrate import main

    assert main([str(tmp_path / "no_model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_model" in err[0]
