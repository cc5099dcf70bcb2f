"""How the default forecast's combination and band were chosen: on training cases, checked on validation
cases, never on test windows or public series.

    python benchmarks/default_combination.py [--data ../shared/data] [--cache runs/combination_cases]

The cases are the judge's (timer1.train.judge_data: origins in the seven datasets' train or validation
regions with every earlier value as history, and varied synthetic series), fewer of them, kept with
every candidate's backtest residuals, which the band is made of (built once into ``--cache``, ~15 min).

Printed: the coefficients of the learned softmax (timer1.core.combine.fit_softmax on the training
cases), then the geometric mean over the case groups (the datasets' steps and the synthetic ones) of
the mean MASE of the rule (least backtest error, over the widened pool and over the old five), of the
equal mean of the best k for k = 1..5 and of the learned softmax, on the training cases then the
validation cases; the per-level scales that make the chosen combination's split-conformal band cover
its nominal share of training outcomes (timer1.forecast.calibrate's arithmetic), and the validation
coverage of the 10-90% band before and after them. The constants the product uses
(combine.SOFTMAX_COEF, combination.COMBINATION_BAND) are these choices.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timer1.core.combine import SOFTMAX_COEF, fit_softmax, softmax_weights, top_mean_weights  # noqa: E402
from timer1.core.evidence import scale_of  # noqa: E402
from timer1.core.judge import build_cases, combine, rule_weights  # noqa: E402
from timer1.forecast.band import BandCalibration  # noqa: E402
from timer1.forecast.calibrate import band_scale  # noqa: E402
from timer1.forecast.combination import COMBINATION_BAND, combined_band  # noqa: E402
from timer1.train.judge_data import VAL_SEED_OFFSET, dataset_problems, synthetic_problems  # noqa: E402

from judge_ablation import group_mase, outcomes  # noqa: E402  (benchmarks/, beside this script)

COVERAGES = (0.5, 0.8, 0.9, 0.95)
OLD_FIVE = ("ets", "arima", "stl + ar")   # the candidates the old pool lacked


def cached_cases(cache: Path, data: Path, region: str, per_dataset: int, synthetic: int) -> list:
    """(case, history scale) pairs of one region, built once and kept in ``cache``."""
    path = cache / f"{region}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    seed = VAL_SEED_OFFSET if region == "val" else 0
    problems = dataset_problems(data, region, per_dataset) + synthetic_problems(synthetic, seed)
    out = []
    for start in range(0, len(problems), 50):
        chunk = problems[start:start + 50]
        cases = build_cases([p for p, _, _ in chunk], [s for _, s, _ in chunk], [y for _, _, y in chunk])
        out += [(c, scale_of(p.history)) for (p, _, _), c in zip(chunk, cases) if c is not None]
        print(f"  {region}: {start + len(chunk)}/{len(problems)} backtested", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def old_five_rule(case) -> np.ndarray:
    """The rule over the candidates the pool had before ETS and STL + AR joined it."""
    errors = case.evidence.errors[:, 0].copy()
    errors[[n in OLD_FIVE for n in case.evidence.names]] = np.inf
    weights = np.zeros(len(errors))
    weights[int(np.argmin(errors))] = 1.0
    return weights


def methods(coef: np.ndarray) -> dict:
    out = {"rule": lambda c: rule_weights(c.evidence), "rule (old five)": old_five_rule}
    for k in range(1, 6):
        out[f"best {k}"] = lambda c, k=k: top_mean_weights(c.evidence.errors, k)
    out["softmax (learned)"] = lambda c: softmax_weights(c.evidence.errors, coef)
    return out


def bands(cases: list, weigh, calibration: BandCalibration = BandCalibration()) -> list:
    """(point, band samples (L, H), target) of the combination ``weigh(case)`` per case, widened by
    ``calibration``."""
    out = []
    for case, _ in cases:
        weights = weigh(case)
        point = combine(case.forecasts, weights)
        samples = combined_band(weights, case.residuals, point, calibration)
        if samples is not None:
            out.append((point, samples, case.target))
    return out


def coverage(made: list, level: float) -> float:
    inside = [np.mean((y >= np.quantile(s, (1 - level) / 2, axis=0)) & (y <= np.quantile(s, (1 + level) / 2, axis=0)))
              for _, s, y in made]
    return float(np.mean(inside))


def fitted_band(made: list) -> BandCalibration:
    """Per coverage, the factor that makes the band cover that share of the training outcomes."""
    scales = []
    for level in COVERAGES:
        lows = [np.quantile(s, (1 - level) / 2, axis=0) for _, s, _ in made]
        highs = [np.quantile(s, (1 + level) / 2, axis=0) for _, s, _ in made]
        scales.append(round(band_scale([p for p, _, _ in made], lows, highs, [y for _, _, y in made], level), 3))
    return BandCalibration(COVERAGES, tuple(scales))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "combination_cases")
    parser.add_argument("--per-dataset", type=int, default=60, help="training origins per dataset")
    parser.add_argument("--synthetic", type=int, default=500, help="synthetic training series")
    args = parser.parse_args()
    train = cached_cases(args.cache, args.data, "train", args.per_dataset, args.synthetic)
    val = cached_cases(args.cache, args.data, "val", 30, 150)
    print(f"{len(train)} training cases, {len(val)} validation cases\n")
    coef = fit_softmax(outcomes(train))
    print(f"softmax coefficients fitted on the training cases: {np.round(coef, 4).tolist()}\n"
          f"(the product's SOFTMAX_COEF: {list(SOFTMAX_COEF)})\n")
    print("| combination | training: geometric-mean MASE | validation |\n|---|---:|---:|")
    scores, weighers = {}, methods(coef)
    for name, weigh in weighers.items():
        scores[name] = group_mase(train, [weigh(c) for c, _ in train])[0]
        print(f"| {name} | {scores[name]:.3f} | {group_mase(val, [weigh(c) for c, _ in val])[0]:.3f} |")
    best = min(scores, key=scores.get)
    print(f"\nleast on the training cases: {best} (the product's default: softmax (learned))")
    default = weighers["softmax (learned)"]
    made = bands(train, default)
    fitted = fitted_band(made)
    print(f"band scales fitted on the training cases: {dict(zip(fitted.coverages, fitted.scales))} "
          f"(the product's COMBINATION_BAND: {dict(zip(COMBINATION_BAND.coverages, COMBINATION_BAND.scales))})")
    print("\n| band | training 10-90% coverage | validation |\n|---|---:|---:|")
    for label, calibration in (("split conformal", BandCalibration()), ("scaled (COMBINATION_BAND)", COMBINATION_BAND)):
        print(f"| {label} | {coverage(bands(train, default, calibration), 0.8):.1%} | "
              f"{coverage(bands(val, default, calibration), 0.8):.1%} |")


if __name__ == "__main__":
    main()
