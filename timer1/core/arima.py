"""Seasonal ARIMA(p, d, q)(P, D, Q)_m: the model, its conditional sum of squares and its forecasts (numpy only).

Box & Jenkins' model as R's stats::arima writes it (Hyndman & Athanasopoulos, "Forecasting:
Principles and Practice", 3rd ed., chapter 9), for y differenced into w = (1 - B)^d (1 - B^m)^D y:

    phi(B) Phi(B^m) (w_t - mu) = theta(B) Theta(B^m) e_t,

phi(B) = 1 - phi_1 B - ... - phi_p B^p, Phi(B^m) = 1 - Phi_1 B^m - ... - Phi_P B^{Pm} (the AR
sides), theta(B) = 1 + theta_1 B + ... + theta_q B^q and Theta likewise (the MA sides, R's sign),
e_t white noise of variance sigma^2, and mu a constant: the mean when d + D = 0, the drift (per
differenced step) when d + D = 1, absent otherwise (R's include.mean and auto.arima's drift, whose
regressor 1..n differences into the same constant).

Multiplied out, the AR side is 1 - sum_i a_i B^i over p + Pm lags and the MA side 1 + sum_j b_j B^j
over q + Qm lags (``polynomials``). The conditional sum of squares (R's ARIMA_CSS) sets the
residuals before the first p + Pm differenced values to 0 and runs

    e_t = (w_t - mu) - sum_i a_i (w_{t-i} - mu) - sum_j b_j e_{t-j}

forward; R's method "CSS" minimises their sum of squares, sigma^2 = that sum / the residuals counted.
Forecasts continue the same recursion with future e = 0 and undo the differencing; their h-step
error variance is sigma^2 (psi_0^2 + ... + psi_{h-1}^2), psi the MA(inf) weights of
theta(B) Theta(B^m) / (phi(B) Phi(B^m) (1 - B)^d (1 - B^m)^D) (Brockwell & Davis 2002, 6.4), which
is what R's Kalman forecast converges to once the filter has forgotten its start.

``css_residuals`` runs a whole batch of rows (parameter vectors, each with its own model and series)
in one pass over time: the estimation (timer1.core.arima_fit) evaluates thousands of them per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from timer1.core.arima_likelihood import psi_weights


@dataclass(frozen=True)
class ArimaSpec:
    """The orders of one seasonal ARIMA and whether it has a constant (mean or drift)."""

    p: int
    d: int
    q: int
    P: int = 0
    D: int = 0
    Q: int = 0
    period: int = 1
    constant: bool = False

    @property
    def n_coef(self) -> int:
        """Coefficients in R's order: ar, ma, sar, sma, then the constant."""
        return self.p + self.q + self.P + self.Q + int(self.constant)

    @property
    def ar_lags(self) -> int:
        return self.p + self.period * self.P

    @property
    def ma_lags(self) -> int:
        return self.q + self.period * self.Q

    def __str__(self) -> str:
        season = f"({self.P},{self.D},{self.Q})[{self.period}]" if self.P + self.D + self.Q else ""
        return f"ARIMA({self.p},{self.d},{self.q}){season}" + (" with constant" if self.constant else "")


@dataclass
class Factors:
    """A batch of K parameter vectors of one model, split into its factors: phi (K, p), theta (K, q),
    seasonal phi (K, P), seasonal theta (K, Q), mu (K,)."""

    phi: np.ndarray
    theta: np.ndarray
    sphi: np.ndarray
    stheta: np.ndarray
    mu: np.ndarray


def factors(spec: ArimaSpec, coef: np.ndarray) -> Factors:
    """coef (K, n_coef) in R's order (ar, ma, sar, sma, constant) -> its Factors."""
    coef = np.atleast_2d(coef)
    cut = np.cumsum([spec.p, spec.q, spec.P, spec.Q])
    mu = coef[:, cut[3]] if spec.constant else np.zeros(coef.shape[0])
    return Factors(coef[:, :cut[0]], coef[:, cut[0]:cut[1]], coef[:, cut[1]:cut[2]], coef[:, cut[2]:cut[3]], mu)


def polynomials(spec: ArimaSpec, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """coef (K, n_coef) -> (a (K, p + Pm), b (K, q + Qm), mu (K,)): the AR side 1 - sum a_i B^i =
    phi(B) Phi(B^m), the MA side 1 + sum b_j B^j = theta(B) Theta(B^m), and the constant."""
    f = factors(spec, coef)
    return (*multiply_out(f, spec.period), f.mu)


def multiply_out(f: Factors, period: int) -> tuple[np.ndarray, np.ndarray]:
    """(a (K, p + Pm), b (K, q + Qm)) of a batch of factors (orders from their widths: zero-padded
    factors give zero-padded sides)."""
    rows, m = len(f.mu), period
    p, q, big_p, big_q = f.phi.shape[1], f.theta.shape[1], f.sphi.shape[1], f.stheta.shape[1]
    a = np.zeros((rows, p + m * big_p))
    a[:, :p] = f.phi
    for j in range(big_p):  # (1 - phi)(1 - Phi) = 1 - phi - Phi + phi Phi
        lag = (j + 1) * m
        a[:, lag - 1] += f.sphi[:, j]
        a[:, lag:lag + p] -= f.sphi[:, j:j + 1] * f.phi
    b = np.zeros((rows, q + m * big_q))
    b[:, :q] = f.theta
    for j in range(big_q):  # (1 + theta)(1 + Theta) = 1 + theta + Theta + theta Theta
        lag = (j + 1) * m
        b[:, lag - 1] += f.stheta[:, j]
        b[:, lag:lag + q] += f.stheta[:, j:j + 1] * f.theta
    return a, b


def difference_polynomial(spec: ArimaSpec) -> np.ndarray:
    """(d + Dm + 1,) coefficients of (1 - B)^d (1 - B^m)^D, lag 0 first."""
    out = np.ones(1)
    for _ in range(spec.d):
        out = np.convolve(out, [1.0, -1.0])
    seasonal = np.zeros(spec.period + 1)
    seasonal[[0, -1]] = 1.0, -1.0
    for _ in range(spec.D):
        out = np.convolve(out, seasonal)
    return out


def difference(y: np.ndarray, d: int, D: int, period: int) -> np.ndarray:
    """(n - d - Dm,) w = (1 - B)^d (1 - B^m)^D y: seasonal differences first, as R's arima."""
    w = np.asarray(y, dtype=np.float64)
    for _ in range(D):
        w = w[period:] - w[:-period]
    for _ in range(d):
        w = np.diff(w)
    return w


def css_residuals(w: np.ndarray, f: Factors, period: int, start: np.ndarray) -> np.ndarray:
    """(K, T) conditional residuals of K rows at once.

    w (K, T): each row's differenced series, right-aligned (padding on the left, any value); f: each
    row's factors, zero-padded to common orders; period: the m of every row (rows without seasonal
    terms have zero seasonal factors); start (K,): the first column with a residual, the row's first
    value plus its own p + Pm. Residuals before ``start`` are 0, as R's ARIMA_CSS.

    The two sides are applied factor by factor, which equals the multiplied-out recursion: the AR
    side reads only data (from p + Pm values before start on); the MA side runs on a sequence that is
    0 before start with no past residuals, where a cascade of the two recursive filters 1 / Theta(B^m)
    and 1 / theta(B) is the filter 1 / (theta(B) Theta(B^m)). The seasonal one steps a whole season at
    a time (its lags are multiples of m), the other one step at a time over q lags."""
    steps, m = w.shape[1], period
    u = (w - f.mu[:, None]).T  # (T, K): a time step is a contiguous row
    x = u.copy()
    for j in range(f.sphi.shape[1]):  # Phi(B^m) u
        x[(j + 1) * m:] -= f.sphi[:, j] * u[:steps - (j + 1) * m]
    v = x.copy()
    for i in range(f.phi.shape[1]):  # phi(B) Phi(B^m) u
        v[i + 1:] -= f.phi[:, i] * x[:steps - i - 1]
    v[np.arange(steps)[:, None] < start[None, :]] = 0.0
    first = int(start.min())
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(first, steps, m) if f.stheta.shape[1] else ():  # z = v / Theta(B^m), a season at a time
            end = min(t + m, steps)
            for j in range(f.stheta.shape[1]):
                lag = (j + 1) * m
                lo = max(t, lag)  # z before the data is 0
                if lo < end:
                    v[lo:end] -= f.stheta[:, j] * v[lo - lag:end - lag]
        q = f.theta.shape[1]
        if q:
            e = np.concatenate([np.zeros((q, v.shape[1])), v])  # e = z / theta(B), q leading zeros
            reversed_theta = f.theta[:, ::-1].T  # (q, K) lines up with e[t - q:t]
            for t in range(first, steps):
                e[q + t] -= np.einsum("qk,qk->k", reversed_theta, e[t:q + t])
            v = e[q:]
    return v.T


@dataclass
class ArimaFit:
    """One fitted model: its orders, coefficients (R's order), the innovations variance the
    intervals use, the criterion it was chosen by, and the series it was fitted on."""

    spec: ArimaSpec
    coef: np.ndarray  # (n_coef,)
    sigma2: float
    aicc: float
    y: np.ndarray  # (n,) the values fitted

    def forecast(self, horizon: int) -> np.ndarray:
        """(H,) the point forecast after the fitted values."""
        return forecasts_at(self.spec, self.coef, self.y, [len(self.y)], horizon)[0]

    def variance(self, horizon: int) -> np.ndarray:
        """(H,) sigma^2 (psi_0^2 + ... + psi_{h-1}^2)."""
        return self.sigma2 * np.cumsum(arima_psi(self.spec, self.coef, horizon) ** 2)

    def interval(self, horizon: int, level: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (H,): the forecast -/+ z sqrt(variance) (R's forecast.Arima)."""
        if not 0 < level < 100:
            raise ValueError(f"level must be in (0, 100), got {level!r}")
        mean = self.forecast(horizon)
        half = NormalDist().inv_cdf(0.5 + level / 200.0) * np.sqrt(self.variance(horizon))
        return mean - half, mean + half


def arima_psi(spec: ArimaSpec, coef: np.ndarray, count: int) -> np.ndarray:
    """(count,) psi_0 = 1, psi_j = b_j + sum_i c_i psi_{j-i}, where 1 - sum c_i B^i is the AR side
    times the differencing (R's ARIMAtoMA on the integrated model)."""
    a, b, _ = polynomials(spec, coef)
    c = -np.convolve(np.concatenate([[1.0], -a[0]]), difference_polynomial(spec))[1:]  # (p + Pm + d + Dm,)
    return psi_weights(c[None, :], b, count)[0]


def forecasts_at(spec: ArimaSpec, coef: np.ndarray, y: np.ndarray, origins: list[int], horizon: int) -> np.ndarray:
    """(O, H) forecasts from each origin o (the values y[:o] known, o >= d + Dm), the coefficients fixed.

    One residual pass over the whole series serves every origin: a residual at t reads only values
    before and at t. All origins then run the recursion together, H steps, on their last p + Pm
    values of w - mu and q + Qm residuals, future e = 0, and y is rebuilt from w and the values
    before o: y_t = w_t + sum_i g_i y_{t-i}, 1 - sum g_i B^i the differencing."""
    y = np.asarray(y, dtype=np.float64)
    a, b, mu = polynomials(spec, coef)  # (1, A), (1, B), (1,)
    lag = spec.d + spec.period * spec.D  # values the differencing eats
    w = difference(y, spec.d, spec.D, spec.period)  # (n - lag,)
    e = css_residuals(w[None, :], factors(spec, coef), spec.period, np.array([spec.ar_lags]))[0]
    g = -difference_polynomial(spec)[1:]  # (lag,)
    n_ar, n_ma = a.shape[1], b.shape[1]
    w_path = np.zeros((len(origins), n_ar + horizon))  # before the data: 0, so it adds nothing
    e_path = np.zeros((len(origins), n_ma + horizon))
    y_path = np.zeros((len(origins), lag + horizon))
    for row, o in enumerate(origins):
        k = o - lag  # w values known at this origin
        known = w[max(0, k - n_ar):k] - mu[0]
        w_path[row, n_ar - len(known):n_ar] = known
        known = e[max(0, k - n_ma):k]
        e_path[row, n_ma - len(known):n_ma] = known
        y_path[row, :lag] = y[o - lag:o]
    a_rev, b_rev, g_rev = a[0, ::-1], b[0, ::-1], g[::-1]  # line up with the latest values last
    for h in range(horizon):
        step = w_path[:, h:h + n_ar] @ a_rev + e_path[:, h:h + n_ma] @ b_rev  # (O,)
        w_path[:, n_ar + h] = step
        y_path[:, lag + h] = step + mu[0] + y_path[:, h:h + lag] @ g_rev
    return y_path[:, lag:]
