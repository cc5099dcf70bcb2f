"""One forecasting example, the unit every stage of the method works on: L history values, then
the H target values after them, with their dates. timer1.data makes windows from files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Window:
    """One univariate forecasting sample: L history values, then the H target values after them."""

    dataset: str
    channel: str
    history: np.ndarray        # (L,) float64, gaps interpolated
    target: np.ndarray         # (H,) float64, never filled
    history_dates: list[str]   # (L,) dates as written in the file
    target_dates: list[str]    # (H,)
    start: int                 # row of the first history value

    @property
    def lookback(self) -> int:
        return len(self.history)

    @property
    def horizon(self) -> int:
        return len(self.target)


def interpolate_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN; edges take the nearest valid value. All-NaN raises ValueError."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(x)
    if valid.all():
        return x.copy()
    if not valid.any():
        raise ValueError("cannot interpolate a window with no valid value")
    idx = np.arange(len(x))
    return np.interp(idx, idx[valid], x[valid])  # np.interp holds the end values flat beyond the edges
