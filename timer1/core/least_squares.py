"""Levenberg-Marquardt for many small nonlinear least-squares problems at once, in lock-step (numpy only).

Minimises S(x) = sum_t r_t(x)^2 for every problem of a batch (Levenberg 1944; Marquardt 1963, "An
algorithm for least-squares estimation of nonlinear parameters", SIAM J. Appl. Math. 11(2)), the
textbook step (Nocedal & Wright, "Numerical Optimization", 2006, section 10.3):

    (J^T J + lambda diag(J^T J)) delta = -J^T r,

taken when it lowers S (then lambda /= 10), refused otherwise (lambda *= 10). The Jacobian J is
made by forward differences, step 1e-6 max(1, |x_j|). A problem stops when an accepted step lowers
S by less than ``tol`` of S, when lambda grows past 1e10 (no step lowers S any more), or after
``max_iter`` iterations.

Used for ARIMA's conditional sum of squares and its exact likelihood, written as a sum of squares of
scaled Kalman innovations (timer1.core.arima_fit), where R's arima runs BFGS on the same objectives:
for a sum of squares the Gauss-Newton step converges in a few iterations, and every residual call
evaluates all problems (and each problem's D perturbed points) in one pass.

All problems share one width D; problem p uses its first ``dims[p]`` coordinates (the rest stay
where they start and do not enter its step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# residuals(points (K, D), problem (K,) int) -> (K, T) residuals (NaN or inf: the point is refused)
Residuals = Callable[[np.ndarray, np.ndarray], np.ndarray]
MAX_LAMBDA = 1e10


@dataclass
class LeastSquaresResult:
    x: np.ndarray  # (P, D) the minimiser found
    sse: np.ndarray  # (P,) S there
    iterations: np.ndarray  # (P,) steps tried


def _sse(r: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(r * r, axis=1)
    return np.where(np.isfinite(total), total, np.inf)


def levenberg_marquardt(residuals: Residuals, x0: np.ndarray, dims: np.ndarray,
                        max_iter: int = 50, tol: float = 1e-6) -> LeastSquaresResult:
    """Minimise the sum of squares of every problem p = 0..P-1 from x0 (P, D) over its first dims[p]
    coordinates."""
    x = np.array(x0, dtype=np.float64)
    count, width = x.shape
    ids = np.arange(count)
    r = residuals(x, ids)  # (P, T)
    sse = _sse(r)
    damping = np.full(count, 1.0)
    iterations = np.zeros(count, dtype=np.int64)
    live = np.isfinite(sse) & (dims > 0)
    free = np.arange(width)[None, :] < dims[:, None]  # (P, D)
    for _ in range(max_iter):
        run = np.nonzero(live)[0]
        if run.size == 0:
            break
        iterations[run] += 1
        jac = _jacobian(residuals, x[run], r[run], run, free[run])  # (R, T, D)
        step = _step(jac, r[run], damping[run], free[run])  # (R, D)
        trial = x[run] + step
        r_trial = residuals(trial, run)
        sse_trial = _sse(r_trial)
        better = sse_trial < sse[run]
        gain = np.where(better, sse[run] - sse_trial, 0.0)
        took = run[better]
        x[took], r[took], sse[took] = trial[better], r_trial[better], sse_trial[better]
        damping[run] = np.where(better, np.maximum(damping[run] / 10, 1e-12), damping[run] * 10)
        done = (better & (gain <= tol * np.maximum(sse[run], 1e-300))) | (damping[run] > MAX_LAMBDA)
        live[run[done]] = False
    return LeastSquaresResult(x, sse, iterations)


def _jacobian(residuals: Residuals, x: np.ndarray, r: np.ndarray, ids: np.ndarray,
              free: np.ndarray) -> np.ndarray:
    """(R, T, D) forward-difference Jacobian; columns of unused coordinates are 0."""
    rows, width = x.shape
    h = 1e-6 * np.maximum(1.0, np.abs(x))  # (R, D)
    owner, column = np.nonzero(free)  # one perturbed point per free coordinate
    points = x[owner].copy()
    points[np.arange(len(owner)), column] += h[owner, column]
    shifted = residuals(points, ids[owner])  # (F, T)
    jac = np.zeros((rows, r.shape[1], width))
    with np.errstate(over="ignore", invalid="ignore"):
        jac[owner, :, column] = (shifted - r[owner]) / h[owner, column][:, None]
    return np.where(np.isfinite(jac), jac, 0.0)


def _step(jac: np.ndarray, r: np.ndarray, damping: np.ndarray, free: np.ndarray) -> np.ndarray:
    """(R, D) the damped Gauss-Newton step; 0 in the unused coordinates."""
    normal = np.einsum("rtd,rte->rde", jac, jac)  # (R, D, D)
    gradient = np.einsum("rtd,rt->rd", jac, r)  # (R, D)
    diag = np.diagonal(normal, axis1=1, axis2=2)  # (R, D)
    scale = np.where(free, np.maximum(diag, 1e-12), 1.0)
    system = normal * (free[:, :, None] & free[:, None, :])  # unused rows and columns cut out ...
    system = system + np.einsum("rd,de->rde", np.where(free, damping[:, None] * scale, 1.0), np.eye(diag.shape[1]))
    rhs = np.where(free, -gradient, 0.0)  # ... so their step solves 1 * delta = 0
    with np.errstate(all="ignore"):
        try:
            return np.linalg.solve(system, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a singular system: solve row by row, refusing the broken ones
            return np.stack([_solve_or_zero(a, b) for a, b in zip(system, rhs)])


def _solve_or_zero(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.full_like(b, np.nan)
