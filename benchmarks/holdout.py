"""Forecast CSV files as a new user would, the last H values held out, and score them against the two
one-line baselines a forecaster checks first (seasonal naive at the dates' period, last value).

    python benchmarks/holdout.py DIR [--modes auto rule slow] [--threads 1]

Each ``DIR/*.csv`` (a date column, one value column, rows in time order) loses its last H rows, H the
default horizon forecast.py would pick (two cycles of the step: 104 weekly, 24 monthly, 8 quarterly, 10
yearly); ``python forecast.py`` then runs on the rest with default settings (``--mode`` as listed) and
its forecast is scored on the held-out rows. Printed as made: one row per series and mode, then the
summary the issue's goals name: the median of MAE / seasonal naive's MAE, the share of series at or
below the better baseline, the 10-90% band's pooled coverage and its width over the MAE (pooled: the
mean width over the mean absolute error, both in units of each history's mean one-step change; and the
mean and median of the series' own ratios), and the pooled coverage of the 50%, 90% and 95% bands
(forecast.py --quantiles asks for every level).
Series from dataset packages are for this check only, never for training.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timer1.core.baselines import SeasonalNaive  # noqa: E402
from timer1.core.baselines import period_for_step  # noqa: E402
from timer1.core.evidence import scale_of  # noqa: E402
from timer1.data.csv_io import read_csv  # noqa: E402
from timer1.forecast.calibrate import COVERAGES, edges  # noqa: E402
from timer1.forecast.resolve import default_horizon  # noqa: E402


def held_out(path: Path, tmp: Path) -> tuple[Path, np.ndarray, np.ndarray, int, int]:
    """(the file without its last H rows, its history, the held-out values, H, the period)."""
    series = read_csv(path)
    horizon = default_horizon(series)
    values = series.column(series.channels[-1])
    lines = path.read_text().splitlines()
    cut = tmp / path.name
    cut.write_text("\n".join(lines[:len(lines) - horizon]) + "\n")
    return cut, values[:-horizon], values[-horizon:], horizon, period_for_step(series.step) or 1


LEVELS = sorted({q for c in COVERAGES for q in edges(c)})   # every level a calibrated band ends at


def forecast(path: Path, mode: str, threads: int) -> tuple[np.ndarray, dict, list[str], float]:
    """(point, {level: quantile}, sources, seconds) of ``python forecast.py`` on ``path``."""
    out = path.with_suffix(f".{mode}.out.csv")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "forecast.py"), str(path), "--mode", mode, "--out", str(out),
                           "--threads", str(threads), "--quantiles", ",".join(f"{q:g}" for q in LEVELS)],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"forecast.py failed on {path.name}: {done.stderr.strip().splitlines()[-1]}")
    rows = list(csv.DictReader(out.open()))
    column = lambda key: np.array([float(r[key]) if r[key] else np.nan for r in rows])  # noqa: E731
    quantiles = {q: column(f"q{q:g}") for q in LEVELS}
    return column("forecast"), quantiles, [r["source"] for r in rows], time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--modes", nargs="+", default=["auto", "slow"], choices=["auto", "rule", "slow", "single"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("*.csv"))
    print("| series | H | period | mode | MAE | / seasonal naive | / last value | beats the better | "
          "coverage 10-90% | width / MAE | source | s |")
    print("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---|---:|")
    summary = {mode: {"ratio": [], "beats": [], "covered": [], "width": [], "scaled": [],
                      **{c: [] for c in COVERAGES}}
               for mode in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            cut, history, truth, horizon, period = held_out(path, Path(tmp))
            naive = np.abs(SeasonalNaive(min(period, len(history))).forecast(history, horizon) - truth).mean()
            last = np.abs(history[np.isfinite(history)][-1] - truth).mean()
            for mode in args.modes:
                point, quantiles, sources, seconds = forecast(cut, mode, args.threads)
                low, high = quantiles[0.1], quantiles[0.9]
                mae = float(np.abs(point - truth).mean())
                has_band = np.isfinite(low).all()
                covered = ((truth >= low) & (truth <= high)) if has_band else np.zeros(0, bool)
                width = float(np.mean(high - low) / mae) if has_band and mae > 0 else float("nan")
                s = summary[mode]
                s["ratio"].append(mae / naive)
                s["beats"].append(mae <= min(naive, last))
                s["covered"] += covered.tolist()
                s["width"].append(width)
                if has_band:  # width and error in the history's units, for the pooled ratio
                    unit = scale_of(history)
                    s["scaled"].append((float(np.mean(high - low)) / unit, mae / unit))
                for c in COVERAGES if has_band else ():
                    bottom, top = (quantiles[q] for q in edges(c))
                    s[c] += ((truth >= bottom) & (truth <= top)).tolist()
                print(f"| {path.stem} | {horizon} | {period} | {mode} | {mae:.4g} | {mae / naive:.3f} | {mae / last:.3f} | "
                      f"{'yes' if mae <= min(naive, last) else 'no'} | "
                      f"{covered.mean() if has_band else float('nan'):.2f} | {width:.2f} | {sources[0]} | {seconds:.1f} |",
                      flush=True)
    for mode, s in summary.items():
        print(f"\n{mode}: median MAE / seasonal naive {np.median(s['ratio']):.3f}; at or below the better baseline on "
              f"{sum(s['beats'])} of {len(s['beats'])}; 10-90% band covers {np.mean(s['covered']) if s['covered'] else float('nan'):.1%} "
              f"of held-out values (pooled), width {pooled(s['scaled']):.2f} x MAE pooled (mean of series "
              f"{np.nanmean(s['width']):.2f}, median {np.nanmedian(s['width']):.2f}); central bands cover "
              + ", ".join(f"{c:.0%}: {np.mean(s[c]) if s[c] else float('nan'):.1%}" for c in COVERAGES))
    return 0


def pooled(scaled: list[tuple[float, float]]) -> float:
    """The bands' mean width over the mean absolute error, both in units of each history's mean
    one-step change (timer1.core.evidence.scale_of), pooled over the series."""
    return sum(w for w, _ in scaled) / sum(e for _, e in scaled) if scaled else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
