"""Evaluate timer1 checkpoints and the baselines side by side, under the Time-R1 paper protocol.

    python evaluate.py                                          # 7 datasets, default model, all methods
    python evaluate.py --datasets ETTh1 nasdaq --limit 5 --out runs/eval.json
    python evaluate.py --no-model                               # baselines only (seconds)
    python evaluate.py --protocol rolling --stride 48 --datasets exchange
    python evaluate.py --csv my_series.csv --model /path/Qwen2.5-7B-Instruct --adapter runs/grip/adapter

Protocols (timer1.data.protocol): ``paper`` = the first 10 windows per channel of each test region, look-back
and horizon 96 (nasdaq 36), inputs of non-ETT sets rounded to 3 decimals, as the official eval code;
``rolling`` = every ``--stride``-th origin over the whole test region.

Methods: ``timer1`` (the plain model: one greedy answer per window), ``timer1-slow`` (slow thinking,
timer1.core.slow_think: ``--samples`` drafts, critic, median), ``timer1-default`` (what forecast.py does:
the statistical candidates backtested on the dataset's rows before each window's origin and the best
three averaged, timer1.forecast.combination), ``timer1-rule`` (the default before round 4, on request:
slow thinking, then reflection chooses between it and the candidate of least backtest error,
timer1.forecast.reflect), and every baseline of timer1.core.baselines
(``last``, ``mean``, ``seasonal_naive``, ``drift``, ``linear``), all on the same windows.

Metrics per window on the raw scale, then the mean over windows (NaN-safe: a window whose metric is
undefined, e.g. MASE on a flat history, is left out of that mean):
MSE, MAE; MASE = MAE / mean |h_t - h_{t-1}| over the window's look-back (``timer1.core.metrics.mase``);
CRPS from the kept slow-thinking drafts (for point forecasts CRPS = MAE).

Unparsed answers are reported both ways: ``mse``/``mae``/``mase``/``crps`` drop them (as the official
code does: ``n`` windows scored of ``n_windows``), ``*_fallback`` replace them by the last observed
value (a short answer is extended with its own last value). For ``timer1`` an answer counts as
unparsed when it states no number (``no_number``) or fewer values than the horizon (``short``); for
``timer1-slow`` when no draft passed the critic (``fallback``; ``drafts_kept`` of ``drafts_total``).

The JSON report (``--out``, written atomically) is
``{"results": {dataset: {method: {"mse", "mae", "mase", "crps", "n", "unparsed", ...}}}, "forecasts": {dataset:
{method: [{"point", "q0.1", "q0.9"} or null, ...]}}, "config": ...}``: ``forecasts`` lists each window's forecast
in protocol order (null when unparsed; a short answer filled as ``*_fallback`` fills it, with ``"short": true``;
q0.1/q0.9 null without a band). ``--plot report.svg`` draws MASE and MSE
of every method per dataset (the default highlighted; with several datasets their geometric-mean MASE
first), with Time-R1's published MSE beside them (timer1.tools.plot).
The model methods run through timer1.forecast.forecaster (the loop forecast.py and the service use), window i
seeded ``--seed + 1000 i``, so ``--batch`` changes the speed, not the forecasts.
Bad input gives one line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

if __name__ == "__main__":  # before numpy loads: the small linear-baseline solves run far faster on one
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # BLAS thread on a busy machine; torch's own
    # threads are left alone (--threads)

import numpy as np

from forecast import is_first_rank, log, parse_with_preset, run_reporting_errors, sharing
from timer1.forecast.combination import tally_key
from timer1.forecast.forecaster import Forecaster, WindowHints
from timer1.forecast.resolve import add_model_arguments, resolve_model

# single pass after a reasoning the model did not write: none, or the next window's own (does it use it?);
# run only when asked for with --methods
THINK_ABLATIONS = ("timer1-nothink", "timer1-shuffled")
MODEL_METHODS = ("timer1", "timer1-slow", "timer1-default", "timer1-rule", *THINK_ABLATIONS)
SLOW_METHODS = ("timer1-slow", "timer1-default", "timer1-rule")   # answers with a band
CHOOSING_METHODS = ("timer1-default", "timer1-rule")   # answers chosen on each window's whole history
FITTED_METHODS = ("ets", "arima", "stl_ar")   # statistical methods fitted per window, a dataset's windows in one batch
# combinations of the backtested candidates on each window's whole history (timer1.core.judge.COMBINATIONS):
# the rule (the candidate of least backtest error), the equal means of the best two and three, the learned
# softmax of the errors, and the judge model's weights (--judge; run only when asked for with --methods)
COMBINATION_METHODS = ("rule", "top2", "top3", "softmax", "judge")
PAPER_DATASETS = ("ETTh1", "ETTh2", "exchange", "aqwan", "aqshunyi", "wind", "nasdaq")
# Time-R1's published MSE (paper Table 2, Qwen2.5-7B), drawn beside our methods by --plot
PAPER_TIME_R1_MSE = {"ETTh1": 5.875, "ETTh2": 8.709, "exchange": 0.0007, "aqwan": 13033.0, "aqshunyi": 16151.0,
                     "wind": 1354.0, "nasdaq": 0.0007}


def build_parser() -> argparse.ArgumentParser:
    from timer1.core.baselines import BASELINES

    parser = argparse.ArgumentParser(
        prog="python evaluate.py",
        allow_abbrev=False,
        description="MSE, MAE, MASE and CRPS of timer1 (single pass and slow thinking) and the baselines "
                    "on the Time-R1 evaluation windows; a printed table and an optional JSON report.")
    parser.add_argument("--config", default=None, metavar="PRESET.toml",
                        help="a TOML preset of these options (keys like datasets = [\"ETTh1\"], samples = 16); "
                             "options given on the command line win")
    parser.add_argument("--protocol", choices=("paper", "rolling"), default="paper",
                        help="paper: first 10 windows per channel (default); rolling: every --stride-th origin")
    parser.add_argument("--stride", type=int, default=None, help="rolling origin step (default: the horizon)")
    parser.add_argument("--lookback", type=int, default=None, help="rolling only: look-back (default: the paper's)")
    parser.add_argument("--horizon", type=int, default=None, help="rolling only: horizon (default: the paper's)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="directory of <dataset>.csv files (default ../shared/data)")
    parser.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                        help=f"datasets to run (default: {' '.join(PAPER_DATASETS)})")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="evaluate one CSV file instead (its test region: the last 20%% of rows)")
    add_model_arguments(parser)
    parser.add_argument("--no-model", action="store_true", help="baselines only")
    parser.add_argument("--judge-samples", type=int, default=8,
                        help="judge method: judgements per window, their weights averaged (default 8, as the "
                             "default mode; 1: one greedy answer)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help=f"methods to run (default: {' '.join(MODEL_METHODS[:3] + tuple(BASELINES) + FITTED_METHODS)}; "
                             f"also timer1-rule (the default before round 4), the think ablations "
                             f"{' '.join(THINK_ABLATIONS)} and the combinations "
                             f"{' '.join(COMBINATION_METHODS)})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N windows per dataset, spread evenly over its channels and windows")
    parser.add_argument("--samples", type=int, default=8, help="slow thinking: drafts per round (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="slow thinking: draft rounds at most (default 2)")
    parser.add_argument("--refine", choices=("resample", "critique"), default="resample",
                        help="slow thinking: retry failed rounds with fresh samples or with the critique")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--temperature", type=float, default=0.7, help="slow thinking temperature (default 0.7)")
    parser.add_argument("--backtest", action=argparse.BooleanOptionalAction, default=True,
                        help="slow thinking: answer each window the way (drafts' median or greedy draft) that "
                             "forecast its history's last part better (default on)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per answer (default: from the prompt style and horizon)")
    parser.add_argument("--batch", type=int, default=1,
                        help="windows per generate call (default 1; each window has its own seed, so the "
                             "forecasts do not depend on it)")
    parser.add_argument("--out", type=Path, default=None, metavar="report.json", help="write the JSON report here")
    parser.add_argument("--plot", type=Path, default=None, metavar="report.svg",
                        help="draw MSE and MASE of every method per dataset (and Time-R1's published MSE) as an SVG")
    return parser


# ----------------------------------------------------------------------------------------------
# Windows


def dataset_sources(args) -> list[tuple[str, Path]]:
    """(dataset name, CSV path) pairs to evaluate, each checked to exist."""
    if args.csv is not None:
        if args.datasets:
            raise ValueError("pass either --csv FILE or --datasets, not both")
        if not args.csv.is_file():
            raise FileNotFoundError(f"no such CSV file: {args.csv}")
        return [(args.csv.stem, args.csv)]
    if not args.data.is_dir():
        raise FileNotFoundError(f"data directory not found: {args.data}")
    sources = []
    for name in args.datasets or PAPER_DATASETS:
        path = args.data / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        sources.append((name, path))
    return sources


def load_windows(series, dataset: str, args) -> tuple[list, int, int]:
    """The evaluation windows of one dataset (``timer1.data.window_sets.evaluation_windows``; warnings about skipped
    windows go to stderr)."""
    from timer1.data.window_sets import evaluation_windows

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        windows, lookback, horizon = evaluation_windows(series, dataset, args.protocol, lookback=args.lookback,
                                                        horizon=args.horizon, stride=args.stride, limit=args.limit)
    for warning in caught:
        log(f"warning: {warning.message}")
    if not windows:
        raise ValueError(f"{dataset}: no complete evaluation window (look-back {lookback}, horizon {horizon}, "
                         f"{len(series)} rows)")
    return windows, lookback, horizon


# ----------------------------------------------------------------------------------------------
# Forecasters


def baseline_forecasts(series, dataset: str, windows, names, lookback: int, horizon: int,
                       judge: JudgeModel | None = None) -> dict:
    """{baseline: [(H,) forecast or None per window]}, the baselines' protocol:
    linear fit per channel on the train region, seasonal naive with the step's daily period."""
    from timer1.core.baselines import Linear, make_baseline, period_from_step
    from timer1.data.protocol import split_bounds

    period = period_from_step(series.step.seconds if series.step.kind != "index" else None)
    train_end, _ = split_bounds(series, dataset)
    linear: dict[str, object] = {}
    out = {name: [] for name in names}
    for name in [n for n in names if n in FITTED_METHODS]:
        out[name] = fitted_forecasts(name, windows, period if period and period <= lookback else None, horizon)
    asked = [n for n in names if n in COMBINATION_METHODS]
    if asked:
        out.update(combination_forecasts(series, windows, asked, judge))
    for window in windows:
        for name in [n for n in names if n not in FITTED_METHODS + COMBINATION_METHODS]:
            if name == "linear":
                if window.channel not in linear:
                    try:
                        linear[window.channel] = Linear().fit(series.column(window.channel)[:train_end],
                                                              lookback, horizon)
                    except ValueError as err:
                        log(f"warning: {dataset}/{window.channel}: linear baseline not fitted ({err})")
                        linear[window.channel] = None
                model = linear[window.channel]
            elif name == "seasonal_naive":
                model = make_baseline(name, period=period if period and period <= lookback else None)
            else:
                model = make_baseline(name)
            out[name].append(None if model is None else model.forecast(window.history, window.horizon))
    return out


def fitted_forecasts(name: str, windows, period: int | None, horizon: int) -> list:
    """A fitted statistical method on each window's look-back, every window of the dataset fitted in one
    batch: ``ets`` AutoETS (timer1.core.ets_fit: the ETS model of least AICc, Hyndman et al. 2008),
    ``arima`` AutoARIMA (timer1.core.arima_fit: Hyndman & Khandakar's stepwise search), ``stl_ar`` an
    AR on the STL-adjusted series (timer1.core.stl_ar, R's stlm with ar, as FFORMA fields it). The
    season is the step's daily cycle, else each look-back's own (baselines.estimate_period), as seasonal
    naive's."""
    from timer1.core.arima_fit import fit_auto_arima
    from timer1.core.baselines import estimate_period
    from timer1.core.ets_fit import fit_auto_ets
    from timer1.core.stl_ar import fit_stl_ar

    fit = {"ets": fit_auto_ets, "arima": fit_auto_arima, "stl_ar": fit_stl_ar}[name]
    periods = [period or estimate_period(w.history) for w in windows]
    return [model.forecast(horizon) for model in fit([w.history for w in windows], periods)]


class JudgeModel(NamedTuple):
    """The judge method's model (loaded once by run()) and its judgements per window."""

    policy: object
    samples: int


def combination_forecasts(series, windows, names, judge: JudgeModel | None) -> dict:
    """{method: [(H,) forecast per window]} of the combinations (COMBINATION_METHODS): every window's
    candidates backtested on its whole history (all windows of the dataset in one batch), then
    weighted by the rule, the equal mean of the best two or three (the default before the learned
    softmax), the learned softmax of their errors (timer1.core.combine; timer1-default's point) or the
    judge."""
    from timer1.core.backtest import Problem
    from timer1.core.baselines import period_for_step
    from timer1.core.judge import COMBINATIONS, build_cases, combine
    from timer1.forecast.combination import judge_series

    full = [whole_window(series, w) for w in windows]
    period = period_for_step(series.step)
    cases = build_cases([Problem(f.history, f.horizon, period) for f in full], [series.step.name] * len(full))
    out = {}
    for name in names:
        if name == "judge":
            live = [c for c in cases if c is not None]
            judged = iter(judge_series(judge.policy, live, samples=judge.samples))
            out[name] = [None if c is None else next(judged).point for c in cases]
        else:
            out[name] = [None if c is None else combine(c.forecasts, COMBINATIONS[name](c.evidence)) for c in cases]
    return out


def whole_window(series, window):
    """``window`` with every row of its channel before its origin as history (never one after it),
    made as the protocol makes its windows: reflection's history under the paper protocol."""
    from timer1.data.protocol import make_window, protocol_for

    return make_window(series, window.channel, 0, window.start + window.lookback, window.horizon,
                       protocol_for(window.dataset).round_inputs, window.dataset)


def model_forecasts(forecaster: Forecaster, windows, method: str, args, period, series) -> list[dict]:
    """Per window: {"pred": (H,) or None (unparsed), "filled": (H,), "samples": (K, H), "status", "kept",
    "drafts", "band"}, from timer1.forecast.forecaster's loop (window i seeded ``seed + 1000 i``)."""
    from timer1.core.sft_data import extract_reasoning

    from timer1.util.progress import ProgressLine

    line = ProgressLine(f"  [{series.name}] {method}", len(windows), "windows")

    seeds = [args.seed + 1000 * i for i in range(len(windows))]
    thoughts = None
    if method == "timer1-nothink":
        thoughts = [""] * len(windows)
    elif method == "timer1-shuffled":  # window i reads window i+1's own reasoning
        own = forecaster.forecast_windows(windows, mode="single", hints=WindowHints(seeds, period)).results
        thoughts = [extract_reasoning(r.drafts[0].text) for r in own[1:] + own[:1]]
    modes = {"timer1-slow": "slow", "timer1-default": "auto", "timer1-rule": "rule"}
    full = [whole_window(series, w) for w in windows] if method in CHOOSING_METHODS else None
    forecast = forecaster.forecast_windows(windows, mode=modes.get(method, "single"),
                                           progress=lambda done, _: line.update(done),
                                           hints=WindowHints(seeds, period, thoughts=thoughts, full=full))
    line.close()
    return [_model_outcome(method, window, result) for window, result in zip(windows, forecast.results)]


def _model_outcome(method: str, window, result) -> dict:
    """What one window's answer gives: the strict forecast (None when unparsed), the last-value
    filled forecast, the samples CRPS is computed from, and the parse status."""
    from timer1.core.codec import complete_forecast

    if method not in SLOW_METHODS:
        draft = result.drafts[0]
        if draft.values is None:
            status = "unparsed"
        elif len(draft.values) < window.horizon:
            status = "short"
        else:
            status = "ok"
        filled, _ = complete_forecast(draft.values, window)
        pred = filled if status == "ok" else None
        samples = filled[None, :]
    else:
        status = "unparsed" if result.used_fallback else "ok"
        pred = None if result.used_fallback else result.point
        filled = result.point if pred is not None else complete_forecast(None, window)[0]
        samples = result.samples if pred is not None else filled[None, :]
    return {"pred": pred, "filled": filled, "samples": samples, "status": status,
            "kept": result.kept, "drafts": result.kept + result.dropped,
            "band": method in SLOW_METHODS and pred is not None and len(result.samples) >= 2,
            "source": result.source}


# ----------------------------------------------------------------------------------------------
# Metrics


def window_metrics(pred: np.ndarray, target: np.ndarray, history: np.ndarray,
                   samples: np.ndarray | None = None) -> dict[str, float]:
    """MSE, MAE, MASE (``timer1.core.metrics.mase``; NaN when undefined), CRPS (samples, else = MAE) of one
    window, and the share of its target inside the samples' 10-90% band (NaN without a band)."""
    from timer1.core.metrics import crps, mae, mase, mse

    try:
        scaled = mase(pred, target, history)
    except ValueError:
        scaled = float("nan")
    error = mae(pred, target)
    banded = samples is not None and len(samples) > 1
    coverage = float("nan")
    if banded:
        low, high = np.quantile(samples, 0.1, axis=0), np.quantile(samples, 0.9, axis=0)  # (H,) each
        coverage = float(np.mean((target >= low) & (target <= high)))
    return {"mse": mse(pred, target), "mae": error, "mase": scaled,
            "crps": crps(samples, target) if banded else error, "coverage": coverage}


def forecast_entry(pred: np.ndarray | None, samples: np.ndarray | None = None, short: bool = False) -> dict | None:
    """One window of the report's ``forecasts``: the point forecast and the 10-90% band of the kept
    drafts (null without a band: a point method, a single pass, fewer than two drafts), or null when
    the method gave no forecast (unparsed, not fitted). A ``short`` answer is stored as the
    ``*_fallback`` metrics score it, extended with its own last value, and flagged, so the strict
    metrics (which drop it) and the filled ones can both be recomputed from the report."""
    if pred is None:
        return None
    low, high = (None, None) if samples is None else (np.quantile(samples, q, axis=0).tolist() for q in (0.1, 0.9))
    entry = {"point": np.asarray(pred, dtype=np.float64).tolist(), "q0.1": low, "q0.9": high}
    return {**entry, "short": True} if short else entry


def mean_finite(values) -> float | None:
    """Mean over finite entries; None (JSON null) when there is none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarise(strict: list[dict], filled: list[dict], n_windows: int, counts: dict, seconds: float) -> dict:
    """The report entry of one method on one dataset."""
    entry = {key: mean_finite([s[key] for s in strict]) for key in ("mse", "mae", "mase", "crps", "coverage")}
    entry.update({"n": len(strict), "unparsed": n_windows - len(strict)})
    entry.update({f"{key}_fallback": mean_finite([s[key] for s in filled]) for key in ("mse", "mae", "mase", "crps")})
    entry.update({"n_windows": n_windows, **counts, "seconds_per_window": seconds / max(n_windows, 1)})
    return entry


def evaluate_dataset(dataset: str, path: Path, methods: list[str], forecaster: Forecaster | None,
                     args, judge: JudgeModel | None = None) -> tuple[dict, dict]:
    """(results, forecasts) of one dataset: {method: report entry} and {method: [forecast_entry per window]}."""
    from forecast import read_series
    from timer1.core.baselines import period_for_step

    series = read_series(path)
    windows, lookback, horizon = load_windows(series, dataset, args)
    period = period_for_step(series.step)
    log(f"{dataset}: {len(windows)} windows, look-back {lookback}, horizon {horizon}")
    results, forecasts = {}, {}
    baselines = [m for m in methods if m not in MODEL_METHODS]
    t0 = time.perf_counter()
    predictions = baseline_forecasts(series, dataset, windows, baselines, lookback, horizon, judge)
    per_baseline = (time.perf_counter() - t0) / max(len(baselines), 1)
    for name in baselines:
        scores = [window_metrics(p, w.target, w.history) for p, w in zip(predictions[name], windows) if p is not None]
        results[name] = summarise(scores, scores, len(windows), {}, per_baseline)
        forecasts[name] = [forecast_entry(p) for p in predictions[name]]
    for method in [m for m in methods if m in MODEL_METHODS]:
        t0 = time.perf_counter()
        outcomes = model_forecasts(forecaster, windows, method, args, period, series)
        seconds = time.perf_counter() - t0
        strict = [window_metrics(o["pred"], w.target, w.history, o["samples"])
                  for o, w in zip(outcomes, windows) if o["pred"] is not None]
        filled = [window_metrics(o["filled"], w.target, w.history, o["samples"]) for o, w in zip(outcomes, windows)]
        if method not in SLOW_METHODS:  # a single pass: why the unparsed windows were unparsed
            counts = {"no_number": sum(o["status"] == "unparsed" for o in outcomes),
                      "short": sum(o["status"] == "short" for o in outcomes)}
        elif method in CHOOSING_METHODS:  # every window answered: how often each candidate was chosen
            counts = {"chosen": dict(sorted(Counter(tally_key(o["source"]) for o in outcomes).items()))}
        else:
            counts = {"fallback": sum(o["status"] == "unparsed" for o in outcomes),
                      "drafts_kept": sum(o["kept"] for o in outcomes)}
            counts["drafts_total"] = sum(o["drafts"] for o in outcomes)
        results[method] = summarise(strict, filled, len(windows), counts, seconds)
        forecasts[method] = [forecast_entry(o["filled"], short=True) if o["status"] == "short"
                             else forecast_entry(o["pred"], o["samples"] if o["band"] else None) for o in outcomes]
    return results, forecasts


# ----------------------------------------------------------------------------------------------
# Report


def _cell(value) -> str:
    return "nan" if value is None else f"{value:.4g}"


def format_table(results: dict) -> str:
    """Markdown: one row per (dataset, method)."""
    lines = ["| dataset | method | n | unparsed | MSE | MAE | MASE | CRPS | 10-90% coverage | MSE (last-value fill) "
             "| MASE (last-value fill) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for dataset, methods in results.items():
        for method, r in methods.items():
            lines.append(f"| {dataset} | {method} | {r['n']} | {r['unparsed']} | {_cell(r['mse'])} | "
                         f"{_cell(r['mae'])} | {_cell(r['mase'])} | {_cell(r['crps'])} | {_cell(r['coverage'])} | "
                         f"{_cell(r['mse_fallback'])} | {_cell(r['mase_fallback'])} |")
    return "\n".join(lines)


def comparison_panels(results: dict) -> list:
    """timer1.tools.plot bar panels, the default (``timer1-default``) highlighted: with several datasets
    first each method's geometric-mean MASE over them, then per dataset every method's MASE, then its
    MSE (with Time-R1's published MSE where the paper has the dataset)."""
    from timer1.tools.plot import Bars

    highlight = "timer1-default"
    panels = []
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    if len(results) > 1:
        logs = {m: [np.log(r[m]["mase"]) for r in results.values() if m in r and r[m]["mase"] and r[m]["mase"] > 0]
                for m in methods}
        means = {m: float(np.exp(np.mean(v))) if len(v) == len(results) else None for m, v in logs.items()}
        panels.append(Bars(f"all {len(results)} datasets: geometric-mean MASE", "MASE (lower is better)",
                           means, highlight))
    for dataset, scores in results.items():
        panels.append(Bars(f"{dataset}: MASE", "MASE (lower is better)",
                           {m: r["mase"] for m, r in scores.items()}, highlight))
        mse = {m: r["mse"] for m, r in scores.items()}
        if dataset in PAPER_TIME_R1_MSE:
            mse["Time-R1 (paper)"] = PAPER_TIME_R1_MSE[dataset]
        panels.append(Bars(f"{dataset}: MSE", "MSE (lower is better)", mse, highlight))
    return panels


def choose_methods(args) -> list[str]:
    from timer1.core.baselines import BASELINES

    known = MODEL_METHODS + tuple(BASELINES) + FITTED_METHODS + COMBINATION_METHODS
    on_request = ("timer1-rule", *THINK_ABLATIONS, *COMBINATION_METHODS)   # the model's drafts, or a judge
    methods = list(args.methods or [m for m in known if m not in on_request])
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(known)}")
    if args.no_model:
        methods = [m for m in methods if m not in MODEL_METHODS]
    if not methods:
        raise ValueError("no method left to run (--no-model removed the timer1 methods)")
    return methods


def check_args(args) -> None:
    if args.protocol == "paper" and (args.lookback or args.horizon or args.stride):
        raise ValueError("--lookback/--horizon/--stride apply to --protocol rolling; the paper protocol fixes "
                         "them (96/96, nasdaq 36/36, stride = look-back, nasdaq 1)")
    for name in ("samples", "rounds", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("limit", "stride", "lookback", "horizon", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.out is not None and not args.out.parent.resolve().is_dir():
        raise FileNotFoundError(f"output directory does not exist: {args.out.parent}")
    if args.plot is not None:
        from timer1.util.atomic import check_writable

        if args.plot.suffix.lower() != ".svg":
            raise ValueError(f"--plot {args.plot}: the plot is an SVG; give a path ending in .svg")
        target = check_writable(args.plot)  # now, not after an hour of evaluation
        if args.out is not None and target == args.out.resolve():
            raise ValueError(f"--plot {args.plot} is --out {args.out}; give them different paths")


def run(args) -> int:
    check_args(args)
    methods = choose_methods(args)
    sources = dataset_sources(args)
    forecaster, model_dir = None, None
    if any(m in MODEL_METHODS for m in methods):
        from timer1.core.slow_think import SlowThinkConfig

        model_dir, adapter_dir = resolve_model(args.model, args.adapter)
        config = SlowThinkConfig(samples=args.samples, rounds=args.rounds, refine=args.refine,
                                 temperature=args.temperature, backtest=args.backtest, seed=args.seed)
        t0 = time.perf_counter()
        forecaster = Forecaster.from_pretrained(model_dir, adapter_dir, args.device, args.dtype, threads=args.threads,
                                                judge=args.judge,
                                                config=config, max_new_tokens=args.max_new_tokens, batch=args.batch)
        log(f"loaded {forecaster.name} ({forecaster.policy.prompt_format.style} prompts) "
            f"on {forecaster.device} in {time.perf_counter() - t0:.1f} s" + sharing())
    judge = None
    if "judge" in methods:
        from timer1.forecast.resolve import open_policy, resolve_judge

        judge_dir = resolve_judge(args.judge)
        if judge_dir is None:
            raise ValueError("the judge method needs a judge: pass --judge DIR (a judge checkpoint or training run)")
        judge = JudgeModel(open_policy(judge_dir, None, "cpu", None, args.threads), args.judge_samples)
    started = time.perf_counter()
    results, forecasts = {}, {}
    for dataset, path in sources:
        results[dataset], forecasts[dataset] = evaluate_dataset(dataset, path, methods, forecaster, args, judge)
    log(f"done in {time.perf_counter() - started:.1f} s")
    if not is_first_rank():   # under torchrun every rank scored every window (sharded, gathered); rank 0 reports
        return 0
    print(format_table(results))
    if args.out is not None:
        from timer1.util.atomic import write_json_atomic

        policy = None if forecaster is None else forecaster.policy
        report = {"results": results, "forecasts": forecasts,
                  "config": report_config(args, methods, sources, model_dir, policy)}
        write_json_atomic(args.out, report)
        log(f"wrote {args.out}")
    if args.plot is not None:
        from timer1.tools.plot import render_charts
        from timer1.util.atomic import write_text_atomic

        write_text_atomic(args.plot, render_charts(comparison_panels(results), title="timer1 evaluation: MASE and MSE by dataset"))
        log(f"wrote {args.plot}")
    return 0


def report_config(args, methods, sources, model_dir, policy) -> dict:
    torch = sys.modules.get("torch")  # loaded only when a model ran
    return {
        "protocol": args.protocol, "stride": args.stride, "lookback": args.lookback, "horizon": args.horizon,
        "datasets": {name: str(path) for name, path in sources}, "methods": methods, "limit": args.limit,
        "model": None if model_dir is None else str(model_dir), "adapter": args.adapter,
        "prompt_format": None if policy is None else dataclasses.asdict(policy.prompt_format),
        "device": None if policy is None else str(policy.device),
        "samples": args.samples, "rounds": args.rounds, "refine": args.refine, "seed": args.seed,
        "temperature": args.temperature, "backtest": args.backtest, "max_new_tokens": args.max_new_tokens, "batch": args.batch, "threads": args.threads,
        "torch": None if torch is None else torch.__version__,
        "unparsed_rule": "metrics drop unparsed windows; *_fallback replace them by the last observed value",
    }


def main(argv=None) -> int:
    return run_reporting_errors(run, parse_with_preset(build_parser(), argv))


if __name__ == "__main__":
    sys.exit(main())
