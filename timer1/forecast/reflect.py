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
themselves on all their origins; the best of them meets the model's two answers (the drafts' median,
the greedy draft) on the model's origins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from timer1.core.baselines import Drift, LastValue, Linear, SeasonalNaive, Theta, estimate_period
from timer1.core.slow_think import SlowThinkResult, aggregate
from timer1.core.window import Window
from timer1.forecast.band import widen_result

MODEL_ORIGINS = 3     # slow-thinking windows per forecast spent on the backtest (the cold-start cost)
MAX_ORIGINS = 24      # origins the statistical candidates are scored on
MIN_RESIDUALS = 20    # residuals a step's band needs; fewer, and the drafts' calibrated band stays
BAND_LEVELS = np.linspace(0.02, 0.98, 49)  # the band as samples: these quantiles of the residuals
MIN_FIT = 8           # values a candidate needs before an origin
LINEAR_MAX_HISTORY = 2000  # the linear candidate fits on this many last values at most
LINEAR_MIN_WINDOWS = 32    # training windows the linear candidate needs before the earliest origin


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


@dataclass
class OwnLinear:
    """`Linear` (DLinear: what evaluate.py's ``linear`` fits per dataset) fitted on the history it is
    asked from (its last LINEAR_MAX_HISTORY values), so at every origin it knows only the past."""

    lookback: int
    name = "linear"

    def forecast(self, history, horizon) -> np.ndarray:
        train = np.asarray(history, dtype=np.float64)[-LINEAR_MAX_HISTORY:]
        return Linear().fit(train, self.lookback, horizon).forecast(train[-self.lookback:], horizon)


def statistical_candidates(periods: list[int], lookback: int | None = None) -> dict[str, object]:
    """Name -> forecaster (``.forecast(history, horizon)``) of every statistical candidate; the linear
    one when a ``lookback`` is given (enough history for it)."""
    out = {f"seasonal naive (period {m})": SeasonalNaive(m) for m in periods}
    out.update({"last value": LastValue(), "drift": Drift(), "theta": Theta(periods[0] if periods else 1)})
    if lookback:
        out["linear"] = OwnLinear(lookback)
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


MODEL = "model"                       # the median of slow thinking's kept drafts
GREEDY = "model (greedy draft)"       # the model's single most likely answer


@dataclass
class ModelAnswers:
    """The model's answers to one window and to its backtest windows (`model_origins`, in that order),
    (H,) each: the median of the kept drafts and the greedy draft."""

    now: dict[str, np.ndarray]          # MODEL / GREEDY -> (H,)
    then: dict[str, list[np.ndarray]]   # MODEL / GREEDY -> one (H,) per model origin


def reflect(history: np.ndarray, horizon: int, step_period: int | None, model: ModelAnswers,
            lookback: int) -> Reflection:
    """Choose the forecast of one window (see the module docstring). ``history``: every value before
    the origin; ``model``: the model's answers now and at its origins; ``lookback``: the linear
    candidate's input length (the model's look-back). The statistical candidates compete on all their
    origins (up to MAX_ORIGINS: measured on the paper protocol, choosing on the 3 latest alone cost 7%
    geometric-mean MASE); the best of them meets the model's answers on the model's origins, where all
    answered the same questions (a tie keeps the model). ``errors`` are those of that final
    comparison; the band comes from the chosen candidate's errors on all its origins."""
    periods = candidate_periods(step_period, history, horizon)
    points = origins(len(history), horizon, MAX_ORIGINS, max(1, horizon // 4), max([MIN_FIT, *periods]))
    if not points:
        return Reflection(MODEL, model.now[MODEL], None, {}, 0, 0)
    fits_linear = points[-1] - lookback - horizon >= LINEAR_MIN_WINDOWS
    candidates = statistical_candidates(periods, lookback if fits_linear else None)
    residuals = {name: errors_at(f, history, points, horizon) for name, f in candidates.items()}  # (K, H) each
    best = min(residuals, key=lambda name: np.abs(residuals[name]).mean())
    asked = model_origins(history, horizon)[:len(model.then[MODEL])]
    final = {best: errors_at(candidates[best], history, asked, horizon) if asked else residuals[best]}
    for name, answers in model.then.items() if asked else ():
        residuals[name] = final[name] = np.array([history[o:o + horizon] - p for o, p in zip(asked, answers)])
    errors = {name: float(np.abs(r).mean()) for name, r in final.items()}
    choice = min(errors, key=lambda name: (errors[name], name not in model.now))  # a tie goes to the model
    point = model.now[choice] if choice in model.now else candidates[choice].forecast(history, horizon)
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
    source = {MODEL: result.source, GREEDY: "model"}.get(chosen, chosen)
    if reflection.samples is not None:
        samples = reflection.samples
    else:
        drafts = widen_result(result, band_scale)
        samples = reflection.point + (drafts.samples - drafts.point)  # (K, H)
    _, quantiles = aggregate(samples)
    return replace(result, point=reflection.point.copy(), quantiles=quantiles, samples=samples, source=source,
                   fallback=result.fallback if chosen == MODEL else None, answer=f"reflection: {chosen}",
                   backtest_mae=reflection.errors)
