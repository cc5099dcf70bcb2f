"""Forecast error metrics, pure numpy: MSE, MAE, MAPE, MASE, CRPS, and a correlation.

Point metrics take ``pred`` and ``target`` of the same shape (averaged over all entries); CRPS takes
samples with a leading axis. Inputs must be finite (NaN/inf raise ValueError), except the MASE
history, where NaN is skipped. The paper reports MSE and MAE per window on the raw scale, averaged
over windows (../shared/data/README.md).
"""

from __future__ import annotations

import numpy as np


def _finite(name: str, x) -> np.ndarray:
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from None
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _finite("pred", pred), _finite("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    return pred, target


def mse(pred, target) -> float:
    """Mean squared error."""
    pred, target = _pair(pred, target)
    return float(np.mean((pred - target) ** 2))


def mae(pred, target) -> float:
    """Mean absolute error."""
    pred, target = _pair(pred, target)
    return float(np.mean(np.abs(pred - target)))


def mape(pred, target, eps: float = 1e-8) -> float:
    """Mean absolute percentage error as a fraction (0.1 = 10%), zero-safe by masking.

    Entries with |target| <= eps are left out (a percentage of zero is undefined); if every entry
    is left out the result is NaN.
    """
    pred, target = _pair(pred, target)
    keep = np.abs(target) > eps
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(pred[keep] - target[keep]) / np.abs(target[keep])))


def correlation(a, b) -> float:
    """Pearson correlation of two equal-length 1-D arrays; 0.0 (never NaN) when either is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"correlation: shapes differ, {a.shape} vs {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def mase(pred, target, history) -> float:
    """Mean absolute scaled error, the one MASE of timer1 (evaluation, validation, README, model cards).

    ``MASE = mean |pred - target| / mean_t |h_t - h_{t-1}|``: the forecast's MAE over the in-sample
    MAE of the one-step naive forecast on the window's look-back ``history`` (Hyndman & Koehler
    2006, "Another look at measures of forecast accuracy", Eq. for non-seasonal MASE). The scale
    is the window's own look-back, so windows of different level and volatility are comparable,
    and it needs no seasonal period, which a 96-point window cannot estimate reliably; per-window
    values are then averaged. A constant history gives 0.0 for a perfect forecast, else NaN.
    """
    pred, target = _pair(pred, target)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 1:
        raise ValueError(f"mase history must be 1-D, got shape {history.shape}")
    diffs = np.abs(np.diff(history))
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        raise ValueError(f"mase history has no finite pair of neighbours (length {len(history)})")
    scale = float(diffs.mean())
    error = float(np.mean(np.abs(pred - target)))
    if scale == 0.0:
        return 0.0 if error == 0.0 else float("nan")
    return error / scale


def crps(samples, target) -> float:
    """Continuous ranked probability score from samples, averaged over positions.

    Energy form CRPS = E|X - y| - 0.5 E|X - X'|, with X, X' drawn independently from the empirical
    distribution of the S samples (all S^2 pairs, i.e. exact for that distribution). The pair term
    uses the sorted-sample identity sum_{i,j} |x_i - x_j| = 2 sum_k (2k - S - 1) x_(k), k = 1..S.
    ``samples`` is (S, *target.shape). With S = 1 it equals the MAE.
    """
    samples, target = _finite("samples", samples), _finite("target", target)
    if samples.shape[1:] != target.shape:
        raise ValueError(f"samples shape {samples.shape} must be (S, *{target.shape})")
    n_samples = samples.shape[0]
    spread_to_truth = np.mean(np.abs(samples - target), axis=0)  # (*target.shape)
    ordered = np.sort(samples, axis=0)  # (S, *target.shape)
    rank_weights = (2 * np.arange(1, n_samples + 1) - n_samples - 1).reshape((-1,) + (1,) * target.ndim)
    mean_pair_gap = 2.0 * np.sum(rank_weights * ordered, axis=0) / n_samples**2  # E|X - X'|
    return float(np.mean(spread_to_truth - 0.5 * mean_pair_gap))
