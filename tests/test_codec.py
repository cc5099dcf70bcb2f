"""timer1.core.codec and timer1.data.window_sets: prompts in, real-scale forecasts out, and the window sets training draws from."""

import re

import numpy as np
import pytest

from timer1.core.codec import (STYLES, PromptFormat, answer_opening, complete_forecast, forecast_from_completion,
                               reward_target, target_completion)
from timer1.core.prompts import compact_scaler
from timer1.core.rewards import compute_reward
from timer1.data.csv_io import read_csv
from timer1.data.protocol import paper_windows, split_bounds
from timer1.data.window_sets import WindowSpec, load_windows, parse_shape


@pytest.fixture
def window(shared_data):
    return paper_windows(read_csv(shared_data / "ETTh1.csv"), "ETTh1", channels=["OT"])[0]


@pytest.mark.parametrize("style", STYLES)
def test_target_completion_parses_back_to_the_target(window, style):
    fmt = PromptFormat(style)
    text = target_completion(window, "level near 10, daily cycle", fmt)
    forecast = forecast_from_completion(text, window, fmt)
    assert forecast.shape == (96,)
    # compact writes the history's range as 10..89 (79 steps): error <= half a step
    step = (window.history.max() - window.history.min()) / 79 if style == "compact" else 0.0005
    assert np.abs(forecast - window.target).max() <= step / 2 + 1e-3


@pytest.mark.parametrize("style", STYLES)
def test_reward_of_the_true_answer_is_the_best_possible(window, style):
    fmt = PromptFormat(style)
    reward = compute_reward(target_completion(window, "r", fmt), reward_target(window, fmt))
    assert reward["format"] == 0 and reward["length"] == pytest.approx(0.1)
    assert reward["mse"] > 0.99  # 2 * (1 - sigmoid(0.3 * ~0)) = 1 at a perfect answer


def test_compact_reward_equals_real_scale_reward(window):
    """Rewards normalise by the target's own statistics, so the compact scale changes nothing."""
    fmt = PromptFormat("compact")
    wrong = window.target[::-1].copy()
    compact = compute_reward(target_completion(window, "r", fmt, values=wrong), reward_target(window, fmt))
    real = compute_reward(target_completion(window, "r", PromptFormat("paper"), values=wrong), window.target)
    assert compact["mse"] == pytest.approx(real["mse"], abs=0.02)


def test_forecast_from_unparsable_and_short_completions(window):
    fmt = PromptFormat("paper")
    assert forecast_from_completion("no numbers at all", window, fmt) is None
    short = forecast_from_completion("<think>x</think><answer>\n1\n2\n3\n</answer>", window, fmt)
    np.testing.assert_allclose(short, [1, 2, 3])
    full, complete = complete_forecast(short, window)
    assert not complete and full.shape == (96,) and full[-1] == 3
    fallback, complete = complete_forecast(None, window)
    assert not complete and np.all(fallback == window.history[-1])


def test_training_windows_never_touch_the_test_region(shared_data):
    spec = WindowSpec(str(shared_data), ("ETTh1", "exchange"), 96, 96, 96)
    train_end = {name: split_bounds(read_csv(shared_data / f"{name}.csv"), name)[0] for name in spec.datasets}
    train = load_windows(spec, "train")
    val = load_windows(spec, "val")
    assert all(w.start + 192 <= train_end[w.dataset] for w in train)
    assert all(w.start >= train_end[w.dataset] for w in val)
    assert {w.dataset for w in train} == {"ETTh1", "exchange"}


def test_synthetic_fraction_and_cap(shared_data):
    spec = WindowSpec(str(shared_data), ("ETTh1",), 48, 24, 96, max_windows=30, synthetic_frac=0.25)
    windows = load_windows(spec, seed=3)
    real = [w for w in windows if w.dataset != "synthetic"]
    assert len(real) == 30 and len(windows) - len(real) == 10  # 10 / 40 = 0.25
    again = load_windows(spec, seed=3)
    np.testing.assert_array_equal(windows[-1].history, again[-1].history)  # seeded


def test_training_windows_in_several_shapes(shared_data):
    spec = WindowSpec(str(shared_data), ("ETTh1",), 96, 96, 96, shapes=((36, 36), (48, 12)), synthetic_frac=0.5)
    train = load_windows(spec, "train")
    real_shapes = {(w.lookback, w.horizon) for w in train if w.dataset != "synthetic"}
    assert real_shapes == {(96, 96), (36, 36), (48, 12)}
    assert all(len(w.history) == w.lookback and len(w.target) == w.horizon for w in train)
    synthetic = [(w.lookback, w.horizon) for w in train if w.dataset == "synthetic"]
    assert set(synthetic) == real_shapes  # synthetic windows draw their shape too
    assert {(w.lookback, w.horizon) for w in load_windows(spec, "val")} == {(96, 96)}  # validation: the main shape
    assert parse_shape("96x24") == (96, 24) and parse_shape("36X36") == (36, 36)
    for bad in ("96", "96x", "ax3", "1x5", "96x0"):
        with pytest.raises(ValueError, match="bad window shape"):
            parse_shape(bad)


def test_bad_inputs(shared_data, tmp_path):
    with pytest.raises(ValueError, match="unknown prompt style"):
        PromptFormat("verbose")
    with pytest.raises(FileNotFoundError):
        load_windows(WindowSpec(str(tmp_path), ("nope",), 96, 96, 96))
    with pytest.raises(ValueError, match="no usable train windows"):
        load_windows(WindowSpec(str(shared_data), ("nasdaq",), 900, 900, 96))


def test_compact_numbers_with_merged_separators_are_clipped(window):
    fmt = PromptFormat("compact")
    scaler = compact_scaler(window, fmt.digits)
    text = "<think>x</think><answer>50,99999999999999999999,-7777,12</answer>"
    values = forecast_from_completion(text, window, fmt)
    assert values.shape == (4,) and np.isfinite(values).all()
    # clipped to [-100, 200] on the integer scale (history = 10..89), then decoded
    np.testing.assert_allclose(values, scaler.decode([50, 200, -100, 12]))
    span = window.history.max() - window.history.min()
    assert values[1] <= window.history.max() + 1.45 * span and values[2] >= window.history.min() - 1.45 * span

@pytest.mark.parametrize("style", ["compact", "paper"])
def test_answer_opening_is_the_start_of_the_completion(window, style):
    fmt = PromptFormat(style)
    opening = answer_opening(window, "flat then up", fmt)
    assert re.fullmatch(r"<think>\s*flat then up\s*</think>\s*<answer>", opening), opening
    assert target_completion(window, "flat then up", fmt).startswith(opening)
