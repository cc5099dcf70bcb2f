"""Synthetic series that put the judge in the situations it must handle on real data.

The seven datasets of the paper are hourly, 15-minute and daily, and long. A forecaster's own files
are as often monthly, quarterly or yearly and short. KernelSynth (Ansari et al. 2024, Chronos)
composes random Gaussian-process kernels for the same purpose; here the parts are drawn directly,
so each situation has its own knob:

- a step and its season (monthly 12, quarterly 4, daily 7, hourly 24, weekly and yearly without
  one), a length typical of it, short histories included, and a horizon typical of it;
- a trend that may turn (piecewise linear, up to two turns), a random walk, AR(1) noise of any
  persistence and level;
- a seasonal pattern of random harmonics whose amplitude may grow or fade (changing seasonality),
  added or multiplied in;
- level shifts and outliers.

Every draw comes from one seeded generator: the same seed gives the same series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# step name -> (season, (shortest, longest) history, horizons)
STEPS = {
    "monthly": (12, (36, 300), (12, 18)),
    "quarterly": (4, (20, 120), (4, 8)),
    "yearly": (None, (15, 60), (4, 6)),
    "weekly": (None, (60, 400), (8, 13)),
    "daily": (7, (60, 1500), (14, 28)),
    "hourly": (24, (200, 3000), (24, 48)),
}


@dataclass
class VariedSeries:
    """One drawn series: ``history`` then ``target`` (the next ``horizon`` values), its step name and
    the season its dates imply (None: none)."""

    history: np.ndarray
    target: np.ndarray
    step: str
    period: int | None


def _trend(rng: np.random.Generator, n: int) -> np.ndarray:
    """Piecewise-linear trend with 0-2 turns (slopes in units of the noise scale per step)."""
    knots = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(0, 3)), replace=False)) if n > 3 else []
    slopes = rng.normal(0, 0.05, size=len(knots) + 1) * (rng.random() < 0.7)
    t = np.arange(n)
    out = np.zeros(n)
    for i, start in enumerate([0, *knots]):
        out[start:] += (slopes[i] - (slopes[i - 1] if i else 0)) * (t[start:] - start)
    return out


def _season(rng: np.random.Generator, n: int, period: int | None) -> np.ndarray:
    """Random harmonics of ``period`` whose amplitude drifts linearly by up to 100% over the series."""
    if period is None or rng.random() < 0.2:
        return np.zeros(n)
    t = np.arange(n)
    shape = sum(rng.normal(0, 1.0 / k) * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
                for k in range(1, min(4, period // 2 + 1)))
    drift = 1 + rng.uniform(-1, 1) * t / n * (rng.random() < 0.4)
    return rng.uniform(0.5, 4) * shape * drift


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """AR(1) noise (phi in [0, 0.9]) plus a random walk in one draw of three."""
    phi, eps = rng.uniform(0, 0.9), rng.normal(0, rng.uniform(0.2, 1.5), size=n)
    out = np.empty(n)
    out[0] = eps[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + eps[i]
    if rng.random() < 0.33:
        out += np.cumsum(rng.normal(0, rng.uniform(0.1, 0.6), size=n))
    return out


def _shocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """0-2 level shifts and 0-3 outliers, a few noise scales tall."""
    out = np.zeros(n)
    for row in rng.integers(1, n, size=int(rng.integers(0, 3))):
        out[row:] += rng.choice([-1, 1]) * rng.uniform(2, 8)
    for row in rng.integers(0, n, size=int(rng.integers(0, 4))):
        out[row] += rng.choice([-1, 1]) * rng.uniform(3, 10)
    return out


def varied_series(seed: int) -> VariedSeries:
    """One series drawn from ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    step = list(STEPS)[int(rng.integers(len(STEPS)))]
    period, (shortest, longest), horizons = STEPS[step]
    horizon = int(rng.choice(horizons))
    n = int(np.exp(rng.uniform(np.log(shortest), np.log(longest)))) + horizon
    season = _season(rng, n, period)
    level = rng.uniform(20, 200)
    y = level + _trend(rng, n) + _noise(rng, n) + _shocks(rng, n)
    y = y * (1 + season / level * 5) if rng.random() < 0.3 else y + season
    return VariedSeries(y[:-horizon], y[-horizon:], step, period)
