"""Fitting ETS models by maximum likelihood and choosing one by AICc, for many series at once.

The procedure of R's forecast::ets (Hyndman et al. 2008, sections 5.2 and 7.1; Hyndman &
Khandakar 2008, JSS 27(3)), which statsforecast's AutoETS ports:

- candidates: error A/M x trend N/A/Ad x season N/A/M, without the unstable ones R's
  ``restrict=TRUE`` drops (additive error with multiplicative season), without multiplicative
  trend (R's default), without multiplicative error or season on a series that is not strictly
  positive, and seasonal ones only when 1 < m <= 24 and n > m;
- initial states by R's heuristic (``initial_states``): classical decomposition of the series
  (a linear trend plus one Fourier pair when it has fewer than 3 seasons) for the seasonal terms,
  then a line through the first max(10, 2m) seasonally adjusted values for level and slope;
- alpha, beta, gamma, phi and the initial states (m - 1 seasonal ones: the last makes them sum to
  0, or to m when multiplicative) by Nelder-Mead on -2 log L (timer1.core.nelder_mead), started
  where R's initparam starts (alpha = 0.2/m of its range, beta 0.1 of [1e-4, alpha], gamma 0.05
  of [1e-4, 1 - alpha], phi 0.978), within R's "usual" bounds: the box 1e-4 <= alpha, beta,
  gamma <= 0.9999, 0.8 <= phi <= 0.98, and beta <= alpha, gamma <= 1 - alpha at every trial
  point (R's check.param; a point outside gets -2 log L = +inf), with, for a multiplicative
  season, no negative initial seasonal term;
- a model with k free values needs k < n - 1; the one of least
  AICc = -2 log L + 2(k+1) + 2(k+1)(k+2)/(n-k-2) wins (ties: the earlier in R's order).

statsforecast 2.x differs in one place: its initparam shrinks the shared bound array in place, so
its box caps beta at the first trend candidate's starting alpha (0.2/m) for every later candidate,
where R lets beta reach alpha. Where that cap binds (trending series) the two pick other models
or parameters; test_ets.py measures how often on its fixture.

Every candidate of every series is one Nelder-Mead problem; all of them step in lock-step, so one
objective call filters thousands of parameter vectors in one numpy pass over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timer1.core.baselines import _filled, _horizon, estimate_period, periods_for
from timer1.core.ets import (
    MAX_SEASON,
    EtsFit,
    EtsParams,
    EtsSpec,
    FilterResult,
    filter_batch,
    neg2_loglik,
)
from timer1.core.nelder_mead import minimize

LOWER = np.array([1e-4, 1e-4, 1e-4, 0.8])  # alpha, beta, gamma, phi: R's usual bounds
UPPER = np.array([0.9999, 0.9999, 0.9999, 0.98])
MAX_ITER, TOL_STD = 1000, 1e-4  # statsforecast's Nelder-Mead settings
CHUNK = 4096  # rows per filter pass: the first simplices (about 12 points a problem) come in chunks


@dataclass
class Candidate:
    spec: EtsSpec
    start: np.ndarray  # (4,) alpha, beta, gamma, phi starting values (unused ones ignored)


def candidate_models(values: np.ndarray, period: int) -> list[Candidate]:
    """The candidate models for one series in R's order (error, trend, season, damped first)."""
    n, positive = len(values), bool(np.min(values) > 0)
    seasonal = 1 < period <= MAX_SEASON and n > period
    out = []
    for error in "AM":
        for trend in "NA":
            for season in "NAM":
                for damped in (True, False):
                    if (trend == "N" and damped) or (error == "A" and season == "M"):
                        continue
                    if not positive and "M" in (error, season):
                        continue
                    if season != "N" and not seasonal:
                        continue
                    spec = EtsSpec(error, trend, season, damped, period if season != "N" else 1)
                    out.append(Candidate(spec, _starting_smoothing(spec)))
    return out


def _starting_smoothing(spec: EtsSpec) -> np.ndarray:
    """R's initparam: (alpha, beta, gamma, phi) to start from (beta 0 without trend, gamma 0
    without season, phi 1 undamped). It narrows beta's range to [1e-4, alpha] and gamma's to
    [1e-4, 1 - alpha] for the start only: R's optimizer keeps the whole box."""
    lower, upper = LOWER, UPPER
    alpha = lower[0] + 0.2 * (upper[0] - lower[0]) / spec.m
    beta = gamma = 0.0
    if spec.trend != "N":
        beta = lower[1] + 0.1 * (min(upper[1], alpha) - lower[1])
    if spec.season != "N":
        gamma = lower[2] + 0.05 * (min(upper[2], 1 - alpha) - lower[2])
    phi = lower[3] + 0.99 * (upper[3] - lower[3]) if spec.damped else 1.0
    return np.array([alpha, beta, gamma, phi])


def classical_seasonal(values: np.ndarray, m: int, multiplicative: bool) -> np.ndarray:
    """(n,) seasonal component of classical decomposition: centred moving average (2 x m for an
    even m), detrended by - or /, averaged per phase and normalised to mean 0 (or 1)."""
    weights = np.ones(m + 1 - m % 2)
    if m % 2 == 0:
        weights[[0, -1]] = 0.5
    trend = np.full(len(values), np.nan)
    offset = len(weights) // 2
    trend[offset:len(values) - offset] = np.convolve(values, weights / m, mode="valid")
    detrended = values / trend if multiplicative else values - trend
    table = np.full(-(-len(values) // m) * m, np.nan)
    table[:len(values)] = detrended
    table = table.reshape(-1, m)  # (cycles, m): one column per phase
    known = ~np.isnan(table)
    phases = np.where(known, table, 0.0).sum(axis=0) / known.sum(axis=0)  # (m,) nan-mean per phase
    phases = phases / phases.mean() if multiplicative else phases - phases.mean()
    return phases[np.arange(len(values)) % m]


def _fourier_seasonal(values: np.ndarray, m: int, multiplicative: bool) -> np.ndarray:
    """Fewer than 3 seasons: y minus (or over) the line of a fit of y on 1, t, cos, sin (R)."""
    t = np.arange(1, len(values) + 1, dtype=np.float64)
    columns = [np.ones_like(t), t, np.cos(2 * np.pi * t / m)]
    if m > 2:  # sin(pi t) is 0 at the integers
        columns.append(np.sin(2 * np.pi * t / m))
    coef = np.linalg.lstsq(np.stack(columns, axis=1), values, rcond=None)[0]
    line = coef[0] + coef[1] * t
    return values / line if multiplicative else values - line


def initial_states(values: np.ndarray, spec: EtsSpec) -> np.ndarray:
    """R's initstate: (level, [slope], m - 1 seasonal terms in R's order)."""
    m, seasons = spec.m, np.zeros(0)
    adjusted = values
    if spec.season != "N":
        mult = spec.season == "M"
        make = classical_seasonal if len(values) >= 3 * m else _fourier_seasonal
        seasonal = make(values, m, mult)  # (n,)
        seasons = seasonal[1:m][::-1]  # s_1 .. s_{m-1}: newest first
        if mult:
            seasons = np.maximum(seasons, 1e-2)
            if seasons.sum() > m:
                seasons = seasons / np.sum(seasons + 1e-2)
            adjusted = values / np.maximum(seasonal, 1e-2)
        else:
            adjusted = values - seasonal
    first = adjusted[:min(max(10, 2 * m), len(values))]
    if spec.trend == "N":
        return np.concatenate([[first.mean()], seasons])
    t = np.arange(1, len(first) + 1, dtype=np.float64)
    slope, level = np.polyfit(t, first, 1) if len(first) > 1 else (0.0, first[0])
    if abs(level + slope) < 1e-8:  # a multiplicative error divides by l + b
        level, slope = level * (1 + 1e-3), slope * (1 - 1e-3)
    return np.concatenate([[level, slope], seasons])


@dataclass
class _Group:
    """One filter pass: problems [start, end) share m; from err_from on they have multiplicative
    errors, from season_from on (>= err_from) a multiplicative season too."""

    m: int
    start: int
    err_from: int
    season_from: int
    end: int


class _Problems:
    """Every (series, candidate) pair as one Nelder-Mead problem, and the batched objective.

    A point is the canonical row [alpha, beta, gamma, phi, l, b, s_1..s_{m-1}] (seasonal terms in
    R's order, newest first); a value the model lacks is a coordinate fixed by lower == upper at
    beta = gamma = b = s = 0, phi = 1, so a model without season is an additive-season one with
    zero terms and rides in the pass of a seasonal m. The problems are sorted by (m, kind), kind =
    additive error / multiplicative error / multiplicative season, so any ascending subset of them
    falls into contiguous runs that filter_batch and neg2_loglik take as they are."""

    def __init__(self, series: list[np.ndarray], candidates: list[list[Candidate]]):
        entries = [(i, rank, c) for i, cands in enumerate(candidates) for rank, c in enumerate(cands)
                   if _n_free(c.spec) < len(series[i]) - 1]  # R: k >= n - 1 leaves no data
        seasonal = sorted({c.spec.m for _, _, c in entries if c.spec.season != "N"})
        ride = seasonal[0] if seasonal else 1  # the pass the models without season join
        keys = [(c.spec.m if c.spec.season != "N" else ride, _kind(c.spec)) for _, _, c in entries]
        order = sorted(range(len(entries)), key=keys.__getitem__)  # stable: R's order within a kind
        self.entries = [entries[p] for p in order]
        self.groups = _groups([keys[p] for p in order])
        self.lengths = np.array([len(series[i]) for i, _, _ in self.entries], dtype=np.int64)
        steps = max(self.lengths, default=1)
        self.y = np.stack([np.pad(series[i], (0, steps - len(series[i])), mode="edge")
                           for i, _, _ in self.entries], axis=1) if self.entries else np.zeros((1, 0))  # (T, P)
        width = 6 + max(seasonal, default=1) - 1
        self.x0, self.lower, self.upper = (np.zeros((len(self.entries), width)) for _ in range(3))
        for p, (i, _, cand) in enumerate(self.entries):
            self._lay_out(p, cand, initial_states(series[i], cand.spec))
        self._cached = [(np.zeros(0, dtype=np.int64), self.y[:, :0])] * 2

    def _lay_out(self, p: int, cand: Candidate, states: np.ndarray) -> None:
        spec = cand.spec
        used = [0] + [1] * (spec.trend != "N") + [2] * (spec.season != "N") + [3] * spec.damped
        states_at = [4] + [5] * (spec.trend != "N") + list(range(6, 6 + spec.m - 1) if spec.season != "N" else [])
        self.x0[p, 3] = self.lower[p, 3] = self.upper[p, 3] = 1.0  # phi of an undamped model
        self.x0[p, used], self.lower[p, used], self.upper[p, used] = cand.start[used], LOWER[used], UPPER[used]
        self.x0[p, states_at], self.lower[p, states_at], self.upper[p, states_at] = states, -np.inf, np.inf

    def run(self, points: np.ndarray, problems: np.ndarray) -> np.ndarray:
        """(K,) -2 log L of points (K, D) of the ascending problems (K,); +inf where inadmissible."""
        values = np.empty(len(problems))
        for group in self.groups:
            lo, hi = np.searchsorted(problems, [group.start, group.end])
            for first in range(lo, hi, CHUNK):
                rows = slice(first, min(first + CHUNK, hi))
                result, lengths, err_from = self.filter(points[rows], problems[rows], group)
                values[rows] = np.where(self.admissible(points[rows], problems[rows], group),
                                        neg2_loglik(result, lengths, err_from), np.inf)
        return values

    def filter(self, points: np.ndarray, problems: np.ndarray, group: _Group, states: bool = False):
        """filter_batch over points of problems of one group: (result, lengths, err_from); the
        states after each row's end only when asked (the final fits, not the optimizer's calls)."""
        err_from, season_from = np.searchsorted(problems, [group.err_from, group.season_from])
        lengths = self.lengths[problems]
        return filter_batch(self._y(problems), self.params(points, season_from, group.m), season_from,
                            lengths, states), lengths, err_from

    @staticmethod
    def params(points: np.ndarray, season_from: int, m: int) -> EtsParams:
        """EtsParams of canonical rows, rows [season_from:] of multiplicative season."""
        free = points[:, 6:6 + m - 1]  # (K, m-1)
        total = np.where(np.arange(len(points)) >= season_from, float(m), 0.0)
        last = total - free.sum(axis=1)  # the seasonal terms sum to 0 (m when multiplicative)
        alpha, beta, gamma, phi, level, slope = np.ascontiguousarray(points[:, :6].T)
        return EtsParams(alpha, beta, gamma, phi, level, slope, np.concatenate([free, last[:, None]], axis=1))

    def admissible(self, points: np.ndarray, problems: np.ndarray, group: _Group) -> np.ndarray:
        """R's check.param for the usual bounds (the box is the optimizer's), and no negative
        initial seasonal term of a multiplicative season."""
        alpha, beta, gamma = points[:, 0], points[:, 1], points[:, 2]
        ok = (beta <= alpha) & (gamma <= 1 - alpha)
        mult = problems >= group.season_from
        if mult.any():
            free = points[mult, 6:6 + group.m - 1]
            ok[mult] &= (free >= 0).all(axis=1) & (group.m - free.sum(axis=1) >= 0)
        return ok

    def _y(self, problems: np.ndarray) -> np.ndarray:
        """(T, K) the series of the problems. Every call of the optimizer asks for its whole batch
        again (until it drops the stopped problems; a rare shrink asks for a few in between), so
        the last two sets asked for are kept."""
        for ids, y in self._cached:
            if len(ids) == len(problems) and np.array_equal(ids, problems):
                return y
        self._cached = [(problems.copy(), np.take(self.y, problems, axis=1)), self._cached[0]]
        return self._cached[0][1]


def _kind(spec: EtsSpec) -> int:
    """0 additive error, 1 multiplicative error, 2 multiplicative season (and error)."""
    return 2 if spec.season == "M" else int(spec.error == "M")


def _groups(keys: list[tuple[int, int]]) -> list[_Group]:
    """The runs of equal m in the sorted (m, kind) keys, with where each kind starts."""
    out = []
    for m in sorted({k[0] for k in keys}):
        rows = [p for p, k in enumerate(keys) if k[0] == m]
        starts = [next((p for p in rows if keys[p][1] >= kind), rows[-1] + 1) for kind in (1, 2)]
        out.append(_Group(m, rows[0], starts[0], starts[1], rows[-1] + 1))
    return out


def _n_free(spec: EtsSpec) -> int:
    """Optimized values: smoothing parameters and free initial states."""
    trend, season = spec.trend != "N", spec.season != "N"
    return 2 + 2 * trend + spec.damped + season * spec.m


def fit_candidates(series: list[np.ndarray], candidates: list[list[Candidate]]) -> list[list[EtsFit]]:
    """Fit every candidate of every series (one lock-step Nelder-Mead run for all); per series the
    fitted models in candidate order (a candidate with k >= n - 1 free values is left out)."""
    problems = _Problems(series, candidates)
    best = minimize(problems.run, problems.x0, problems.lower, problems.upper, MAX_ITER, TOL_STD).x
    fitted = [[] for _ in series]
    every = np.arange(len(problems.entries))
    for group in problems.groups:
        rows = every[group.start:group.end]
        result, lengths, err_from = problems.filter(best[rows], rows, group, states=True)
        liks = neg2_loglik(result, lengths, err_from)
        params = problems.params(best[rows], group.season_from - group.start, group.m)
        for j, p in enumerate(rows):
            i, rank, cand = problems.entries[p]
            fitted[i].append((rank, _make_fit(cand.spec, _row(params, j), (result, j, int(lengths[j])), float(liks[j]))))
    return [[fit for _, fit in sorted(pairs, key=lambda pair: pair[0])] for pairs in fitted]


def _row(params: EtsParams, j: int) -> EtsParams:
    return EtsParams(*(getattr(params, f)[j:j + 1].copy() for f in EtsParams.__dataclass_fields__))


def _make_fit(spec: EtsSpec, initial: EtsParams, filtered: tuple[FilterResult, int, int], lik: float) -> EtsFit:
    result, j, n = filtered
    if spec.season == "N":  # it ran as an additive-season model with zero terms
        initial.season = np.zeros((1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = result.diff[:n, j] / (result.yhat[:n, j] if spec.error == "M" else 1.0)
    n_params = _n_free(spec) + 1  # + sigma
    slack = n - n_params - 1
    aicc = lik + 2 * n_params + (2 * n_params * (n_params + 1) / slack if slack > 0 else np.inf)
    season = result.season[j].copy() if spec.season != "N" else np.zeros(1)
    return EtsFit(spec, float(initial.alpha[0]), float(initial.beta[0]), float(initial.gamma[0]),
                  float(initial.phi[0]), initial, float(result.level[j]), float(result.trend[j]), season, n,
                  float(np.sum(errors ** 2) / max(slack, 1)), neg2_loglik=lik, aicc=float(aicc), n_params=n_params)


def _fixed_level_fit(values: np.ndarray) -> EtsFit:
    """ETS(A,N,N) with alpha = 0.9999 from the first value: R's answer for a constant series, and
    ours for one too short for any candidate (n <= 3): about the naive forecast."""
    spec = EtsSpec("A", "N", "N")
    one = lambda v: np.array([float(v)])
    initial = EtsParams(one(0.9999), one(0), one(0), one(1), one(values[0]), one(0), np.zeros((1, 1)))
    result = filter_batch(values[:, None], initial, 1)
    n = len(values)
    sigma2 = float(np.sum(result.diff[:, 0] ** 2) / max(n - 1, 1))
    return EtsFit(spec, 0.9999, 0.0, 0.0, 1.0, initial, float(result.level[0]), 0.0, np.zeros(1), n,
                  sigma2, n_params=2)


def fit_auto_ets(series_list, period) -> list[EtsFit]:
    """The model of least AICc for each series (AutoETS), all series fitted together.

    series_list: 1-D arrays (lengths may differ; NaN gaps are interpolated first, as
    baselines._filled does); period: the season length m, one int for all or one per series (1:
    no season). A constant series gets R's ETS(A,N,N) with alpha 0.9999; a series of <= 3 values
    the same (no candidate has fewer than n - 1 free values)."""
    series = [_filled(s) for s in series_list]
    periods = periods_for(period, len(series))
    constant = [bool(np.all(v == v[0])) for v in series]
    candidates = [[] if flat else candidate_models(v, m) for v, m, flat in zip(series, periods, constant)]
    out = []
    for values, fits in zip(series, fit_candidates(series, candidates)):
        best = None
        for fit in fits:  # strict <: the earlier of equal AICc wins, as in R
            if np.isfinite(fit.aicc) and (best is None or fit.aicc < best.aicc):
                best = fit
        out.append(best if best is not None else _fixed_level_fit(values))
    return out


class Ets:
    """AutoETS as a baseline: ``forecast(history, horizon)`` fits the ETS model of least AICc to the
    history (NaN gaps interpolated) and forecasts. ``period=None`` estimates the season length from
    each history (baselines.estimate_period)."""

    name = "ets"

    def __init__(self, period: int | None = None):
        self.period = period

    def fit(self, history) -> EtsFit:
        values = _filled(history)
        period = self.period if self.period is not None else estimate_period(values)
        return fit_auto_ets([values], period)[0]

    def forecast(self, history, horizon) -> np.ndarray:
        horizon = _horizon(horizon)
        return self.fit(history).forecast(horizon)
