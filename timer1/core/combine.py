"""Combinations without a language model: the judge's ablation baselines.

- ``top_mean_weights``: the equal-weight mean of the k candidates of least backtest error (equal
  weights are hard to beat: Clemen 1989, "Combining forecasts: a review"; Smith & Wallis 2009, "A
  simple explanation of the forecast combination puzzle").
- ``softmax_weights``: w_k proportional to exp(-e_k / (T * min_j e_j)), e_k a candidate's mean
  backtest error: the best candidate gets the most, the others in proportion to how close they come.
  The temperature T is the one learned number, chosen by ``fit_temperature`` on training windows
  (the weights of Stock & Watson 2004's inverse-error schemes, in softmax form as FFORMA's output).

Each takes the evidence's (K, 4) error table (timer1.core.evidence.COLUMNS) and returns (K,) weights
summing to 1.
"""

from __future__ import annotations

import numpy as np

from timer1.core.evidence import COLUMNS

TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)   # the grid fit_temperature searches
SOFTMAX_TEMPERATURE = 0.02   # fit_temperature on the judge's training cases (benchmarks/judge_ablation.py)


def _all_origins(errors: np.ndarray) -> np.ndarray:
    return np.asarray(errors, dtype=np.float64)[:, COLUMNS.index("all")]


def top_mean_weights(errors: np.ndarray, k: int = 3) -> np.ndarray:
    """(K,) equal weights on the ``k`` candidates of least mean backtest error."""
    e = _all_origins(errors)
    weights = np.zeros(len(e))
    weights[np.argsort(e, kind="stable")[:k]] = 1.0
    return weights / weights.sum()


def softmax_weights(errors: np.ndarray, temperature: float) -> np.ndarray:
    """(K,) softmax of -e_k / (T * min e): relative errors, so the temperature is scale-free; a
    perfect candidate (error 0) takes all the weight."""
    e = _all_origins(errors)
    best = float(e.min())
    if best <= 0:
        return (e == best) / float(np.sum(e == best))
    logits = -e / (temperature * best)
    w = np.exp(logits - logits.max())
    return w / w.sum()


def fit_temperature(errors: list[np.ndarray], forecasts: list[np.ndarray], targets: list[np.ndarray],
                    scales: list[float]) -> float:
    """The TEMPERATURES value whose softmax combination has the least geometric-mean scaled MAE over
    training cases: errors (K, 4), forecasts (K, H), targets (H,) and MASE scales, one per case."""
    def loss(t: float) -> float:
        maes = [np.mean(np.abs(softmax_weights(e, t) @ f - y)) / s
                for e, f, y, s in zip(errors, forecasts, targets, scales)]
        return float(np.mean(np.log(np.maximum(maes, 1e-12))))
    return min(TEMPERATURES, key=loss)
