"""Metrics of timer1.core.metrics: values worked out by hand in the comments, CRPS against brute force."""

import itertools
import math

import numpy as np
import pytest

from timer1.core.metrics import correlation, crps, mae, mape, mase, mse


@pytest.mark.parametrize("fn, pred, target, expected", [
    (mse, [1, 2, 3], [2, 2, 5], 5 / 3),          # errors -1, 0, -2 -> (1 + 0 + 4) / 3
    (mae, [1, 2, 3], [2, 2, 5], 1.0),            # (1 + 0 + 2) / 3
    (mse, [[1, 2], [3, 4]], [[1, 2], [3, 6]], 1.0),  # any shape: 4 / 4 entries
    (mape, [110, 0, 5], [100, 0, 4], 0.175),     # zero target masked: (10/100 + 1/4) / 2
    (mape, [1, 1], [0, 0], math.nan),            # every entry masked
])
def test_point_metrics(fn, pred, target, expected):
    value = fn(np.array(pred, dtype=float), np.array(target, dtype=float))
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected)


@pytest.mark.parametrize("history, expected", [
    ([1, 3, 2, 4], 0.6),            # |diffs| 2, 1, 2 -> scale 5/3; MAE 1 -> 3/5
    ([1, np.nan, 2, 4], 0.5),       # pairs with NaN skipped: only |4-2| = 2
    ([5, 5, 5], math.nan),          # zero scale, imperfect forecast
])
def test_mase(history, expected):
    value = mase(np.array([5.0, 5.0]), np.array([4.0, 6.0]), np.array(history, dtype=float))
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected)


def test_mase_zero_scale_perfect_and_errors():
    assert mase(np.array([5.0]), np.array([5.0]), np.array([5.0, 5.0])) == 0.0
    with pytest.raises(ValueError, match="no finite pair"):
        mase(np.array([1.0]), np.array([1.0]), np.array([1.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match="no finite pair"):
        mase(np.array([1.0]), np.array([1.0]), np.array([1.0]))


def test_crps_by_hand():
    # samples {0, 2}, truth 1: E|X - y| = 1; E|X - X'| over 4 pairs = (0 + 2 + 2 + 0) / 4 = 1 -> 1 - 0.5
    assert crps(np.array([[0.0], [2.0]]), np.array([1.0])) == pytest.approx(0.5)
    assert crps(np.array([[3.0], [3.0]]), np.array([3.0])) == 0.0   # point mass at the truth
    one = np.array([[1.0, 5.0]])                                    # one sample: CRPS = MAE
    assert crps(one, np.array([2.0, 2.0])) == pytest.approx(mae(one[0], np.array([2.0, 2.0])))


def test_crps_matches_brute_force_pairs():
    rng = np.random.default_rng(0)
    samples, target = rng.normal(size=(7, 3)), rng.normal(size=3)
    brute = []
    for j in range(3):
        xs = samples[:, j]
        to_truth = np.mean(np.abs(xs - target[j]))
        pairs = np.mean([abs(a - b) for a, b in itertools.product(xs, xs)])
        brute.append(to_truth - 0.5 * pairs)
    assert crps(samples, target) == pytest.approx(np.mean(brute))


@pytest.mark.parametrize("fn", [mse, mae, mape])
def test_bad_inputs_raise(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        fn(np.ones(2), np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), np.array([]))


def test_crps_shape_error():
    with pytest.raises(ValueError, match="samples shape"):
        crps(np.ones((4, 3)), np.ones(2))


def test_correlation_by_hand():
    # a = (1, 2, 3), b = (1, 3, 2): centred (-1, 0, 1) and (-1, 1, 0): 1 / sqrt(2 * 2) = 0.5
    assert correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert correlation([4, 4, 4], [1, 2, 3]) == 0.0                  # constant: no relation, not NaN
    with pytest.raises(ValueError, match="shapes differ"):
        correlation([1, 2], [1, 2, 3])
