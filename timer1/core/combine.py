"""Combinations without a language model: the default forecast's weights and the judge's baselines.

- ``top_mean_weights``: the equal-weight mean of the k candidates of least backtest error (equal
  weights are hard to beat: Clemen 1989, "Combining forecasts: a review"; Smith & Wallis 2009, "A
  simple explanation of the forecast combination puzzle").
- ``softmax_weights``: a learned softmax over the candidates, FFORMA's output layer (Montero-Manso,
  Athanasopoulos, Hyndman & Talagala 2020, "FFORMA: Feature-based forecast model averaging") with
  the backtest as the features: w_k = softmax_k(phi_k . coef), phi_k (``error_features``) saying how
  far candidate k's backtest errors are from the best's in each error column, and where it ranks.
  ``fit_softmax`` learns the coefficients on training cases by FFORMA's criterion, the error of the
  combined forecast itself (here the geometric mean over case groups of the mean MASE).

Each takes the evidence's (K, 4) error table (timer1.core.evidence.COLUMNS) and returns (K,) weights
summing to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from timer1.core.evidence import COLUMNS

RANKS = 4             # rank indicators: best, second, third, any lower (by the error over all origins)
FAR = 10.0            # a log error ratio past this (an unusable candidate) counts as this
SOFTMAX_COEF = (-0.3682, 0.0166, -2.0694, 0.368, -0.2644, -0.3035, -1.0205, -0.0229, 0.1504, 0.0318, -0.1571,
                -0.0253)
# fit_softmax on the default's training cases (python benchmarks/default_combination.py prints them): per
# error column (all, latest, early, late) the log ratio to the best, then its square (capped at 3), then
# the rank indicators (best, 2nd, 3rd, lower)


def _all_origins(errors: np.ndarray) -> np.ndarray:
    return np.asarray(errors, dtype=np.float64)[:, COLUMNS.index("all")]


def top_mean_weights(errors: np.ndarray, k: int = 3) -> np.ndarray:
    """(K,) equal weights on the ``k`` candidates of least mean backtest error."""
    e = _all_origins(errors)
    weights = np.zeros(len(e))
    weights[np.argsort(e, kind="stable")[:k]] = 1.0
    return weights / weights.sum()


def error_features(errors: np.ndarray) -> np.ndarray:
    """(K, 2C + RANKS) per candidate: r_c = log((e_kc + eps) / (min_j e_jc + eps)) for each of the C
    error columns (0 for the best, capped at FAR; eps = 1e-6 scaled units, so a perfect candidate
    beside a near-perfect one is not infinitely apart), min(r_c, 3)^2 (a bend: far behind differs
    little from further behind), and the one-hot rank of its error over all origins (ties: the
    earlier candidate first, as top_mean_weights)."""
    e = np.asarray(errors, dtype=np.float64)                                   # (K, C)
    e = np.where(np.isfinite(e), e, np.inf) + 1e-6
    with np.errstate(invalid="ignore"):
        ratio = np.log(e / e.min(axis=0, keepdims=True))
    ratio = np.minimum(np.nan_to_num(ratio, nan=FAR, posinf=FAR), FAR)
    ranks = np.zeros((len(e), RANKS))
    order = np.argsort(_all_origins(errors), kind="stable")
    ranks[order, np.minimum(np.arange(len(e)), RANKS - 1)] = 1.0
    return np.concatenate([ratio, np.minimum(ratio, 3.0) ** 2, ranks], axis=1)


def softmax_weights(errors: np.ndarray, coef=SOFTMAX_COEF) -> np.ndarray:
    """(K,) softmax of error_features(errors) @ coef."""
    logits = error_features(errors) @ np.asarray(coef, dtype=np.float64)
    w = np.exp(logits - logits.max())
    return w / w.sum()


@dataclass
class Outcome:
    """A training case as the fit sees it: the evidence's errors (K, C), the candidates' forecasts
    (K, H), the target (H,), the history's MASE scale and the case's group (its step)."""

    errors: np.ndarray
    forecasts: np.ndarray
    target: np.ndarray
    scale: float
    group: str


def fit_softmax(outcomes: list[Outcome], l2: float = 1e-3, steps: int = 600, lr: float = 0.05) -> np.ndarray:
    """The coefficients minimizing the mean over groups of log(mean MASE of the combined forecast)
    (the geometric mean over groups the default was chosen by) plus l2 * |coef|^2, by Adam from 0
    (equal weights). Cases are padded to the largest K and H and masked, so a step is a few tensor
    operations over all of them."""
    n, k_max = len(outcomes), max(len(o.errors) for o in outcomes)
    h_max = max(len(o.target) for o in outcomes)
    width = error_features(outcomes[0].errors).shape[1]
    feats, live = torch.zeros(n, k_max, width, dtype=torch.float64), torch.zeros(n, k_max, dtype=torch.bool)
    fc, target = torch.zeros(n, k_max, h_max, dtype=torch.float64), torch.zeros(n, h_max, dtype=torch.float64)
    steps_live = torch.zeros(n, h_max, dtype=torch.float64)
    for i, o in enumerate(outcomes):
        k, h = o.forecasts.shape
        feats[i, :k], live[i, :k] = torch.from_numpy(error_features(o.errors)), True
        fc[i, :k, :h], target[i, :h] = torch.from_numpy(o.forecasts / o.scale), torch.from_numpy(o.target / o.scale)
        steps_live[i, :h] = 1.0
    names = sorted({o.group for o in outcomes})
    group = torch.tensor([names.index(o.group) for o in outcomes])
    coef = torch.zeros(width, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([coef], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        weights = torch.softmax((feats @ coef).masked_fill(~live, -torch.inf), dim=1)     # (N, K)
        combined = torch.einsum("nk,nkh->nh", weights, fc)                                # (N, H)
        mase = ((combined - target).abs() * steps_live).sum(1) / steps_live.sum(1)       # (N,)
        group_means = torch.zeros(len(names), dtype=torch.float64).index_add(0, group, mase)
        group_means = group_means / torch.bincount(group, minlength=len(names))
        loss = group_means.clamp_min(1e-12).log().mean() + l2 * (coef ** 2).sum()   # a perfect group: no -inf
        loss.backward()
        optimizer.step()
    return coef.detach().numpy().copy()
