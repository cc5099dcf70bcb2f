"""Is one method better than another on the same windows? A paired bootstrap over evaluate.py reports.

    python -m timer1.tools.compare out/eval_sft.json:timer1-slow out/eval_grip.json:timer1-slow

Both reports must score the same windows (same protocol and ``--limit``); the windows are rebuilt
from the first report's config (``timer1.data.window_sets.evaluation_windows``) and each method's per-window
forecasts (the report's ``"forecasts"``) are scored again: MASE per window (``timer1.core.metrics.mase``;
an unparsed answer counts as the last observed value, as the ``*_fallback`` metrics), mean per
dataset, geometric mean over datasets. The change of B against A, ``gm(B) / gm(A) - 1``, gets a
paired bootstrap 95% interval (Efron & Tibshirani 1993, the percentile interval): windows are
redrawn with replacement within each dataset, the same draw for both methods, ``--resamples`` times.
An interval that excludes 0 says the difference is not an accident of which windows were drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from timer1.core.metrics import mase


def per_window_mase(report: dict, method: str) -> dict[str, np.ndarray]:
    """{dataset: (n,) MASE of ``method``'s forecast of each window} from a report with ``"forecasts"``."""
    from timer1.data.csv_io import read_csv
    from timer1.data.window_sets import evaluation_windows

    config, forecasts = report["config"], report.get("forecasts")
    if not forecasts:
        raise ValueError("the report has no per-window forecasts (made before evaluate.py wrote them)")
    out = {}
    for dataset, path in config["datasets"].items():
        if method not in forecasts.get(dataset, {}):
            raise ValueError(f"method {method!r} is not in the report for {dataset}")
        windows, _, _ = evaluation_windows(read_csv(path), dataset, config["protocol"], lookback=config["lookback"],
                                           horizon=config["horizon"], stride=config["stride"],
                                           limit=config["limit"] or 0)
        entries = forecasts[dataset][method]
        if len(entries) != len(windows):
            raise ValueError(f"{dataset}: {len(entries)} forecasts for {len(windows)} windows")
        points = [np.full(w.horizon, w.history[-1]) if e is None else np.asarray(e["point"]) for e, w in zip(entries, windows)]
        out[dataset] = np.array([mase(p, w.target, w.history) for p, w in zip(points, windows)])
    return out


def geometric_mean_mase(scores: dict[str, np.ndarray]) -> float:
    """Mean MASE per dataset (NaN windows, flat histories, left out), geometric mean over datasets."""
    return float(np.exp(np.mean([np.log(np.nanmean(s)) for s in scores.values()])))


def paired_bootstrap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(change, low, high): ``gm(b) / gm(a) - 1`` and its percentile 95% interval, windows redrawn with
    replacement within each dataset, the same indices for both."""
    if a.keys() != b.keys() or any(len(a[d]) != len(b[d]) for d in a):
        raise ValueError("the two methods were not scored on the same windows")
    rng = np.random.default_rng(seed)
    changes = np.empty(resamples)
    for r in range(resamples):
        draw = {d: rng.integers(0, len(a[d]), len(a[d])) for d in a}
        changes[r] = (geometric_mean_mase({d: b[d][i] for d, i in draw.items()})
                      / geometric_mean_mase({d: a[d][i] for d, i in draw.items()}) - 1)
    low, high = np.quantile(changes, [0.025, 0.975])
    return geometric_mean_mase(b) / geometric_mean_mase(a) - 1, float(low), float(high)


def _side(text: str) -> tuple[dict, str]:
    path, sep, method = text.rpartition(":")
    if not sep or not path:
        raise ValueError(f"give REPORT.json:METHOD, got {text!r}")
    try:
        return json.loads(Path(path).read_text()), method
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read report {path}: {err}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m timer1.tools.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", metavar="A.json:METHOD", help="the reference (e.g. the SFT model)")
    parser.add_argument("b", metavar="B.json:METHOD", help="the method compared with it")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        (report_a, method_a), (report_b, method_b) = _side(args.a), _side(args.b)
        a, b = per_window_mase(report_a, method_a), per_window_mase(report_b, method_b)
        change, low, high = paired_bootstrap(a, b, args.resamples)
    except (ValueError, KeyError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    for d in a:
        print(f"{d:10s} MASE {np.nanmean(a[d]):8.4g} -> {np.nanmean(b[d]):8.4g}  ({len(a[d])} windows)")
    print(f"geometric mean MASE {geometric_mean_mase(a):.4g} -> {geometric_mean_mase(b):.4g}: {change:+.1%} "
          f"(paired bootstrap 95% interval {low:+.1%} to {high:+.1%}{', excludes 0' if low > 0 or high < 0 else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
