"""Forecast variances of the ETS models, in closed form (Hyndman et al. 2008, chapter 6).

Every model timer1.core.ets fits has one, so no simulation is needed:

    class 1  additive error (ANN, AAN, AAdN, ANA, AAA, AAdA): Table 6.1,
             v_h = sigma^2 [1 + sum_{j<h} c_j^2], written out per model as R's forecast.ets does;
    class 2  multiplicative error, no multiplicative season (MNN ... MAdA): section 6.4,
             v_h = (1 + sigma^2) theta_h - mu_h^2, theta_h = mu_h^2 + sigma^2 sum_{j<h} c_j^2 theta_{h-j},
             c_j = alpha + beta phi_j + gamma [j mod m = 0];
    class 3  multiplicative error and season (MNM, MAM, MAdM): section 6.5, the first two moments of
             the state matrix X = x_trend x_season' propagated exactly (Kronecker products).

statsforecast 2.1 departs from the book in two places, so its intervals differ from these there:
it takes k = floor((H - 1) / m) at every step of a class 1 seasonal model (the book: per step h)
and c_j = alpha * beta * j for M,A,A (the book: alpha + beta * j).

The functions read a fitted model duck-typed (spec, smoothing parameters, final states, sigma2,
forecast), so this module needs nothing from timer1.core.ets.
"""

from __future__ import annotations

import numpy as np


def forecast_variance(fit, horizon: int) -> np.ndarray:
    """(H,) variance of y_{n+h} given the fitted model's states after its last value."""
    spec = fit.spec
    if spec.error == "A":
        return fit.sigma2 * additive_error_factor(fit, horizon)
    if spec.season == "M":
        return class3_variance(fit, horizon)
    return class2_variance(fit.forecast(horizon), fit.sigma2, _class2_gains(fit, horizon))


def _phi_sums(fit, steps: np.ndarray) -> np.ndarray:
    """phi_j = phi + ... + phi^j (j for an undamped trend, 0 without trend), for j in steps."""
    if fit.spec.trend == "N":
        return np.zeros(len(steps))
    if not fit.spec.damped:
        return steps.astype(np.float64)
    return np.array([np.sum(fit.phi ** np.arange(1, j + 1)) for j in steps])


def additive_error_factor(fit, horizon: int) -> np.ndarray:
    """v_h / sigma^2 for the class 1 models (Hyndman et al. 2008, Table 6.1)."""
    alpha, beta, gamma, phi = fit.alpha, fit.beta, fit.gamma, fit.phi
    m, h = fit.spec.m, np.arange(1, horizon + 1, dtype=np.float64)
    seasons = np.floor((h - 1) / m)  # k: whole seasons before step h
    if fit.spec.trend == "N":
        trend_part = alpha ** 2 * (h - 1)
    elif not fit.spec.damped:
        trend_part = (h - 1) * (alpha ** 2 + alpha * beta * h + beta ** 2 * h * (2 * h - 1) / 6)
    else:
        trend_part = (alpha ** 2 * (h - 1)
                      + beta * phi * h / (1 - phi) ** 2 * (2 * alpha * (1 - phi) + beta * phi)
                      - beta * phi * (1 - phi ** h) / ((1 - phi) ** 2 * (1 - phi ** 2))
                      * (2 * alpha * (1 - phi ** 2) + beta * phi * (1 + 2 * phi - phi ** h)))
    season_part = 0.0
    if fit.spec.season == "A":
        season_part = gamma * seasons * (2 * alpha + gamma)
        if fit.spec.trend == "A" and not fit.spec.damped:
            season_part = gamma * seasons * (2 * alpha + gamma + beta * m * (seasons + 1))
        elif fit.spec.trend == "A":
            season_part = season_part + (2 * beta * gamma * phi / ((1 - phi) * (1 - phi ** m))
                                         * (seasons * (1 - phi ** m) - phi ** m * (1 - phi ** (m * seasons))))
    return 1.0 + trend_part + season_part


def _class2_gains(fit, horizon: int) -> np.ndarray:
    """(H,) c_j = alpha + beta phi_j + gamma [j mod m = 0] for j = 1..H (section 6.4)."""
    steps = np.arange(1, horizon + 1)
    gains = fit.alpha + fit.beta * _phi_sums(fit, steps)
    if fit.spec.season == "A":
        gains = gains + fit.gamma * (steps % fit.spec.m == 0)
    return gains


def class2_variance(mean: np.ndarray, sigma2: float, gains: np.ndarray) -> np.ndarray:
    """(1 + sigma^2) theta_h - mu_h^2 with theta_1 = mu_1^2 and
    theta_h = mu_h^2 + sigma^2 sum_{j=1}^{h-1} c_j^2 theta_{h-j}."""
    theta = np.zeros(len(mean))
    for k in range(len(mean)):
        theta[k] = mean[k] ** 2 + sigma2 * np.dot(gains[:k] ** 2, theta[:k][::-1])
    return (1 + sigma2) * theta - mean ** 2


def _class3_matrices(fit):
    """(F, B, C, H): vec X_t = (F + B e_t + C e_t^2) vec X_{t-1}, y_t = H vec X_{t-1} (1 + e_t),
    X = x1 x2' with x1 = (l, b) or (l,) and x2 the m seasonal terms in R's order."""
    alpha, beta, gamma, phi, m = fit.alpha, fit.beta, fit.gamma, fit.phi, fit.spec.m
    if fit.spec.trend == "N":
        f1, g1, h1 = np.array([[1.0]]), np.array([[alpha]]), np.array([1.0])
    else:
        phi = phi if fit.spec.damped else 1.0
        f1 = np.array([[1.0, phi], [0.0, phi]])
        h1 = np.array([1.0, phi])  # the one-step forecast uses l + phi b
        g1 = np.outer([alpha, beta], h1)
    f2 = np.zeros((m, m))
    f2[0, m - 1] = 1.0
    f2[np.arange(1, m), np.arange(m - 1)] = 1.0  # the seasonal terms shift by one
    g2 = np.zeros((m, m))
    g2[0, m - 1] = gamma
    h2 = np.zeros(m)
    h2[m - 1] = 1.0
    # vec(A X B') = (B kron A) vec X, column-major vec
    return (np.kron(f2, f1), np.kron(g2, f1) + np.kron(f2, g1), np.kron(g2, g1), np.kron(h2, h1))


def class3_variance(fit, horizon: int) -> np.ndarray:
    """Exact first two moments of vec X (errors independent, E e^2 = s2, E e^4 = 3 s2^2):
    M_t = (F + s2 C) M_{t-1},  S_t = F S F' + s2 (B S B' + F S C' + C S F') + 3 s2^2 C S C',
    v_h = (1 + s2) H S_{h-1} H' - (H M_{h-1})^2."""
    f, b, c, h = _class3_matrices(fit)
    s2 = fit.sigma2
    x1 = np.array([fit.level, fit.trend]) if fit.spec.trend != "N" else np.array([fit.level])
    x2 = np.asarray(fit.season, dtype=np.float64)[::-1]  # forecast order -> R's order
    mean = np.kron(x2, x1)  # vec(x1 x2')
    second = np.outer(mean, mean)
    out = np.zeros(horizon)
    for k in range(horizon):
        mu = h @ mean
        out[k] = (1 + s2) * (h @ second @ h) - mu ** 2
        mean = (f + s2 * c) @ mean
        fsc = f @ second @ c.T
        second = (f @ second @ f.T + s2 * (b @ second @ b.T + fsc + fsc.T)
                  + 3 * s2 ** 2 * c @ second @ c.T)
    return out
