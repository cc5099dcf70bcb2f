"""Reward terms of timer1.core.rewards: values worked out by hand in the comments."""

import math
import random

import numpy as np
import pytest
import torch

from timer1.core.rewards import (OFFICIAL, PAPER, RewardOptions, bounded_score, change_point_reward, compute_reward,
                                 count_matches, decompose, find_extrema, format_reward, length_reward, moving_average,
                                 mse_reward, normalize_pair, reward_terms, seasonal_reward, trend_reward)

RAMP = np.array([1.0, 2.0, 3.0, 4.0])  # mean 2.5, population std sqrt(1.25) = 1.1180340


def score(mse, slope):  # 2 * (1 - sigmoid(slope * mse)) written out
    return 2.0 * (1.0 - 1.0 / (1.0 + math.exp(-slope * mse)))


# ------------------------------------------------------------------------------------------ format

@pytest.mark.parametrize("text, strict, expected", [
    ("<think>a</think><answer>1</answer>", True, 0.0),
    ("  <think>a</think>\n\n<answer>1</answer>\n", True, 0.0),        # whitespace around and between
    ("<think>a</think>\n<answer>1</answer><|im_end|>", True, 0.0),   # a decoded end-of-turn marker
    ("<think>\nmulti\nline\n</think>\n<answer>\n1\n2\n</answer>", True, 0.0),
    ("hello <think>a</think><answer>1</answer>", True, -1.0),         # prose before
    ("<think>a</think><answer>1</answer> bye", True, -1.0),           # prose after
    ("<think>a</think>text<answer>1</answer>", True, -1.0),           # prose between
    ("<answer>1</answer>", True, -1.0),                               # no think
    ("<think>a</think>", True, -1.0),                                 # no answer
    ("<think>a</think><answer>1</answer><answer>2</answer>", True, -1.0),  # two answers
    ("<think><think>a</think><answer>1</answer>", True, -1.0),        # nested think
    ("<answer>1</answer><think>a</think>", True, -1.0),               # wrong order
    ("", True, -1.0),
    # official: "<think>..</think>\n<answer>..</answer>" anywhere, exactly one newline between
    ("x<think>a</think>\n<answer>1</answer>y", False, 0.0),
    ("<think>a</think><answer>1</answer>", False, -1.0),
    ("<think>a</think>  \n<answer>1</answer>", False, -1.0),
])
def test_format_reward(text, strict, expected):
    assert format_reward(text, strict) == expected


def test_format_reward_non_string():
    assert format_reward(None) == -1.0


# ------------------------------------------------------------------------------------------ length

@pytest.mark.parametrize("pred, expected", [
    (None, 0.0),
    (np.array([1.0, 2.0]), 0.05),          # 0.1 * 2 / 4
    (np.array([1.0, 2.0, 3.0, 4.0]), 0.1),
    (np.arange(6.0), 0.1),                 # longer than the target: capped at 0.1
])
def test_length_reward(pred, expected):
    assert length_reward(pred, RAMP) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ mse

def test_normalize_pair_by_target_and_by_prediction():
    pred, target = normalize_pair(np.array([2.0, 2.0, 2.0, 2.0]), RAMP, "target")
    s = math.sqrt(1.25)
    np.testing.assert_allclose(target, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s])
    np.testing.assert_allclose(pred, [-0.5 / s] * 4)
    # official: centre on the prediction's mean 2.75, divide by its max |dev| = 2.25
    pred, target = normalize_pair(np.array([1.0, 2.0, 3.0, 5.0]), RAMP, "prediction")
    np.testing.assert_allclose(pred, (np.array([1, 2, 3, 5]) - 2.75) / 2.25)
    np.testing.assert_allclose(target, (RAMP - 2.75) / 2.25)


@pytest.mark.parametrize("pred, options, expected", [
    (RAMP, PAPER, 1.0),                                          # exact: MSE 0 -> 2 * (1 - 1/2)
    (RAMP + math.sqrt(1.25), PAPER, score(1.0, 0.3)),            # off by one target std: MSE 1
    (np.array([2.0, 2.0, 2.0, 2.0]), PAPER, score(1.2, 0.3)),    # z-diffs (.894, 0, -.894, -1.789): MSE (0.8+0+0.8+3.2)/4
    (np.array([1.0, 2.0, 3.0, 5.0]), PAPER, score(0.2, 0.3)),    # last z-diff 1/1.118: 0.8 / 4
    # official: 0.6 * score(slope 2); normalised by the prediction: last diff 1/2.25, MSE (1/2.25)^2/4
    (np.array([1.0, 2.0, 3.0, 5.0]), OFFICIAL, 0.6 * score((1 / 2.25) ** 2 / 4, 2.0)),
    # official on a constant prediction: the denominator is 1e-8, so the reward vanishes
    (np.array([2.0, 2.0, 2.0, 2.0]), OFFICIAL, 0.0),
    (np.array([1.0, 2.0, 3.0]), PAPER, 0.0),                     # shorter than the target
    (None, PAPER, 0.0),                                          # unparsable
    (np.array([1.0, 2.0, 3.0, 4.0, 99.0, -7.0]), PAPER, 1.0),    # longer: first len(target) values used
    (np.array([1.0, np.nan, 3.0, 4.0]), PAPER, 0.0),             # a non-finite value in the horizon
])
def test_mse_reward(pred, options, expected):
    assert mse_reward(pred, RAMP, options) == pytest.approx(expected, abs=1e-12)


def test_mse_reward_constant_target_counts_std_as_one():
    # std 0 -> scale 1, only centred: diffs (0, 0, 0, 1) -> MSE 0.25
    target = np.array([3.0, 3.0, 3.0, 3.0])
    assert mse_reward(np.array([3.0, 3.0, 3.0, 4.0]), target) == pytest.approx(score(0.25, 0.3))
    assert mse_reward(target.copy(), target) == 1.0


def test_bounded_score_is_in_range_and_does_not_overflow():
    assert bounded_score(0.0, 0.3) == 1.0
    assert 0.0 <= bounded_score(1e308, 2.0) < 1e-300
    assert bounded_score(math.inf, 0.3) >= 0.0
    values = [bounded_score(m, 0.3) for m in (0.0, 0.1, 1.0, 10.0)]
    assert values == sorted(values, reverse=True)


# ------------------------------------------------------------------------------------------ decomposition

def test_moving_average_by_hand():
    # kernel 3 pads one copy of each end: [1, 1, 2, 3, 10, 10] -> means of 3 consecutive values
    np.testing.assert_allclose(moving_average(np.array([1.0, 2.0, 3.0, 10.0]), 3), [4 / 3, 2.0, 5.0, 23 / 3])


def test_moving_average_keeps_a_line_away_from_the_edges():
    line = 0.5 * np.arange(100.0) + 2.0
    trend = moving_average(line, 25)
    np.testing.assert_allclose(trend[12:88], line[12:88])   # symmetric window: exact on a line
    assert trend[0] > line[0]                                 # replicated edges pull the ends in


def test_decompose_matches_torch_avg_pool_reference():
    # independent reference: replicate padding then torch's AvgPool1d (Autoformer's series_decomp)
    x = np.random.default_rng(0).normal(size=50)
    seasonal, trend = decompose(x, 25)
    xt = torch.tensor(x)[None, None, :]
    padded = torch.cat([xt[..., :1].repeat(1, 1, 12), xt, xt[..., -1:].repeat(1, 1, 12)], dim=-1)
    reference = torch.nn.functional.avg_pool1d(padded, kernel_size=25, stride=1)[0, 0].numpy()
    np.testing.assert_allclose(trend, reference, atol=1e-12)
    np.testing.assert_allclose(seasonal + trend, x)


def test_moving_average_rejects_even_kernel_and_empty():
    with pytest.raises(ValueError, match="odd"):
        moving_average(np.arange(5.0), 4)
    with pytest.raises(ValueError, match="non-empty"):
        moving_average(np.array([]), 3)


# ------------------------------------------------------------------------------------------ seasonal / trend

def test_seasonal_and_trend_rewards_on_a_level_shift():
    # a constant shift lands entirely in the trend (MA(x + c) = MA(x) + c): seasonal is exact,
    # trend is off by exactly one (normalised) unit -> MSE 1
    target = np.sin(np.arange(48) * 2 * np.pi / 12) + 0.05 * np.arange(48)
    shifted = target + target.std()
    assert seasonal_reward(shifted, target) == pytest.approx(0.5)
    assert trend_reward(shifted, target) == pytest.approx(0.5 * score(1.0, 0.3))
    assert seasonal_reward(target.copy(), target) == pytest.approx(0.5)
    assert trend_reward(target.copy(), target) == pytest.approx(0.5)
    # official weights 0.05 / 0.15 with slope 2 on an exact forecast
    assert seasonal_reward(target.copy(), target, OFFICIAL) == pytest.approx(0.05)
    assert trend_reward(target.copy(), target, OFFICIAL) == pytest.approx(0.15)


def test_seasonal_and_trend_zero_when_short_or_unparsable():
    for fn in (seasonal_reward, trend_reward):
        assert fn(RAMP[:2], RAMP) == 0.0
        assert fn(None, RAMP) == 0.0


# ------------------------------------------------------------------------------------------ change points

@pytest.mark.parametrize("x, order, min_height, maxima, minima", [
    ([0, 3, 0, 0, -3, 0, 0, 3, 0], 2, 0.0, [1, 7], [4]),
    ([0, 2, 2, 0, 0], 2, 0.0, [1], []),            # a flat top counts once, at its first point
    ([0, 2, 2, 2, 0], 1, 0.0, [], []),             # a flat top wider than the window does not count
    ([0, 0.05, 0], 1, 0.1, [], []),                # below the minimum height
    ([0, 0.05, 0], 1, 0.0, [1], []),
    ([5, 5, 5, 5, 5], 2, 0.0, [], []),             # constant: no extremum
    ([0, 1, 2, 3, 4], 2, 0.0, [], []),             # monotone: the ends are never turning points
])
def test_find_extrema(x, order, min_height, maxima, minima):
    found_max, found_min = find_extrema(np.array(x, dtype=float), order, min_height)
    assert found_max.tolist() == maxima
    assert found_min.tolist() == minima


@pytest.mark.parametrize("true, pred, tolerance, expected", [
    ([5], [4, 6], 2, 1),         # one prediction per true extremum
    ([4, 6], [5], 2, 1),         # one true extremum per prediction
    ([2, 4], [3, 5], 1, 2),      # greedy by position finds the full matching
    ([1, 5], [3], 2, 1),
    ([3], [6], 2, 0),            # too far
    ([3], [3], 0, 1),            # tolerance 0: the exact index only
    ([], [1, 2], 2, 0),
])
def test_count_matches(true, pred, tolerance, expected):
    assert count_matches(np.array(true), np.array(pred), tolerance) == expected


PEAKS = np.array([0.0, 3.0, 0.0, 0.0, -3.0, 0.0, 0.0, 3.0, 0.0])  # maxima at 1, 7; minimum at 4
SHIFTED = np.array([0.0, 0.0, 3.0, 0.0, 0.0, -3.0, 0.0, 0.0, 3.0])  # maximum at 2 (8 is the end); minimum at 5
RAMP9 = np.arange(9.0)  # no extremum at all
SPIKE = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 5.0, 6.0, 7.0, 8.0])  # one maximum at 4, no minimum


@pytest.mark.parametrize("pred, target, options, expected", [
    (PEAKS, PEAKS, PAPER, 0.4),                         # 0.2 * 2/2 + 0.2 * 1/1
    (SHIFTED, PEAKS, PAPER, 0.2 * 1 / 2 + 0.2 * 1 / 1),  # max 2 matches true 1 (1 step), min 5 matches 4
    (SHIFTED, PEAKS, OFFICIAL, 0.0),                    # official: exact index only, none match
    (PEAKS, PEAKS, OFFICIAL, 0.2),                      # 0.1 + 0.1
    (RAMP9, RAMP9, PAPER, 0.4),                         # no true extrema and none predicted: both halves full
    (SPIKE, RAMP9, PAPER, 0.2),                         # a spurious maximum costs the maxima half only
    (-PEAKS, PEAKS, PAPER, 0.0),                        # mirrored: maxima where minima should be
    (PEAKS[:5], PEAKS, PAPER, 0.0),                     # shorter than the target
    (None, PEAKS, PAPER, 0.0),
])
def test_change_point_reward(pred, target, options, expected):
    assert change_point_reward(pred, target, options) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------ total

EXACT = "<think>ok</think>\n<answer>\n1\n2\n3\n4\n</answer>"


@pytest.mark.parametrize("completion, expected", [
    # format 0, length 0.1, mse 1, seasonal 0.5, trend 0.5, change_point 0.4 (ramp: no extrema anywhere)
    (EXACT, dict(format=0.0, length=0.1, mse=1.0, seasonal=0.5, trend=0.5, change_point=0.4, total=2.5)),
    # longer answer: only the first 4 values count
    ("<think>x</think><answer>1 2 3 4 5 6</answer>",
     dict(format=0.0, length=0.1, mse=1.0, seasonal=0.5, trend=0.5, change_point=0.4, total=2.5)),
    # shorter answer: 0.1 * 2/4 and no accuracy terms
    ("<think>x</think><answer>1 2</answer>",
     dict(format=0.0, length=0.05, mse=0.0, seasonal=0.0, trend=0.0, change_point=0.0, total=0.05)),
    # well formed but an empty answer: no values, nothing but the format term's 0
    ("<think>x</think><answer></answer>",
     dict(format=0.0, length=0.0, mse=0.0, seasonal=0.0, trend=0.0, change_point=0.0, total=0.0)),
    ("", dict(format=-1.0, length=0.0, mse=0.0, seasonal=0.0, trend=0.0, change_point=0.0, total=-1.0)),
    ("no numbers at all <think>", dict(format=-1.0, length=0.0, mse=0.0, total=-1.0)),
])
def test_compute_reward(completion, expected):
    terms = compute_reward(completion, RAMP)
    for key, value in expected.items():
        assert terms[key] == pytest.approx(value), key


def test_compute_reward_official_variant():
    # format 0 (one newline between), length 0.1, mse 0.6, seasonal 0.05, trend 0.15, change points 0.1 + 0.1
    terms = compute_reward(EXACT, RAMP, variant="official")
    assert terms["total"] == pytest.approx(0.1 + 0.6 + 0.05 + 0.15 + 0.2)
    custom = RewardOptions(mse_weight=2.0)
    assert compute_reward(EXACT, RAMP, variant=custom)["mse"] == pytest.approx(2.0)


def test_total_is_the_sum_and_keys_are_the_contract():
    terms = compute_reward("<think>a</think><answer>1 3 2 5</answer>", RAMP)
    assert set(terms) == {"format", "length", "mse", "seasonal", "trend", "change_point", "total"}
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))


def test_compute_reward_never_raises_on_any_completion():
    rng = random.Random(0)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "```", "|", "\n", " ", "-", ".", "e",
              "1", "2.5", "-3", "1e400", "nan", "inf", "2017-01-01 00:00:00", "\x00", "\u2212", "date OT"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        terms = compute_reward(text, RAMP)
        assert all(math.isfinite(v) for v in terms.values())
        assert -1.0 <= terms["total"] <= 2.5
    assert compute_reward(None, RAMP)["format"] == -1.0
    assert compute_reward(12345, RAMP)["total"] == -1.0


@pytest.mark.parametrize("target, message", [
    (np.ones((2, 2)), "1-D"),
    (np.array([]), "non-empty"),
    (np.array([1.0, np.nan]), "NaN"),
    (["a", "b"], "numeric"),
])
def test_bad_target_raises(target, message):
    with pytest.raises(ValueError, match=message):
        compute_reward(EXACT, target)
    with pytest.raises(ValueError, match=message):
        reward_terms(np.array([1.0]), target)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="variant"):
        compute_reward(EXACT, RAMP, variant="nope")
    with pytest.raises(ValueError, match="normalize"):
        RewardOptions(normalize="max")
    with pytest.raises(ValueError, match="odd"):
        RewardOptions(decomp_kernel=24)
