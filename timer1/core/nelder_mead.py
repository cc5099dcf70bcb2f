"""Nelder-Mead for many small problems at once, in lock-step (numpy only).

The simplex method of Nelder & Mead (1965) in the variant statsforecast's AutoETS runs (the one R's
forecast::ets optimizes with too, minus R's unbounded steps): box bounds by clamping every trial
point, the first simplex made by scaling one coordinate at a time by (1 + init_step) (or setting it
to zero_pert when it is 0), the adaptive coefficients of Gao & Han (2012) (expansion 1 + 2/n,
contraction 3/4 - 1/(2n), shrink 1 - 1/n for n dimensions), and the stopping rule "standard
deviation of the simplex's values below tol_std" or max_iter iterations.

All problems share one width D; a coordinate whose lower and upper bounds are equal is fixed, not
a dimension, so problem p has n_p = (number of free coordinates) dimensions and n_p + 1 vertices,
stored padded, vertex first, in (D + 1, P, D) (the centroid's sum over vertices is then a sum of
whole slabs) with the unused vertices at value +inf and at the origin (they add nothing to it). A fixed coordinate stays exactly at its value: every
step is an affine combination of vertices that agree on it, clamped to [value, value].

Every objective call asks for one point of every running problem: the reflection of one that
starts an iteration, the expansion or contraction of one whose reflection was not taken (and the
shrunk vertices, rarely, in a call of their own). The objective sees big batches, which is the
point, and a problem whose reflection is taken goes on at once instead of waiting out the others'
second calls. Problems that have stopped leave the batch: the arrays are compacted once a few of
them have (until then they ride along, masked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# objective(points (K, D), problem (K,) int, ascending) -> values (K,); NaN is treated as +inf
Objective = Callable[[np.ndarray, np.ndarray], np.ndarray]
COMPACT_SHARE = 0.05  # compact the batch once this share of it has stopped


@dataclass
class NelderMeadResult:
    x: np.ndarray  # (P, D) best vertex
    fun: np.ndarray  # (P,) its value
    iterations: np.ndarray  # (P,) iterations run


def _evaluate(objective: Objective, points: np.ndarray, problems: np.ndarray) -> np.ndarray:
    if len(problems) == 0:
        return np.zeros(0)
    values = np.asarray(objective(points, problems), dtype=np.float64)
    return np.where(np.isnan(values), np.inf, values)


def _first_simplex(x0, lower, upper, free, init_step, zero_pert):
    """(D+1, P, D) simplex: vertex k perturbs the k-th free coordinate, vertex n_p is x0 (as
    statsforecast), vertices past n_p are 0 (unused)."""
    width = x0.shape[1]
    simplex = np.repeat(x0[None, :, :], width + 1, axis=0)  # (D+1, P, D)
    stepped = np.clip(np.where(x0 == 0, zero_pert, x0 * (1.0 + init_step)), lower, upper)
    owner, column = np.nonzero(free)
    rank = (np.cumsum(free, axis=1) - 1)[owner, column]  # which vertex perturbs it
    simplex[rank, owner, column] = stepped[owner, column]
    dims = free.sum(axis=1)
    simplex[np.arange(width + 1)[:, None] > dims[None, :]] = 0.0
    return simplex


@dataclass
class _Batch:
    """The problems still in the lock-step batch (rows), compacted now and then."""

    ids: np.ndarray  # (A,) problem numbers, ascending
    simplex: np.ndarray  # (D+1, A, D)
    values: np.ndarray  # (A, D+1), +inf at unused vertices
    lower: np.ndarray  # (A, D)
    upper: np.ndarray
    dims: np.ndarray  # (A,) int
    live: np.ndarray  # (A, D+1) bool: vertices 0..n_p
    coef: np.ndarray  # (A, 3): expansion, contraction, shrink
    running: np.ndarray  # (A,) bool
    waiting: np.ndarray  # (A,) bool: the reflection is in, the expansion/contraction is due
    f_r: np.ndarray  # (A,) the reflection's value while waiting
    iterations: np.ndarray  # (A,) int

    def take(self, rows: np.ndarray) -> _Batch:
        return _Batch(*(getattr(self, f)[:, rows] if f == "simplex" else getattr(self, f)[rows]
                        for f in self.__dataclass_fields__))


def minimize(objective: Objective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             max_iter: int = 1000, tol_std: float = 1e-4) -> NelderMeadResult:
    """Minimize P problems at once; x0, lower, upper: (P, D), lower == upper fixes a coordinate."""
    init_step, zero_pert = 0.05, 1e-4
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    x0 = np.clip(np.asarray(x0, float), lower, upper)
    free = lower < upper
    dims = free.sum(axis=1)
    n_problems, width = x0.shape
    live = np.arange(width + 1)[None, :] <= dims[:, None]  # (P, D+1): vertices 0..n_p
    simplex = _first_simplex(x0, lower, upper, free, init_step, zero_pert)
    owner, vertex = np.nonzero(live)
    values = np.full((n_problems, width + 1), np.inf)
    values[owner, vertex] = _evaluate(objective, simplex[vertex, owner], owner)
    n = np.maximum(dims, 1).astype(float)
    coef = np.stack([1.0 + 2.0 / n, 0.75 - 1.0 / (2.0 * n), 1.0 - 1.0 / n], axis=1)
    no = np.zeros(n_problems, dtype=bool)
    batch = _Batch(np.arange(n_problems), simplex, values, lower, upper, dims, live, coef, ~no, no,
                   np.zeros(n_problems), np.zeros(n_problems, dtype=np.int64))
    result = NelderMeadResult(x0.copy(), np.full(n_problems, np.inf), np.zeros(n_problems, dtype=np.int64))
    while True:
        ranks = _ranks(batch.values, batch.live)
        starting = batch.running & ~batch.waiting  # between two iterations: may stop here
        batch.running &= ~(starting & (_converged(batch, ranks, tol_std) | (batch.iterations >= max_iter)))
        stopped = np.count_nonzero(~batch.running)
        if stopped == len(batch.ids) or stopped > COMPACT_SHARE * len(batch.ids):
            _record(batch, ~batch.running, result)
            keep = np.flatnonzero(batch.running)
            batch, ranks = batch.take(keep), tuple(r[keep] for r in ranks)
            if not len(batch.ids):
                return result
        batch.iterations += batch.running & ~batch.waiting
        _step(objective, batch, ranks)


def _record(batch: _Batch, rows: np.ndarray, result: NelderMeadResult) -> None:
    """Store the best vertex (the first of equals, as a stable sort) of the given rows."""
    rows = np.flatnonzero(rows)
    best = np.argmin(batch.values[rows], axis=1)
    ids = batch.ids[rows]
    result.x[ids], result.fun[ids] = batch.simplex[best, rows], batch.values[rows, best]
    result.iterations[ids] = batch.iterations[rows]


def _converged(batch: _Batch, ranks: tuple, tol_std: float) -> np.ndarray:
    """(A,) population standard deviation of the simplex's n + 1 values below tol_std (never with
    an inf among them). A standard deviation is at least range / sqrt(2 (n + 1)), so only the rows
    of a small range need the sum."""
    pick = np.arange(len(batch.ids))
    rows = np.flatnonzero(batch.values[pick, ranks[1]] - batch.values[pick, ranks[0]]
                          < tol_std * np.sqrt(2.0 * (batch.dims + 1)) * (1 + 1e-6))  # margin: rounding
    out = np.zeros(len(pick), dtype=bool)
    if len(rows):
        values, live, count = batch.values[rows], batch.live[rows], batch.dims[rows] + 1
        with np.errstate(invalid="ignore"):
            mean = np.where(live, values, 0.0).sum(axis=1) / count
            centred = np.where(live, values - mean[:, None], 0.0)
            out[rows] = np.sqrt((centred ** 2).sum(axis=1) / count) < tol_std
    return out


def _step(objective: Objective, batch: _Batch, ranks: tuple) -> None:
    """One objective call for every row: the reflection of a row starting an iteration, the
    expansion or contraction of a waiting one (its simplex has not moved since its reflection,
    so the same arithmetic gives the same points). An iteration is thus one call when the
    reflection is taken, two when not, and a problem never waits for the others' second calls.
    Rows that have stopped but are not compacted away yet are evaluated and ignored."""
    pick, n, waiting = np.arange(len(batch.ids)), batch.dims, batch.waiting
    best, worst, second = ranks
    f_best, f_worst, f_second = (batch.values[pick, v] for v in (best, worst, second))
    x_worst = batch.simplex[worst, pick]
    centroid = (batch.simplex.sum(axis=0) - x_worst) / n[:, None]  # (A, D)
    x_r = np.clip(2.0 * centroid - x_worst, batch.lower, batch.upper)  # reflection, coefficient 1
    f_r = batch.f_r  # the waiting rows'
    expand = waiting & (f_r < f_best)
    outside = waiting & ~expand & (f_second <= f_r) & (f_r < f_worst)
    step = np.where(expand, batch.coef[:, 0], np.where(outside, batch.coef[:, 1], -batch.coef[:, 1]))
    x_2 = np.clip(centroid + step[:, None] * (x_r - centroid), batch.lower, batch.upper)
    f = _evaluate(objective, np.where(waiting[:, None], x_2, x_r), batch.ids)
    reflected = batch.running & ~waiting
    take_r = reflected & (f_best <= f) & (f < f_second)
    use_2 = (expand & (f < f_r)) | (outside & (f <= f_r)) | (waiting & ~expand & ~outside & (f < f_worst))
    use_2 &= batch.running
    replace = np.flatnonzero(take_r | use_2 | (expand & batch.running))
    batch.simplex[worst[replace], replace] = np.where(use_2[replace, None], x_2[replace], x_r[replace])
    batch.values[replace, worst[replace]] = np.where(use_2, f, np.where(waiting, f_r, f))[replace]
    shrinking = np.flatnonzero(batch.running & waiting & ~expand & ~use_2)
    batch.f_r = np.where(reflected, f, f_r)
    batch.waiting = reflected & ~take_r
    if len(shrinking):
        _shrink(objective, batch, shrinking, best[shrinking])


def _ranks(values: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best, worst, second worst) vertex of each row, as positions 0, n and n-1 of a stable sort
    of the live values would give them: the first of equal lows, the last of equal highs."""
    last = values.shape[1] - 1
    high = np.where(live, values, -np.inf)
    worst = last - np.argmax(high[:, ::-1], axis=1)
    high[np.arange(len(values)), worst] = -np.inf
    second = last - np.argmax(high[:, ::-1], axis=1)
    return np.argmin(values, axis=1), worst, second


def _shrink(objective: Objective, batch: _Batch, rows: np.ndarray, best: np.ndarray) -> None:
    """Pull every vertex but the best toward it by the shrink coefficient, and re-evaluate them."""
    mask = batch.live[rows]  # (S, D+1)
    mask[np.arange(len(rows)), best] = False
    owner, vert = np.nonzero(mask)
    row = rows[owner]
    anchor = batch.simplex[best[owner], row]  # (K, D)
    sigma = batch.coef[row, 2][:, None]
    moved = np.clip(anchor + sigma * (batch.simplex[vert, row] - anchor), batch.lower[row], batch.upper[row])
    batch.simplex[vert, row] = moved
    batch.values[row, vert] = _evaluate(objective, moved, batch.ids[row])
