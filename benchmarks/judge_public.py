"""The combinations and the judge on CSV files nobody trained or tuned on, the last H values held out.

    python benchmarks/judge_public.py DIR [DIR ...] [--judge runs/judge_grip] [--samples 1] [--reference FILE]

Each ``DIR/*.csv`` (a date column, one value column) loses its last H rows, H the default horizon
forecast.py picks (two cycles of the step). On the rest, every candidate is backtested
(timer1.core.backtest) and combined by the rule, the equal means of the best two and three (the
default before the learned softmax), the learned softmax of the errors (the product's default) and,
with ``--judge``, the judge;
each is scored against the held-out rows, and so is every candidate family alone (its forecast, its band
from its own backtest residuals). ``--reference`` adds rows made elsewhere on the same
held-out values (statsforecast's AutoETS and AutoARIMA with their 80% intervals, written by a scratch
venv as JSON: {"DIR/name": {"autoets": {"mean": [...], "lo": [...], "hi": [...]}, ...}}). Printed: per
method, the summary the issue's goals name (median MAE / seasonal naive's MAE, the share of series at
or below the better of seasonal naive and last value, the 10-90% band's pooled coverage and its width
over the MAE, from the candidates' backtest residuals, each with its weight: pooled (the mean width over the mean
absolute error, both in units of each history's mean one-step change), and the mean and median of the
series' own ratios), how often each family carries the learned softmax's largest weight, then one row
per series. Series from dataset packages are for this check only, never for training.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timer1.core.backtest import Problem  # noqa: E402
from timer1.core.baselines import LastValue, SeasonalNaive, period_for_step  # noqa: E402
from timer1.core.evidence import scale_of  # noqa: E402
from timer1.core.judge import COMBINATIONS, build_cases, combine  # noqa: E402
from timer1.core.window import interpolate_gaps  # noqa: E402
from timer1.data.csv_io import read_csv  # noqa: E402
from timer1.forecast.combination import combined_band  # noqa: E402
from timer1.forecast.resolve import default_horizon  # noqa: E402


def held_out(path: Path):
    """(history, held-out values, H, period, step name) of one CSV."""
    series = read_csv(path)
    horizon = default_horizon(series)
    values = np.asarray(series.column(series.channels[-1]), dtype=np.float64)
    history = interpolate_gaps(values[:-horizon])  # steps missing from the dates, filled as forecast.py does
    return history, values[-horizon:], horizon, period_for_step(series.step), series.step.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--reference", type=Path, default=None, help="JSON of other methods' forecasts (see above)")
    parser.add_argument("--judge", default=None, help="a judge checkpoint or training run")
    parser.add_argument("--samples", type=int, default=8, help="judgements averaged per series (1 = greedy)")
    args = parser.parse_args()
    found = [f for folder in args.folders for f in sorted(folder.glob("*.csv"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # calendars and gaps, said by forecast.py
        every = [held_out(f) for f in found]
    built = build_cases([Problem(h, H, m) for h, _, H, m, _ in every], [s for *_, s in every])
    short = [f.stem for f, c in zip(found, built) if c is None]
    if short:
        print(f"no backtest origin (the product reflects with the model instead; left out here): {', '.join(short)}")
    files = [f for f, c in zip(found, built) if c is not None]
    data = [d for d, c in zip(every, built) if c is not None]
    cases = [c for c in built if c is not None]
    weights = {name: [weigh(c.evidence) for c in cases] for name, weigh in COMBINATIONS.items()}
    for family in FAMILIES:  # each candidate alone, where the case has it
        weights[f"{family} alone"] = [alone(c.evidence.names, family) for c in cases]
    if args.judge:
        from timer1.forecast.combination import judge_series
        from timer1.forecast.resolve import open_policy, resolve_judge

        policy = open_policy(resolve_judge(args.judge), None, "cpu", None, None)
        judged = judge_series(policy, cases, samples=args.samples)
        weights["judge"] = [j.weights for j in judged]
        print(f"judge: {sum(j.read == 0 for j in judged)} of {len(cases)} series without a readable answer")
    reference = json.loads(args.reference.read_text()) if args.reference else {}
    rows = {}
    for (history, actual, horizon, period, _), case, name in zip(data, cases, files):
        naive = np.nanmean(np.abs(SeasonalNaive(period or 1).forecast(history, horizon) - actual))
        last = np.nanmean(np.abs(LastValue().forecast(history, horizon) - actual))
        scored = {}
        for method, ws in weights.items():
            w = ws[cases.index(case)]
            if w is None:
                continue
            point = combine(case.forecasts, w)
            band = combined_band(w, case.residuals, point)
            scored[method] = (point, *((np.quantile(band, 0.1, axis=0), np.quantile(band, 0.9, axis=0))
                                       if band is not None else (None, None)))
        for method, made in reference.get(f"{name.parent.name}/{name.stem}", {}).items():
            if "mean" in made:
                scored[method] = tuple(np.asarray(made[k], dtype=np.float64) for k in ("mean", "lo", "hi"))
        for method, (point, low, high) in scored.items():
            rows.setdefault(method, {})[name] = score(point, low, high, actual, (naive, last, scale_of(history)))
    print(f"\n{len(files)} series of {', '.join(map(str, args.folders))}\n")
    print("| method | median MAE / seasonal naive | at or below the better baseline | 10-90% coverage | "
          "width / MAE (pooled; mean, median of series) |")
    print("|---|---:|---:|---:|---:|")
    for method, by_series in rows.items():
        scored = list(by_series.values())
        inside = np.concatenate([r["inside"] for r in scored if r["inside"] is not None])
        widths = [r["width"] for r in scored if r["width"] is not None and np.isfinite(r["width"])]
        banded = [r for r in scored if r["inside"] is not None]
        pooled = sum(r["scaled_width"] for r in banded) / sum(r["scaled_error"] for r in banded)
        beats = sum(r["beats"] for r in scored)
        print(f"| {method} | {np.nanmedian([r['ratio'] for r in scored]):.3f} | {beats} of {len(scored)} "
              f"({beats / len(scored):.0%}) | {inside.mean():.1%} | {pooled:.2f}; {np.mean(widths):.2f}, "
              f"{np.median(widths):.2f} |")
    leading = [family_of(c.evidence.names[int(np.argmax(w))]) for c, w in zip(cases, weights["softmax"])]
    print("\nthe softmax's largest weight: " + ", ".join(f"{f} {leading.count(f)}" for f in FAMILIES if leading.count(f)))
    print("\n| series | " + " | ".join(rows) + " |\n|---|" + "---:|" * len(rows))
    for name in files:
        print(f"| {name.stem} | " + " | ".join(f"{rows[m][name]['ratio']:.3f}" if name in rows[m] else "-"
                                             for m in rows) + " |")


FAMILIES = ("seasonal naive", "last value", "drift", "theta", "linear", "ets", "arima", "stl + ar")


def family_of(name: str) -> str:
    """"seasonal naive (period 12)" -> "seasonal naive"; the other names are their family."""
    return name.split(" (")[0]


def alone(names: list[str], family: str) -> np.ndarray | None:
    """One-hot weights on the family's first candidate (None when the case has none)."""
    for k, name in enumerate(names):
        if family_of(name) == family:
            return np.eye(len(names))[k]
    return None


def score(point, low, high, actual, yardsticks: tuple[float, float, float]) -> dict:
    """One method on one series, yardsticks (seasonal naive's MAE, last value's MAE, the history's mean
    one-step change): MAE over seasonal naive's, whether it is at or below the better baseline, which
    held-out values its 10-90% band holds, its mean width over the MAE, and both in the history's units."""
    naive, last, scale = yardsticks
    err = float(np.nanmean(np.abs(point - actual)))
    known = np.isfinite(actual)
    width = None if low is None else float(np.mean(high - low))
    return {"ratio": err / naive if naive > 0 else np.nan, "beats": err <= min(naive, last),
            "inside": None if low is None else ((actual >= low) & (actual <= high))[known],
            "width": None if low is None else width / err if err > 0 else np.nan,
            "scaled_width": None if low is None else width / scale, "scaled_error": err / scale}


if __name__ == "__main__":
    main()
