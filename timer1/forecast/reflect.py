"""Reflection on the series' own history: ``mode="rule"``, the product's default before round 4.

Slow thinking answers from its look-back alone. Before its answer is trusted, the same question is
asked of the series' own past: at several rolling origins before the forecast origin (every value
before it that the caller has; never one after it), the statistical candidates (seasonal naive at the
periods the dates imply, last value, drift, Theta, a linear model fitted on the past:
timer1.core.backtest) are scored against what followed, and the best of them meets the model on the
model's own origins. The band comes from the chosen candidate's errors at those origins (split
conformal on the series: Vovk et al. 2005, as statsforecast's ConformalIntervals do with
cross-validation residuals), so its width tracks this
series. Rolling-origin selection is Tashman (2000); statsforecast picks models per series the same way.

The model's origins are few (each is one more slow-thinking window: ``MODEL_ORIGINS``), too few to
choose the model alone on: measured on the paper protocol, letting the model's answers win on those 3
origins cost 3% geometric-mean MASE against the statistical choice alone. So the model enters as a
forecast combination (Bates & Granger 1969): the best statistical candidate with the model's median
blended in at ``MODEL_WEIGHT``, kept when that blend was the better of the two on the model's origins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from timer1.core.backtest import Problem, errors_at, mean_abs, origins, plan_backtest
from timer1.core.slow_think import SlowThinkResult, aggregate
from timer1.core.window import Window
from timer1.forecast.band import BAND_LEVELS, BandCalibration, widen_result

MODEL_ORIGINS = 3     # slow-thinking windows per forecast spent on the backtest (the cold-start cost)
MODEL_WEIGHT = 0.25   # the model's share of the blend (the statistical candidate has 8x the origins)
MIN_RESIDUALS = 20    # residuals a step's band needs; fewer, and the drafts' calibrated band stays
MODEL = "model"            # the median of slow thinking's kept drafts


@dataclass
class Reflection:
    """What reflection concluded for one window: the chosen candidate, its forecast (H,), its band as
    samples (K, H) or None (too little history: keep the model's band), the mean backtest MAE of each
    answer on the model's origins, and how many origins each side was scored on."""

    choice: str
    point: np.ndarray
    samples: np.ndarray | None
    errors: dict[str, float]
    origins: int
    model_origins: int


@dataclass
class ModelAnswers:
    """The model's answers (the median of the kept drafts) to one window and to its backtest windows
    (`model_origins`, in that order), (H,) each. ``fell_back``: no draft of the window passed the
    critic, so ``now`` is the fallback's forecast, not the model's: it is not blended in."""

    now: np.ndarray
    then: list[np.ndarray]
    fell_back: bool = False


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


def reflect(history: np.ndarray, horizon: int, step_period: int | None, model: ModelAnswers) -> Reflection:
    """Choose the forecast of one window (see the module docstring). ``history``: every value before
    the origin; ``model``: the model's answers now and at its origins. The statistical candidates
    compete on all their origins (backtest.MAX_ORIGINS, a quarter horizon apart); on the model's origins
    the best of them meets its blend with the model, and the blend must be strictly better. ``errors``
    are the MAEs on the model's origins (the model alone too, for the record); the band comes from the
    statistical candidate's errors on all its origins, around the chosen point."""
    plan = plan_backtest(Problem(history, horizon, step_period))
    if plan is None:
        return Reflection(MODEL, model.now, None, {}, 0, 0)
    candidates, points = plan.simple, plan.points
    residuals = {name: errors_at(f, history, points, horizon) for name, f in candidates.items()}  # (K, H) each
    best = min(residuals, key=lambda name: mean_abs(residuals[name]))
    point = candidates[best].forecast(history, horizon)  # (H,)
    # the model's origins the statistical side can answer too (none before its earliest: the linear
    # candidate's weights saw what follows that one)
    pairs = [(o, p) for o, p in zip(model_origins(history, horizon), model.then)
             if o >= points[-1] and not model.fell_back]
    asked = [o for o, _ in pairs]
    errors, choice = {best: mean_abs(residuals[best])}, best
    if asked:
        stat_then = errors_at(candidates[best], history, asked, horizon)                 # (M, H)
        model_then = np.array([history[o:o + horizon] - p for o, p in pairs])
        blend = f"{best} + model"
        errors = {best: mean_abs(stat_then), MODEL: mean_abs(model_then),
                  blend: mean_abs((1 - MODEL_WEIGHT) * stat_then + MODEL_WEIGHT * model_then)}
        if errors[blend] < errors[best]:
            choice, point = blend, (1 - MODEL_WEIGHT) * point + MODEL_WEIGHT * model.now
    return Reflection(choice, point, band_samples(point, residuals[best]), errors, len(points), len(asked))


def band_samples(point: np.ndarray, residuals: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | None:
    """The band around ``point`` (H,) from backtest residuals (N, H), as samples (len(BAND_LEVELS), H).

    Split conformal with the absolute error as the score (Lei et al. 2018, "Distribution-free
    predictive inference for regression"), weighted (Tibshirani et al. 2019, "Conformal prediction
    under covariate shift"): per step, the absolute residuals at that step and its neighbours are the
    scores, each row's with its weight (default: equal), and the central band of coverage c is the
    point -/+ the least score whose weighted share, times n / (n + 1), reaches c: with equal weights
    the ceil((n + 1) c)-th smallest of n (the finite-sample correction); n counts rows by their
    effective number 1 / sum w^2 (Kish), which also sets how many steps are pooled (as few as give
    MIN_RESIDUALS). A symmetric band: a candidate's bias on the history (a trend it under-shot there)
    does not carry to the future reliably, and measured on 13 public series the signed residuals' band
    covered 68% against 77%. None when the residuals count for fewer than MIN_RESIDUALS."""
    if weights is not None:  # rows of no weight take no part (not even as the largest score)
        residuals, weights = residuals[weights > 0], weights[weights > 0] / np.sum(weights)
    rows, horizon = residuals.shape
    weights = np.full(rows, 1.0 / max(rows, 1)) if weights is None else weights
    effective = round(1.0 / np.sum(weights ** 2), 9) if rows else 0.0  # N for equal weights, not N - 1e-15
    if effective * horizon < MIN_RESIDUALS:
        return None
    reach = int(np.ceil(MIN_RESIDUALS / effective / 2))  # steps either side pooled with each step
    coverage = np.abs(2 * BAND_LEVELS - 1)                 # the central band each level bounds
    side = np.sign(BAND_LEVELS - 0.5)
    samples = np.empty((len(BAND_LEVELS), horizon))
    for h in range(horizon):
        steps = residuals[:, max(0, h - reach):h + reach + 1]                    # (N, S)
        scores = np.abs(steps).ravel()
        order = np.argsort(scores, kind="stable")
        n = effective * steps.shape[1]
        share = np.cumsum(np.repeat(weights, steps.shape[1])[order]) / steps.shape[1] * n / (n + 1)
        at = np.minimum(np.searchsorted(share, coverage - 1e-9), len(scores) - 1)  # past the top: the largest
        samples[:, h] = point[h] + side * scores[order][at]
    return samples


def conclude(result: SlowThinkResult, reflection: Reflection, calibration: BandCalibration) -> SlowThinkResult:
    """The window's answer after reflection: the chosen candidate's point with the band of its own
    backtest residuals; with too few residuals, the model's drafts' band (widened by the model's
    ``calibration``), moved to the chosen point. ``band`` says which."""
    chosen = reflection.choice
    source = result.source if chosen == MODEL else chosen
    if reflection.samples is not None:
        samples = reflection.samples
    else:
        drafts = widen_result(result, calibration)
        samples = reflection.point + (drafts.samples - drafts.point)  # (K, H)
    _, quantiles = aggregate(samples)
    return replace(result, point=reflection.point.copy(), quantiles=quantiles, samples=samples, source=source,
                   fallback=result.fallback if chosen == MODEL else None, answer=f"reflection: {chosen}",
                   backtest_mae=reflection.errors,
                   band="drafts" if reflection.samples is None else "backtest errors")
