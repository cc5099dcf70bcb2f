"""The judge's examples: windows whose history is every value before the origin, as the product
forecasts (reflection and the judge backtest on the series' whole past), in one region of a dataset.

Training cases come from the train region only and validation cases from the validation region
only (timer1.data.protocol.split_bounds); the test region is never read here. Each case also says
the step's name and seasonal period, which the evidence and the backtest need.
"""

from __future__ import annotations

from dataclasses import dataclass

from timer1.core.backtest import Problem
from timer1.core.baselines import period_for_step
from timer1.core.window import Window
from timer1.data.protocol import evenly_spaced, make_window, protocol_for, split_bounds

MAX_HISTORY = 4000   # values before an origin a case keeps (the backtest reads at most this far back)


@dataclass
class JudgeWindow:
    """A window with its whole (capped) history, and what the judge must know of its dates."""

    window: Window
    step: str
    step_period: int | None

    def problem(self) -> Problem:
        return Problem(self.window.history, self.window.horizon, self.step_period)


def region_rows(series, dataset: str, region: str) -> tuple[int, int]:
    """[lo, hi) rows of the train or validation region."""
    train_end, val_end = split_bounds(series, dataset)
    if region == "train":
        return 0, train_end
    if region == "val":
        return train_end, val_end
    raise ValueError(f"region must be train or val, got {region!r}")


def judge_windows(series, dataset: str, region: str, horizon: int, stride: int, limit: int = 0,
                  min_history: int = 2 * 96) -> list[JudgeWindow]:
    """Every ``stride``-th origin of every channel whose target lies in ``region`` and which has at
    least ``min_history`` values before it (all earlier rows, up to MAX_HISTORY, are its history);
    ``limit`` keeps that many, spread evenly over channels and origins (all when 0)."""
    lo, hi = region_rows(series, dataset, region)
    rounding = protocol_for(dataset).round_inputs
    period = period_for_step(series.step)
    places = [(channel, origin) for channel in series.channels
              for origin in range(max(lo, min_history), hi - horizon + 1, stride)]
    out = []
    for channel, origin in evenly_spaced(places, limit):   # chosen before any window is built
        start = max(0, origin - MAX_HISTORY)
        window = make_window(series, channel, start, origin - start, horizon, rounding, dataset)
        out.append(JudgeWindow(window, series.step.name, period))
    return out
