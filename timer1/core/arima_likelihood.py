"""The exact Gaussian likelihood of ARMA models by the Kalman filter, for a whole batch of rows at once.

R's stats::arima (method "ML", and the second stage of "CSS-ML") evaluates it with the state-space
form of Harvey (1989, "Forecasting, Structural Time Series Models and the Kalman Filter", 3.3.5)
in its C routine ARIMA_Like; this module has the same model and likelihood (its covariance recursion
in the Chandrasekhar form, ``innovations``). For the differenced series
u_t = w_t - mu (timer1.core.arima) with AR side 1 - sum a_i B^i and MA side 1 + sum b_j B^j
multiplied out, r = max(len(a), len(b) + 1):

    alpha_t = T alpha_{t-1} + R e_t,   u_t = alpha_t[0],
    T = [a | I_{r-1} over a row of 0]  (a in the first column, ones above the diagonal),
    R = (1, b_1, ..., b_{r-1})',

the state starting at 0 with its stationary covariance P0 = T P0 T' + R R' (sigma^2 = 1: the
variance is concentrated out). Each step predicts the state, its innovation v_t = u_t - a_t[0] has
variance F_t = P_t[0, 0], and

    -2 log L / n = log(sum v^2 / F / n) + sum log F / n + 1 + log(2 pi),

the innovations with F >= 1e4 left out as R leaves them out. Since R excludes the differencing's own
diffuse start this way, the likelihood of the differenced series is R's likelihood of the original one.

R builds all of P0 by Gardner et al.'s algorithm (1980, Applied Statistics AS 154); the recursion
here needs only its first column, which the ARMA's autocovariances and psi weights give in closed
form (``stationary_column``).
"""

from __future__ import annotations

import numpy as np

DIFFUSE_GAIN = 1e4  # R's ARIMA_Like: innovations of larger variance do not count


def state_matrices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a (K, A), b (K, B) -> the first column of T, phi (K, r), and R (K, r), r = max(A, B + 1)."""
    rows, r = a.shape[0], max(a.shape[1], b.shape[1] + 1)
    phi, loading = np.zeros((rows, r)), np.zeros((rows, r))
    phi[:, :a.shape[1]] = a
    loading[:, 0] = 1.0
    loading[:, 1:b.shape[1] + 1] = b
    return phi, loading


def stationary(a: np.ndarray) -> np.ndarray:
    """(K,) whether the AR side 1 - sum a_i B^i of each row has every root outside the unit circle: the
    Schur-Cohn test as Levinson-Durbin's step-down (Brockwell & Davis 2002, 5.1.1, run backwards), every
    partial autocorrelation strictly inside (-1, 1)."""
    c = np.array(a, dtype=np.float64)
    ok = np.all(np.isfinite(c), axis=1)
    for k in range(c.shape[1], 1, -1):
        kappa = np.where(ok, c[:, k - 1], 0.0)
        ok &= np.abs(kappa) < 1
        kappa = np.where(ok, kappa, 0.0)
        c = (c[:, :k - 1] + kappa[:, None] * c[:, k - 2::-1]) / (1 - kappa ** 2)[:, None]
    return ok & (np.abs(c[:, 0]) < 1) if c.shape[1] else ok


def psi_weights(a: np.ndarray, b: np.ndarray, count: int) -> np.ndarray:
    """(K, count) psi_0 = 1, psi_j = b_j + sum_i a_i psi_{j-i}: the MA(inf) weights of the ARMA."""
    psi = np.zeros((len(a), count))
    psi[:, 0] = 1.0
    for j in range(1, count):
        lags = min(j, a.shape[1])
        moving = b[:, j - 1] if j <= b.shape[1] else 0.0
        psi[:, j] = moving + np.einsum("ki,ki->k", a[:, :lags], psi[:, j - 1::-1][:, :lags])
    return psi


def arma_autocovariances(a: np.ndarray, b: np.ndarray, psi: np.ndarray, count: int) -> np.ndarray:
    """(K, count) gamma_0.. of each stationary row (unit noise variance), Brockwell & Davis (2002), 3.2:
    gamma(k) - sum_i a_i gamma(|k - i|) = sum_{j >= k} theta_j psi_{j-k} (theta_0 = 1) solved for
    k = 0..p, then the same recursion forward; psi: at least the first q + 1 psi weights."""
    rows, p = a.shape
    theta = np.concatenate([np.ones((rows, 1)), b], axis=1)  # (K, q + 1)
    q = theta.shape[1] - 1
    rhs = np.zeros((rows, max(count, p + 1)))
    for k in range(min(q, rhs.shape[1] - 1) + 1):
        rhs[:, k] = np.einsum("kj,kj->k", theta[:, k:], psi[:, :q + 1 - k])
    system = np.zeros((p + 1, p + 1, rows))  # equation, gamma index, row
    system[np.arange(p + 1), np.arange(p + 1)] = 1.0
    eq, lag = np.meshgrid(np.arange(p + 1), np.arange(1, p + 1), indexing="ij")
    np.add.at(system, (eq.ravel(), np.abs(eq - lag).ravel()), -a.T[(lag - 1).ravel()])
    gamma = np.zeros((rows, rhs.shape[1]))
    gamma[:, :p + 1] = _solve_rows(system.transpose(2, 0, 1), rhs[:, :p + 1])
    for k in range(p + 1, rhs.shape[1]):
        gamma[:, k] = np.einsum("ki,ki->k", a, gamma[:, k - 1::-1][:, :p]) + rhs[:, k]
    return gamma[:, :count]


def _solve_rows(matrices: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """(K, n) the solution of each system; a row whose matrix is singular (an AR side on the edge of
    stationarity, where rounding left the test passing) gets NaN rather than failing the batch."""
    try:
        return np.linalg.solve(matrices, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        out = np.full(rhs.shape, np.nan)
        for i, (matrix, vector) in enumerate(zip(matrices, rhs)):
            try:
                out[i] = np.linalg.solve(matrix, vector)
            except np.linalg.LinAlgError:
                pass
        return out


def stationary_column(phi: np.ndarray, loading: np.ndarray) -> np.ndarray:
    """(K, r) the first column of the state's stationary covariance P0 = T P0 T' + R R': the state's
    i-th entry is sum_{k >= i} (phi_k u_{t-1-k+i} + R_k e_{t-k+i}), so its covariance with u_t is
    sum_{k >= i} (phi_k gamma(k - i + 1) + R_k psi_{k-i}). NaN for rows whose AR side is not stationary."""
    rows, r = phi.shape
    ok = stationary(phi)
    phi_ok = np.where(ok[:, None], phi, 0.0)
    psi = psi_weights(phi_ok, loading[:, 1:], r)  # (K, r): r = q + 1, as many as the autocovariances need
    gamma = arma_autocovariances(phi_ok, loading[:, 1:], psi, r + 1)  # (K, r + 1)
    i, k = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
    later = k >= i
    column = (np.einsum("kij,kj->ki", np.where(later, gamma[:, np.clip(k - i + 1, 0, r)], 0.0), phi_ok)
              + np.einsum("kij,kj->ki", np.where(later, psi[:, np.clip(k - i, 0, r - 1)], 0.0), loading))
    column[~ok] = np.nan
    return column


def innovations(u: np.ndarray, a: np.ndarray, b: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(v, F), each (K, T): the Kalman filter's innovations and their variances (sigma^2 = 1).

    u (K, T): each row's centred differenced series, right-aligned; first (K,): the row's first
    column with data (columns before it get v = 0, F = inf). The covariance recursion runs as the
    Chandrasekhar recursions (Morf, Sidhu & Kailath 1974; Harvey 1989, 3.3.4): with the stationary
    start, P_{t+1} - P_t = W_t M_t W_t' has rank one, so the filter carries the r-vectors K_t (gain)
    and W_t and the scalars F_t and M_t instead of the r x r covariance, O(r) a step, and gives R's
    ARIMA_Like's numbers (its full covariance recursion) to rounding:

        a_{t+1} = T a_t + K_t v_t,                  v_t = u_t - a_t[0],
        F_{t+1} = F_t + M_t w_t^2,                  w_t = W_t[0],
        K_{t+1} = (K_t F_t + T W_t M_t w_t) / F_{t+1},
        M_{t+1} = M_t + M_t^2 w_t^2 / F_t,          W_{t+1} = T W_t - K_{t+1} w_t,

    from F_1 = P0[0, 0], K_1 = T P0[:, 0] / F_1, W_1 = K_1, M_1 = -F_1 (P_2 - P_1 = -K_1 F_1 K_1'
    because P0 = T P0 T' + R R'). Rows run from their own first value (left-aligned inside)."""
    rows, steps = u.shape
    phi, loading = state_matrices(a, b)

    def advance(x: np.ndarray) -> np.ndarray:  # T x for x (K, r): T's shape, O(r)
        out = phi * x[:, :1]
        out[:, :-1] += x[:, 1:]
        return out

    start = stationary_column(phi, loading)  # (K, r) P0[:, 0]
    span = steps - first  # values per row
    y = np.take_along_axis(u, np.minimum(first[:, None] + np.arange(steps)[None, :], steps - 1), axis=1)
    state = np.zeros(phi.shape)
    var = start[:, 0].copy()
    gain = advance(start) / var[:, None]
    w, m = gain.copy(), -var
    v, f = np.zeros((rows, steps)), np.zeros((rows, steps))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(int(span.max())):
            v[:, t], f[:, t] = y[:, t] - state[:, 0], var
            state = advance(state) + gain * v[:, t, None]
            w0, tw = w[:, 0], advance(w)
            var_next = var + m * w0 * w0
            gain = (gain * var[:, None] + tw * (m * w0)[:, None]) / var_next[:, None]
            m = m + m * m * w0 * w0 / var
            w, var = tw - gain * w0[:, None], var_next
    back = np.arange(steps)[None, :] - first[:, None]  # right-align again
    inside = back >= 0
    v = np.where(inside, np.take_along_axis(v, np.maximum(back, 0), axis=1), 0.0)
    f = np.where(inside, np.take_along_axis(f, np.maximum(back, 0), axis=1), np.inf)
    return v, f


def standardized(u: np.ndarray, a: np.ndarray, b: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, mean log F, n): z (K, T) = v_t / sqrt(F_t) where the innovation counts (F < DIFFUSE_GAIN),
    else 0; the mean of log F over those counted (K,); how many counted (K,). R's ML variance is
    sum(z^2) / n, and -2 log L = n (log sigma^2 + mean log F + 1 + log 2 pi). Rows whose AR side is not
    stationary: z and mean log F inf."""
    v, f = innovations(u, a, b, first)
    broken = np.any(np.isnan(f) | np.isnan(v), axis=1)
    counted = f < DIFFUSE_GAIN
    n = counted.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(counted, v / np.sqrt(f), 0.0)
        mean_log_f = np.where(counted, np.log(f), 0.0).sum(axis=1) / np.maximum(n, 1)
    z[broken], mean_log_f[broken] = np.inf, np.inf
    return z, mean_log_f, n
