"""Reflection on the series' own history: the product's default forecast (``mode="auto"``).

Slow thinking answers from its look-back alone. Before its answer is trusted, the same question is
asked of the series' own past: at several rolling origins before the forecast origin (every value
before it that the caller has; never one after it), the model's answer and the statistical
candidates' (seasonal naive at the periods the dates imply, last value, drift, Theta) are scored
against what followed. The forecast is the candidate with the lowest mean error, and its band comes
from that candidate's own errors at those origins (split conformal on the series: Vovk et al. 2005,
as statsforecast's ConformalIntervals do with cross-validation residuals), so its width tracks this
series. Rolling-origin selection is Tashman (2000); statsforecast picks models per series the same way.

Only the model's origins are few (each is one more slow-thinking window: ``MODEL_ORIGINS``); the
statistical candidates are scored on up to ``MAX_ORIGINS``. Statistical candidates compete among
themselves on all their origins; the best of them meets the model on the model's origins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from timer1.core.baselines import Drift, LastValue, SeasonalNaive, Theta, estimate_period
from timer1.core.slow_think import SlowThinkResult, aggregate
from timer1.core.window import Window
from timer1.forecast.band import widen_result

MODEL_ORIGINS = 3     # slow-thinking windows per forecast spent on the backtest (the cold-start cost)
MAX_ORIGINS = 24      # origins the statistical candidates are scored on
MIN_RESIDUALS = 20    # residuals a step's band needs; fewer, and the drafts' calibrated band stays
BAND_LEVELS = np.linspace(0.02, 0.98, 49)  # the band as samples: these quantiles of the residuals
MIN_FIT = 8           # values a candidate needs before an origin


@dataclass
class Reflection:
    """What reflection concluded for one window: the chosen candidate, its forecast (H,), its band as
    samples (K, H) or None (too little history: keep the model's band), the mean backtest MAE of every
    candidate, and how many origins each side was scored on."""

    choice: str
    point: np.ndarray
    samples: np.ndarray | None
    errors: dict[str, float]
    origins: int
    model_origins: int


def candidate_periods(step_period: int | None, history: np.ndarray, horizon: int) -> list[int]:
    """The seasonal periods to try: the dates' own (hourly data: also the week, 168), else the
    history's autocorrelation peak; each only when two cycles fit before the latest origin."""
    periods = [step_period] if step_period else [estimate_period(history)]
    if step_period == 24:
        periods.append(168)
    return [m for m in periods if m and m > 1 and 2 * m <= len(history) - horizon]


def statistical_candidates(periods: list[int]) -> dict[str, object]:
    """Name -> forecaster (``.forecast(history, horizon)``) of every statistical candidate."""
    out = {f"seasonal naive (period {m})": SeasonalNaive(m) for m in periods}
    out.update({"last value": LastValue(), "drift": Drift(), "theta": Theta(periods[0] if periods else 1)})
    return out


def origins(n: int, horizon: int, count: int, stride: int, min_fit: int = MIN_FIT) -> list[int]:
    """Up to ``count`` forecast origins (rows where a backtest target starts), the latest first, each
    with its whole target inside the ``n`` known values and ``min_fit`` values before it."""
    return list(range(n - horizon, min_fit - 1, -stride))[:count]


def model_origins(history: np.ndarray, horizon: int) -> list[int]:
    """The origins the model is asked at: the latest MODEL_ORIGINS, a horizon apart."""
    return origins(len(history), horizon, MODEL_ORIGINS, horizon)


def backtest_windows(full: Window, lookback: int, horizon: int) -> list[Window]:
    """The model's backtest problems: at each model origin, ``lookback`` values before it (or all there
    are) and the next ``horizon`` known values as the target."""
    out = []
    for o in model_origins(full.history, horizon):
        start = max(0, o - lookback)
        out.append(replace(full, history=full.history[start:o], target=full.history[o:o + horizon],
                           history_dates=full.history_dates[start:o],
                           target_dates=full.history_dates[o:o + horizon], start=full.start + start))
    return out


def errors_at(forecaster, history: np.ndarray, points: list[int], horizon: int) -> np.ndarray:
    """(len(points), H) residuals (actual - forecast) of a statistical candidate at each origin."""
    rows = []
    for o in points:
        rows.append(history[o:o + horizon] - forecaster.forecast(history[:o], horizon))
    return np.array(rows).reshape(len(points), horizon)


def reflect(history: np.ndarray, horizon: int, step_period: int | None, model_now: np.ndarray,
            model_then: list[np.ndarray]) -> Reflection:
    """Choose the forecast of one window (see the module docstring). ``history``: every value before
    the origin; ``model_now``: the model's answer (H,); ``model_then``: its answers at
    `model_origins`, in that order. Every candidate is scored by its mean absolute error on the model's
    origins (the same questions for all; the statistical candidates' alone when the model has none);
    the band comes from the chosen candidate's errors on all its origins."""
    periods = candidate_periods(step_period, history, horizon)
    candidates = statistical_candidates(periods)
    points = origins(len(history), horizon, MAX_ORIGINS, max(1, horizon // 4), max([MIN_FIT, *periods]))
    if not points:
        return Reflection("model", model_now, None, {}, 0, 0)
    asked = model_origins(history, horizon)[:len(model_then)]
    scored = asked or points
    residuals = {name: errors_at(f, history, points, horizon) for name, f in candidates.items()}  # (K, H) each
    if asked:
        residuals["model"] = np.array([history[o:o + horizon] - p for o, p in zip(asked, model_then)])
    on_scored = {name: r if name == "model" or scored is points else errors_at(candidates[name], history, scored, horizon)
                 for name, r in residuals.items()}
    errors = {name: float(np.abs(r).mean()) for name, r in on_scored.items()}
    choice = min(errors, key=lambda name: (errors[name], name != "model"))  # a tie goes to the model
    point = model_now if choice == "model" else candidates[choice].forecast(history, horizon)
    return Reflection(choice, point, band_samples(point, residuals[choice]), errors, len(points), len(asked))


def band_samples(point: np.ndarray, residuals: np.ndarray) -> np.ndarray | None:
    """The band around ``point`` (H,) from backtest residuals (K, H): per step, the BAND_LEVELS
    quantiles of the residuals at that step and its neighbours (as few as give MIN_RESIDUALS), added to
    the point; None when all the residuals together are fewer than MIN_RESIDUALS."""
    k, horizon = residuals.shape
    if k * horizon < MIN_RESIDUALS or k == 0:
        return None
    reach = int(np.ceil(MIN_RESIDUALS / k / 2))  # steps either side pooled with each step
    samples = np.empty((len(BAND_LEVELS), horizon))
    for h in range(horizon):
        pool = residuals[:, max(0, h - reach):h + reach + 1].ravel()
        samples[:, h] = point[h] + np.quantile(pool, BAND_LEVELS)
    return samples


def conclude(result: SlowThinkResult, reflection: Reflection, band_scale: float) -> SlowThinkResult:
    """The window's answer after reflection: the chosen candidate's point with the band of its own
    backtest residuals; with too few residuals, the model's drafts' band (widened by the model's
    calibrated ``band_scale``), moved to the chosen point."""
    chosen = reflection.choice
    source = result.source if chosen == "model" else chosen
    if reflection.samples is not None:
        samples = reflection.samples
    else:
        drafts = widen_result(result, band_scale)
        samples = reflection.point + (drafts.samples - drafts.point)  # (K, H)
    _, quantiles = aggregate(samples)
    return replace(result, point=reflection.point.copy(), quantiles=quantiles, samples=samples, source=source,
                   fallback=result.fallback if chosen == "model" else None, answer=f"reflection: {chosen}",
                   backtest_mae=reflection.errors)
